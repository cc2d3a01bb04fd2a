//! A hook between the driver and the core, for adversarial test nodes only.
//!
//! The production `bftnode` binary passes none ([`crate::spawn_loaded`]); the
//! `bftnode-adversary` binary of the `testnet` crate passes one that wraps the simulator's
//! Byzantine behaviours (`testnet::byzantine::Byzantine`), so a real node over QUIC and RocksDB
//! misbehaves exactly as a simulated one does. With no interceptor the driver's path is
//! unchanged: one `Option` check per event.
//!
//! Order, as in the simulator: for each event the driver calls [`Interceptor::inbound`] (extra
//! actions, e.g. relays), then the core, then [`Interceptor::outbound`] on the core's actions,
//! and executes the rewritten actions followed by the extra ones. Every
//! [`Interceptor::tick_ms`] milliseconds it executes [`Interceptor::tick`]'s actions and
//! publishes [`Interceptor::tx_gossip`]'s raw messages on the transaction topic. Actions an
//! interceptor returns are executed like the core's (persist before send still holds for
//! the actions it passes through in order).

use consensus::{Action, Event, Millis};

/// Rewrites what goes into and out of a node's consensus core. `now` is the driver's
/// monotonic clock in milliseconds (the core's time).
pub trait Interceptor: Send {
    /// Observe `event` before the core handles it; returns extra actions, executed after the
    /// core's (rewritten) actions.
    fn inbound(&mut self, now: Millis, event: &Event) -> Vec<Action> {
        let _ = (now, event);
        Vec::new()
    }

    /// Rewrite the core's actions for one event, in order.
    fn outbound(&mut self, now: Millis, actions: Vec<Action>) -> Vec<Action>;

    /// Period of [`Interceptor::tick`] in milliseconds; `None` for no tick.
    fn tick_ms(&self) -> Option<u64> {
        None
    }

    /// Actions of a self-driven behaviour, every [`Interceptor::tick_ms`].
    fn tick(&mut self, now: Millis) -> Vec<Action> {
        let _ = now;
        Vec::new()
    }

    /// Raw messages to publish on the transaction gossip topic at this tick (a gossip flooder;
    /// the bytes need not decode). Called right after [`Interceptor::tick`].
    fn tx_gossip(&mut self, now: Millis) -> Vec<Vec<u8>> {
        let _ = now;
        Vec::new()
    }
}
