//! [`Admission`]: who gets a connection slot (issue 8, finding 1).
//!
//! * **Validators are always admitted.** Their connections count against no shared budget; the
//!   per-peer cap of `connection_limits` (3 connections per peer) is their only bound, so a
//!   crowd of strangers can never keep a genesis validator out.
//! * **Strangers** (any other peer) share a small budget: at most `max_strangers` connections in
//!   total and `max_strangers_per_ip` from one IP address. A connection beyond either is refused
//!   at establishment (the service counts it from the swarm's `IncomingConnectionError`).
//! * **Strangers are closed when idle.** They are offered identify and ping only (the validator
//!   protocols are gated by [`crate::gate::ValidatorsOnly`]), both done within the first
//!   seconds, so a stranger connection older than `stranger_idle` has nothing left to do and
//!   is closed ([`Admission::expired`]); the slot returns to the budget.
//!
//! Counts come from the swarm's own `ConnectionEstablished` / `ConnectionClosed` events, which
//! the swarm delivers synchronously after `handle_established_inbound_connection`, so they are
//! exact.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr, multiaddr::Protocol};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

/// Why a stranger's connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("stranger connection refused: {0}")]
pub(crate) struct StrangerRefused(&'static str);

/// One open connection of a non-validator.
#[derive(Clone, Debug)]
struct Stranger {
    peer: PeerId,
    ip: Option<IpAddr>,
    since: Instant,
}

/// The admission policy (see the module docs).
pub(crate) struct Admission {
    validators: HashSet<PeerId>,
    max_strangers: usize,
    max_strangers_per_ip: usize,
    stranger_idle: Duration,
    strangers: HashMap<ConnectionId, Stranger>,
}

/// The IP address of a multiaddr (`/ip4/..` or `/ip6/..` first component), if any.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Admission {
    /// A policy admitting `validators` always, and at most `max_strangers` other connections
    /// (`max_strangers_per_ip` per IP address), each closed `stranger_idle` after it opened.
    pub fn new(
        validators: HashSet<PeerId>,
        max_strangers: usize,
        max_strangers_per_ip: usize,
        stranger_idle: Duration,
    ) -> Self {
        Self {
            validators,
            max_strangers,
            max_strangers_per_ip,
            stranger_idle,
            strangers: HashMap::new(),
        }
    }

    /// Open stranger connections.
    pub fn strangers(&self) -> usize {
        self.strangers.len()
    }

    /// Stranger connections that have been open for `stranger_idle` or longer at `now`: the
    /// caller closes them. Each is returned once (it leaves the table now; its
    /// `ConnectionClosed` event then finds nothing).
    pub fn expired(&mut self, now: Instant) -> Vec<(PeerId, ConnectionId)> {
        let idle = self.stranger_idle;
        let old: Vec<ConnectionId> = self
            .strangers
            .iter()
            .filter(|(_, s)| now.duration_since(s.since) >= idle)
            .map(|(id, _)| *id)
            .collect();
        old.into_iter()
            .filter_map(|id| self.strangers.remove(&id).map(|s| (s.peer, id)))
            .collect()
    }

    /// Whether one more stranger connection from `ip` fits the budget.
    fn check_stranger(&self, ip: Option<IpAddr>) -> Result<(), &'static str> {
        if self.strangers.len() >= self.max_strangers {
            return Err("stranger budget full");
        }
        let from_ip = self.strangers.values().filter(|s| s.ip == ip).count();
        if from_ip >= self.max_strangers_per_ip {
            return Err("per-IP stranger cap reached");
        }
        Ok(())
    }
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if self.validators.contains(&peer) {
            return Ok(dummy::ConnectionHandler);
        }
        match self.check_stranger(ip_of(remote_addr)) {
            Ok(()) => Ok(dummy::ConnectionHandler),
            Err(reason) => {
                tracing::trace!(%peer, %remote_addr, reason, "stranger connection refused");
                Err(ConnectionDenied::new(StrangerRefused(reason)))
            }
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // We dial validators only; an outbound connection is never a stranger's slot.
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e)
                if !self.validators.contains(&e.peer_id) && e.endpoint.is_listener() =>
            {
                self.strangers.insert(
                    e.connection_id,
                    Stranger {
                        peer: e.peer_id,
                        ip: ip_of(e.endpoint.get_remote_address()),
                        since: Instant::now(),
                    },
                );
            }
            FromSwarm::ConnectionClosed(e) => {
                self.strangers.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn peer() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/udp/4000/quic-v1").parse().unwrap()
    }

    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

    fn admit(a: &mut Admission, p: PeerId, ip: &str) -> bool {
        let id =
            ConnectionId::new_unchecked(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let ok = a
            .handle_established_inbound_connection(id, p, &addr("127.0.0.1"), &addr(ip))
            .is_ok();
        if ok && !a.validators.contains(&p) {
            // What the swarm's ConnectionEstablished event records.
            a.strangers.insert(
                id,
                Stranger {
                    peer: p,
                    ip: ip_of(&addr(ip)),
                    since: Instant::now(),
                },
            );
        }
        ok
    }

    #[test]
    fn validators_are_admitted_when_the_stranger_budget_is_full() {
        let v = peer();
        let mut a = Admission::new([v].into(), 3, 2, Duration::from_secs(10));
        assert!(admit(&mut a, peer(), "10.0.0.1"));
        assert!(admit(&mut a, peer(), "10.0.0.1"));
        assert!(!admit(&mut a, peer(), "10.0.0.1"), "per-IP cap");
        assert!(admit(&mut a, peer(), "10.0.0.2"));
        assert!(!admit(&mut a, peer(), "10.0.0.3"), "total budget");
        assert!(admit(&mut a, v, "10.0.0.1"), "a validator always gets in");
        assert_eq!(a.strangers(), 3);
    }

    #[test]
    fn idle_strangers_expire_once_and_free_their_slot() {
        let mut a = Admission::new(HashSet::new(), 1, 1, Duration::from_millis(0));
        assert!(admit(&mut a, peer(), "10.0.0.1"));
        assert!(!admit(&mut a, peer(), "10.0.0.2"));
        let now = Instant::now();
        assert_eq!(a.expired(now).len(), 1);
        assert!(a.expired(now).is_empty());
        assert!(admit(&mut a, peer(), "10.0.0.2"));
    }
}
