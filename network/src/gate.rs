//! [`ValidatorsOnly`]: a behaviour wrapper that gives a protocol to genesis validators only.
//!
//! A connection from any other peer gets a [`dummy`] handler for the wrapped behaviour, so the
//! wrapped protocols are **not offered** on it: a stranger that opens a `/bftnode/consensus/1`,
//! `/bftnode/consensus-stream/1`, `/bftnode/sync/1` or `/bftnode/txs/1` stream, or a gossipsub
//! stream, is refused during multistream
//! negotiation, before a single byte of its frame is read (issue 8, finding 5). The wrapped
//! behaviour never hears of such connections (their swarm events are filtered out), so its
//! own state (gossipsub's mesh, request-response's connection table) holds validators only.
//!
//! Membership is the fixed genesis set, decided at construction; it never changes at runtime.

use std::collections::HashSet;
use std::task::{Context, Poll};

use either::Either;
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

/// Wraps behaviour `B`, running it on validator connections only (see the module docs).
pub(crate) struct ValidatorsOnly<B> {
    inner: B,
    validators: HashSet<PeerId>,
}

impl<B> ValidatorsOnly<B> {
    /// `inner` will see connections of the peers in `validators` only.
    pub fn new(inner: B, validators: HashSet<PeerId>) -> Self {
        Self { inner, validators }
    }

    /// The wrapped behaviour.
    pub fn inner(&mut self) -> &mut B {
        &mut self.inner
    }

    fn admits(&self, peer: &PeerId) -> bool {
        self.validators.contains(peer)
    }

    fn concerns_validator(&self, event: &FromSwarm) -> bool {
        let peer = match event {
            FromSwarm::ConnectionEstablished(e) => Some(e.peer_id),
            FromSwarm::ConnectionClosed(e) => Some(e.peer_id),
            FromSwarm::AddressChange(e) => Some(e.peer_id),
            FromSwarm::DialFailure(e) => e.peer_id,
            FromSwarm::ListenFailure(e) => e.peer_id,
            _ => None,
        };
        peer.is_none_or(|p| self.admits(&p))
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for ValidatorsOnly<B> {
    type ConnectionHandler = Either<THandler<B>, dummy::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.admits(&peer) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map(Either::Left)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if maybe_peer.is_some_and(|p| !self.admits(&p)) {
            return Ok(Vec::new());
        }
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.admits(&peer) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .map(Either::Left)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if self.concerns_validator(&event) {
            self.inner.on_swarm_event(event);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(e) => self
                .inner
                .on_connection_handler_event(peer_id, connection_id, e),
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx).map(|e| e.map_in(Either::Left))
    }
}
