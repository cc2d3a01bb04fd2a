//! The service task: owns the Swarm and all peer state, and runs one `select!` loop over
//! handle commands, swarm events and a housekeeping tick (redial, unban, score decay).
//!
//! One file per concern: this one holds the loop, the command dispatch and consensus frames
//! out; `build` makes the swarm and the task ([`spawn`]); `connections` the connection
//! lifecycle; `scoring` penalties, bans and frame admission; `sync` block-sync requests;
//! `gossip` evidence gossip; `txs` transaction batches; `links` the long-lived streams and
//! `unicast` the request-response frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ListenError, SwarmEvent};
use libp2p::{PeerId, Swarm, gossipsub, identify};
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

mod build;
mod connections;
mod gossip;
mod links;
mod scoring;
mod sync;
mod txs;
mod unicast;

pub(crate) use build::spawn;
use build::{Behaviour, BehaviourEvent};

use unicast::Unicast;

use crate::codec::{Frame, SyncReply};
use crate::events::{Class, EventSender};
use crate::handle::Command;
use crate::peers::{PeerState, TokenBucket};
use crate::{NetworkConfig, NetworkEvent, NetworkMetrics};

/// Housekeeping period, in ms.
const TICK_MS: u64 = 50;
/// Most unanswered inbound sync requests kept at once.
const MAX_PENDING_SYNC: usize = 1024;
/// Least interval between two warnings of one kind (refusals, one peer's flaps).
const LOG_EVERY: Duration = Duration::from_secs(30);

struct Service {
    swarm: Swarm<Behaviour>,
    cfg: NetworkConfig,
    local_index: Option<u16>,
    /// Every genesis validator but ourselves, by index.
    peers: HashMap<u16, PeerState>,
    by_peer: HashMap<PeerId, u16>,
    events: EventSender,
    commands: mpsc::UnboundedReceiver<Command>,
    metrics: NetworkMetrics,
    /// Our unacknowledged consensus frames: libp2p id → (target index, payload bytes). At most
    /// `max_inflight_per_peer` per validator.
    outbound_frames: HashMap<OutboundRequestId, (u16, usize)>,
    /// When each of our unacknowledged consensus frames of at least
    /// [`crate::MIN_SAMPLE_BYTES`] was sent: libp2p id → (target index, payload bytes, sent at).
    /// A subset of `outbound_frames`.
    frame_sent: HashMap<OutboundRequestId, (u16, usize, Instant)>,
    /// Goodput estimates from `frame_sent`'s acknowledgements ([`crate::Goodput`]).
    goodput: Arc<crate::Goodput>,
    /// Our outbound sync requests: libp2p id → (handle id, target index).
    outbound_sync: HashMap<OutboundRequestId, (u64, u16)>,
    /// Inbound sync requests awaiting `respond`: handle id → channel. At most
    /// `MAX_PENDING_SYNC`; entries leave on respond or on libp2p's inbound failure/timeout.
    inbound_sync: HashMap<u64, ResponseChannel<SyncReply>>,
    inbound_sync_ids: HashMap<InboundRequestId, u64>,
    next_inbound_id: u64,
    evidence_topic: gossipsub::IdentTopic,
    /// Per-author gossip and transaction-push byte budgets, one per validator (the only accepted authors).
    gossip_budget: HashMap<u16, TokenBucket>,
    last_decay: Instant,
    /// Long-lived streams for small consensus frames, and for transaction batches.
    links: links::Links,
    tx_links: links::Links,
    link_events: mpsc::Receiver<links::LinkEvent>,
    tx_link_events: mpsc::Receiver<links::LinkEvent>,
    /// Connection refusals already reported in a log line.
    refused_logged: u64,
    last_refused_log: Option<Instant>,
}

impl Service {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(event) = self.link_events.recv() => self.on_link(event),
                Some(event) = self.tx_link_events.recv() => self.on_link(event),
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        }
        info!(local_peer_id = %self.swarm.local_peer_id(), "network stopped");
    }

    fn emit(&mut self, event: NetworkEvent) {
        match self.events.send(event) {
            Ok(()) => {}
            Err(Class::Gossip) => self.metrics.gossip_events_dropped += 1,
            Err(_) => {
                self.metrics.events_dropped += 1;
                trace!("event queue full; consensus/sync event dropped");
            }
        }
    }

    // ---------------------------------------------------------------- commands

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send { to, bytes } => {
                if Some(to) == self.local_index {
                    self.emit(NetworkEvent::Consensus { from: to, bytes });
                } else {
                    self.send_frame(to, bytes);
                }
            }
            Command::Broadcast {
                bytes,
                include_self,
            } => {
                let mut targets: Vec<u16> = self.peers.keys().copied().collect();
                targets.sort_unstable();
                for to in targets {
                    self.send_frame(to, bytes.clone());
                }
                if let (true, Some(me)) = (include_self, self.local_index) {
                    self.emit(NetworkEvent::Consensus { from: me, bytes });
                }
            }
            Command::Request {
                to,
                request_id,
                bytes,
            } => self.send_sync_request(to, request_id, bytes),
            Command::Respond { request_id, bytes } => self.respond(request_id, bytes),
            Command::Publish { topic, bytes } => self.publish(topic, bytes),
            Command::Report { from, misbehaviour } => self.penalize(from, misbehaviour),
            Command::Peers(reply) => {
                let mut list: Vec<_> = self.peers.values().map(PeerState::status).collect();
                list.sort_by_key(|p| p.index);
                let _ = reply.send(list);
            }
            Command::Metrics(reply) => {
                let mut m = self.metrics.clone();
                m.send_failures += self.links.write_failures() + self.tx_links.write_failures();
                let _ = reply.send(m);
            }
            Command::Shutdown => {}
        }
    }

    fn send_frame(&mut self, to: u16, bytes: Vec<u8>) {
        let max = self.cfg.max_frame_bytes;
        let max_inflight = self.cfg.max_inflight_per_peer;
        let max_inflight_bytes = self.cfg.max_inflight_bytes_per_peer;
        let Some(p) = self.peers.get_mut(&to) else {
            debug!(to, "send to unknown validator dropped");
            self.metrics.send_dropped += 1;
            return;
        };
        if !p.connected()
            || p.inflight >= max_inflight
            || p.inflight_bytes + bytes.len() > max_inflight_bytes
            || bytes.len() > max
        {
            trace!(
                to,
                connected = p.connected(),
                inflight = p.inflight,
                inflight_bytes = p.inflight_bytes,
                len = bytes.len(),
                "frame dropped"
            );
            p.dropped += 1;
            self.metrics.send_dropped += 1;
            return;
        }
        let len = bytes.len();
        let copies = p.copies_per_frame();
        let pid = p.peer_id;
        // Small frames to a single instance that announced the stream go on it
        // (`service/links.rs`); a full queue falls back to request-response.
        let bytes = if copies == 1 && p.consensus_stream && len < crate::MIN_SAMPLE_BYTES {
            match self.links.send(pid, bytes) {
                Ok(()) => {
                    p.msgs_out += 1;
                    self.metrics.frames_out += 1;
                    self.metrics.bytes_out += len as u64;
                    return;
                }
                Err(bytes) => bytes,
            }
        } else {
            bytes
        };
        p.inflight += copies;
        p.inflight_bytes += len * copies;
        p.msgs_out += 1;
        self.metrics.frames_out += 1;
        self.metrics.bytes_out += (len * copies) as u64;
        let consensus = self.swarm.behaviour_mut().consensus.inner();
        // request-response sends request `id` on connection `id mod connections`: requests with
        // consecutive ids reach every connection once.
        for _ in 1..copies {
            let id = consensus.send_request(&pid, Frame::Data(bytes.clone()));
            self.outbound_frames.insert(id, (to, len));
        }
        let id = consensus.send_request(&pid, Frame::Data(bytes));
        self.outbound_frames.insert(id, (to, len));
        if len >= crate::MIN_SAMPLE_BYTES {
            self.frame_sent.insert(id, (to, len, Instant::now()));
        }
    }

    // ---------------------------------------------------------------- scoring

    // ---------------------------------------------------------------- swarm events

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Consensus(e)) => {
                self.on_unicast(Unicast::Consensus, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Txs(e)) => self.on_unicast(Unicast::Txs, e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                if let (Ok(rtt), Some(i)) = (e.result, self.by_peer.get(&e.peer))
                    && let Some(p) = self.peers.get_mut(i)
                {
                    p.rtt = Some(rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                debug!(peer = %peer_id, agent = %info.agent_version, protocol = %info.protocol_version, "identified peer");
                if let Some(p) = self
                    .by_peer
                    .get(&peer_id)
                    .and_then(|i| self.peers.get_mut(i))
                {
                    let mut agent = info.agent_version;
                    let mut cut = agent.len().min(crate::MAX_AGENT_LEN);
                    while !agent.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    agent.truncate(cut);
                    p.agent = Some(agent);
                    let announces = |name: &str| info.protocols.iter().any(|x| x.as_ref() == name);
                    p.consensus_stream = announces(crate::CONSENSUS_STREAM_PROTOCOL);
                    p.tx_stream = announces(crate::TX_STREAM_PROTOCOL);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => self.on_connected(peer_id, connection_id, num_established.get(), &endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                if let Some(p) = self
                    .by_peer
                    .get(&peer_id)
                    .and_then(|i| self.peers.get_mut(i))
                {
                    p.remotes.remove(&connection_id);
                }
                self.on_closed(peer_id, num_established, cause.map(|c| c.to_string()))
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError {
                error,
                peer_id,
                send_back_addr,
                ..
            } => {
                if matches!(error, ListenError::Denied { .. }) {
                    // Banned, over the per-peer cap, or beyond the strangers' budget.
                    self.metrics.connections_refused += 1;
                }
                if let Some(&index) = peer_id.as_ref().and_then(|p| self.by_peer.get(p)) {
                    self.check_duplicate_key(index, &send_back_addr, None);
                }
                trace!(%error, "incoming connection failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "listening"),
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            _ => {}
        }
    }

    // ---------------------------------------------------------------- housekeeping

    fn on_tick(&mut self, now: Instant) {
        self.close_idle_strangers(now);
        self.log_refusals(now);
        let decay_every = Duration::from_secs(1);
        let decay = if now.duration_since(self.last_decay) >= decay_every {
            self.last_decay = now;
            self.cfg.score_decay_per_sec
        } else {
            0
        };
        let max_ms = self.cfg.redial_max_ms;
        let mut unblock = Vec::new();
        let mut dial = Vec::new();
        for p in self.peers.values_mut() {
            p.score = (p.score - decay).max(0);
            if let Some(until) = p.banned_until
                && now >= until
            {
                p.banned_until = None;
                p.next_dial = Some(now);
                unblock.push((p.index, p.peer_id));
            }
            if !p.connected()
                && !p.banned()
                && let Some(at) = p.next_dial
                && now >= at
            {
                p.on_dial(now, max_ms);
                dial.push((p.index, p.peer_id, p.multiaddr.clone()));
            }
        }
        for (index, pid) in unblock {
            info!(index, peer = %pid, "ban expired");
            self.swarm.behaviour_mut().block.unblock_peer(pid);
        }
        for (index, pid, addr) in dial {
            let opts = DialOpts::peer_id(pid)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                trace!(index, error = %e, "dial not started");
            }
        }
    }
}
