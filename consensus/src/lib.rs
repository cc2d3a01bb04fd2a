//! # consensus — pipelined HotStuff-2 for bftnode
//!
//! (The rule book lives in `consensus/PROTOCOL.md`, included below.)
#![doc = include_str!("../PROTOCOL.md")]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod block;
pub mod cert;
pub mod codec;
pub mod core;
pub mod crypto;
pub mod evidence;
pub mod messages;
pub mod policy;
pub mod safety;
pub mod types;
pub mod validators;

pub use block::{Block, BlockHeader};
pub use cert::{Bitmap, CertError, QuorumCert, TimeoutCert, VoteData};
pub use codec::{DecodeError, decode, encode};
#[cfg(feature = "mutations")]
pub use core::Mutations;
pub use core::{
    Action, Config, Core, CoreStatus, Counters, Event, MAX_CHECK_VIEWS, ParkedProposal, Resources,
    Timer,
};
pub use crypto::{Domain, PrivateKey, PublicKey, SigKind, Signature};
pub use evidence::{Evidence, EvidenceError, EvidenceKind, LaterMessage, SignedVote};
pub use messages::{
    BlockRequest, BlockResponse, ConsensusMessage, Proposal, Status, Timeout, Vote,
};
pub use policy::{
    FaultPolicy, Health, HealthInputs, InvalidReason, Millis, RoundRobin, ValidatorState,
    ValidatorStatus,
};
pub use safety::{ProposalRecord, SafetyData, SafetyModule};
pub use types::{BlockId, Digest, Epoch, Height, ValidatorIndex, View};
pub use validators::{ValidatorInfo, ValidatorSet, ValidatorSetError, VotingPower};
