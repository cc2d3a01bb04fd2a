//! # testnet — the deterministic simulator of bftnode
//!
//! A single-threaded discrete-event simulator that runs the production sans-IO
//! [`consensus::Core`] under a virtual clock and a seeded RNG (PROTOCOL.md §8):
//!
//! - [`sim`]: event queue ordered by (time, sequence), crash/restart from a simulated disk
//!   (including a crash between persist and send), block sync served from disks, evidence gossip,
//!   a BLAKE3 trace hash (same seed ⇒ same hash).
//! - [`net`]: latency + jitter (reordering), loss, duplication, partitions, per-link overrides.
//! - [`byzantine`]: equivocating leader, double voter, silent leader, vote withholder, stale
//!   replayer, bad signer, invalid justify, flooder, hidden-lock attacker; Twins are built by
//!   the simulator (two honest cores sharing a key).
//! - [`oracle`]: S1–S9, evidence (every delivered equivocation yields verified evidence, no false
//!   accusation), liveness after a healing suffix.
//! - [`liveness`]: the liveness-rate oracle — with up to f validators dead for the whole run,
//!   the commit rate against a healthy twin and the longest gap between commits.
//! - [`crafted`]: the crafted adversaries of issue 7 (one Byzantine validator per finding).
//! - [`resources`]: the resource oracle (detector records, blocks held and persisted, the park
//!   slot, signature checks per message, evidence in blocks, locks on existing blocks).
//! - [`scenario`]: the scenario catalogue shared by the test suite and the benches.
//! - [`twins`]: exhaustive Twins enumeration.
//! - [`adversary`]: the same Byzantine behaviours inside a real node (`bftnode-adversary`).
//! - [`netns`] and [`wan`]: real processes on separate hosts on one machine — one network
//!   namespace per validator, and a UDP relay that adds delay, jitter and loss
//!   (`bftnode-wan-relay`).
#![deny(missing_docs)]

pub mod adversary;
pub mod byzantine;
pub mod crafted;
pub mod disk;
pub mod liveness;
pub mod net;
pub mod netns;
pub mod oracle;
pub mod replica;
pub mod resources;
pub mod scenario;
pub mod sim;
pub mod sim_log;
pub mod twins;
pub mod twins_enum;
pub mod wan;

pub use sim::{Failure, Report, Sim, SimConfig};
