//! Block sync over request-response (`/bftnode/sync/1`): our requests and their outcomes, and
//! the inbound requests held until the node answers them (at most `MAX_PENDING_SYNC`).

use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use tracing::{debug, trace, warn};

use crate::codec::{Frame, SyncReply, is_frame_too_large};
use crate::{Misbehaviour, NetworkEvent};

use super::{MAX_PENDING_SYNC, Service};

impl Service {
    /// Send our block-sync request `request_id` to validator `to`; a refusal (unknown, not
    /// connected, too large) is answered at once as a failed `SyncResponse`.
    pub(super) fn send_sync_request(&mut self, to: u16, request_id: u64, bytes: Vec<u8>) {
        let refuse = match self.peers.get(&to) {
            None => Some("unknown validator"),
            Some(_) if bytes.len() > self.cfg.max_frame_bytes => Some("request too large"),
            Some(p) if !p.connected() => Some("not connected"),
            Some(_) => None,
        };
        if let Some(reason) = refuse {
            self.metrics.send_dropped += 1;
            self.emit(NetworkEvent::SyncResponse {
                from: to,
                request_id,
                result: Err(reason.to_string()),
            });
            return;
        }
        let Some(p) = self.peers.get_mut(&to) else {
            return;
        };
        p.msgs_out += 1;
        self.metrics.bytes_out += bytes.len() as u64;
        let pid = p.peer_id;
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .inner()
            .send_request(&pid, Frame::Data(bytes));
        self.outbound_sync.insert(id, (request_id, to));
    }

    /// Answer the inbound sync request `request_id` with `bytes` (dropped if the requester left).
    pub(super) fn respond(&mut self, request_id: u64, bytes: Vec<u8>) {
        let Some(channel) = self.inbound_sync.remove(&request_id) else {
            debug!(request_id, "respond to unknown or expired sync request");
            return;
        };
        self.inbound_sync_ids.retain(|_, v| *v != request_id);
        let reply = if bytes.len() > self.cfg.sync_max_response_bytes {
            warn!(
                request_id,
                len = bytes.len(),
                max = self.cfg.sync_max_response_bytes,
                "sync response too large; replying with an error"
            );
            Err("response too large".to_string())
        } else {
            self.metrics.bytes_out += bytes.len() as u64;
            Ok(bytes)
        };
        if self
            .swarm
            .behaviour_mut()
            .sync
            .inner()
            .send_response(channel, reply)
            .is_err()
        {
            debug!(request_id, "sync requester gone before the response");
        }
    }

    /// A request-response event of the sync protocol: inbound requests are admitted and
    /// forwarded, responses matched to our requests.
    pub(super) fn on_sync(&mut self, e: request_response::Event<Frame, SyncReply>) {
        match e {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request_id: rr_id,
                        request,
                        channel,
                    },
                ..
            } => {
                let request = match request {
                    Frame::Data(bytes) => bytes,
                    Frame::Oversized { len, max } => return self.on_oversized(peer, len, max),
                };
                let Some(from) = self.admit(&peer, request.len()) else {
                    return; // dropping the channel closes the stream
                };
                if self.inbound_sync.len() >= MAX_PENDING_SYNC {
                    warn!(index = from, %peer, "too many pending sync requests; dropped");
                    self.metrics.pending_sync_dropped += 1;
                    if let Some(p) = self.peers.get_mut(&from) {
                        p.dropped += 1;
                    }
                    return;
                }
                let request_id = self.next_inbound_id;
                self.next_inbound_id += 1;
                self.inbound_sync.insert(request_id, channel);
                self.inbound_sync_ids.insert(rr_id, request_id);
                self.emit(NetworkEvent::SyncRequest {
                    from,
                    request_id,
                    bytes: request,
                });
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((id, from)) = self.outbound_sync.remove(&request_id) {
                    if let Ok(b) = &response {
                        self.metrics.bytes_in += b.len() as u64;
                    }
                    self.emit(NetworkEvent::SyncResponse {
                        from,
                        request_id: id,
                        result: response,
                    });
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.on_sync_outbound_failure(request_id, &error),
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                trace!(%peer, %error, "inbound sync stream failed");
                if let Some(id) = self.inbound_sync_ids.remove(&request_id) {
                    self.inbound_sync.remove(&id);
                }
            }
            request_response::Event::ResponseSent { request_id, .. } => {
                self.inbound_sync_ids.remove(&request_id);
            }
        }
    }

    /// Our sync request failed in libp2p (timeout, connection closed, unsupported): reported
    /// as a failed `SyncResponse`; an oversized response also scores the peer.
    pub(super) fn on_sync_outbound_failure(
        &mut self,
        request_id: OutboundRequestId,
        error: &OutboundFailure,
    ) {
        if let Some((id, from)) = self.outbound_sync.remove(&request_id) {
            debug!(from, request_id = id, %error, "sync request failed");
            if matches!(error, OutboundFailure::Io(e) if is_frame_too_large(e)) {
                self.metrics.oversized_dropped += 1;
                self.penalize(from, Misbehaviour::OversizedFrame);
            }
            self.emit(NetworkEvent::SyncResponse {
                from,
                request_id: id,
                result: Err(error.to_string()),
            });
        }
    }
}
