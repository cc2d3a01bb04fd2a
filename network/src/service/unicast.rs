//! The inbound and acknowledgement side shared by the two unicast frame protocols:
//! consensus frames ([`CONSENSUS_PROTOCOL`](crate::CONSENSUS_PROTOCOL)) and transaction
//! batches ([`TX_PROTOCOL`](crate::TX_PROTOCOL)). Both send one length-prefixed frame per
//! request and an empty response as the acknowledgement that ends the stream.

use libp2p::request_response::{self, OutboundRequestId};
use tracing::{debug, trace};

use super::Service;
use crate::codec::Frame;
use crate::{NetworkEvent, Topic};

/// Which unicast protocol an event or an outbound frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unicast {
    /// Consensus frames (proposals, votes, timeouts, certificates).
    Consensus,
    /// Transaction batches pushed by their author.
    Txs,
}

impl Service {
    /// An event of the `kind` request-response behaviour. An inbound frame is admitted
    /// (oversized ones were refused by the codec before their body was read), acknowledged if
    /// it came from a validator (even when dropped, so its stream ends cleanly) and delivered;
    /// an acknowledgement or a failure of one of ours releases its in-flight budget.
    pub(super) fn on_unicast(&mut self, kind: Unicast, e: request_response::Event<Frame, ()>) {
        match e {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let bytes = match request {
                    Frame::Data(bytes) => bytes,
                    Frame::Oversized { len, max } => return self.on_oversized(peer, len, max),
                };
                let len = bytes.len();
                let delivered = match kind {
                    Unicast::Consensus => self
                        .admit(&peer, len)
                        .map(|from| NetworkEvent::Consensus { from, bytes }),
                    Unicast::Txs => self.admit_txs(&peer, len).then_some(NetworkEvent::Gossip {
                        topic: Topic::Transactions,
                        from: peer,
                        bytes,
                    }),
                };
                if self.by_peer.contains_key(&peer) {
                    let behaviour = self.swarm.behaviour_mut();
                    let protocol = match kind {
                        Unicast::Consensus => &mut behaviour.consensus,
                        Unicast::Txs => &mut behaviour.txs,
                    };
                    let _ = protocol.inner().send_response(channel, ());
                }
                if let Some(event) = delivered {
                    match kind {
                        Unicast::Consensus => self.metrics.frames_in += 1,
                        Unicast::Txs => self.metrics.gossip_in += 1,
                    }
                    self.emit(event);
                }
            }
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            } => {
                if kind == Unicast::Consensus
                    && let Some((to, len, sent)) = self.frame_sent.remove(&request_id)
                {
                    let rtt = self.peers.get(&to).and_then(|p| p.rtt);
                    self.goodput.acknowledged(to, len, sent.elapsed(), rtt);
                }
                self.ack(kind, request_id);
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, ?kind, "frame not delivered");
                if kind == Unicast::Consensus
                    && let Some((to, len, _)) = self.frame_sent.remove(&request_id)
                {
                    self.goodput.failed(to, len);
                }
                self.ack(kind, request_id);
                self.metrics.send_failures += 1;
                if kind == Unicast::Consensus
                    && let Some(p) = self.by_peer.get(&peer).and_then(|i| self.peers.get_mut(i))
                {
                    p.dropped += 1;
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                trace!(%peer, %error, ?kind, "inbound stream failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Our consensus frame `id` was acknowledged or failed: it no longer counts in flight.
    /// (Transaction batches are sent on their stream, `service/links.rs`: none of ours is ever
    /// in flight by request-response.)
    fn ack(&mut self, kind: Unicast, id: OutboundRequestId) {
        if kind != Unicast::Consensus {
            return;
        }
        if let Some((to, len)) = self.outbound_frames.remove(&id)
            && let Some(p) = self.peers.get_mut(&to)
        {
            p.inflight = p.inflight.saturating_sub(1);
            p.inflight_bytes = p.inflight_bytes.saturating_sub(len);
        }
    }
}
