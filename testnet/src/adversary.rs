//! The adversarial validator for real testnets (issue 9): a [`node::Interceptor`] that runs
//! the simulator's Byzantine behaviours ([`crate::byzantine::Byzantine`], one implementation
//! shared with the simulator) inside a real node, plus a transaction gossip flooder, which the
//! simulator has no gossip layer for. The `bftnode-adversary` binary and
//! `testnet/tests/adversary.rs` build it from a [`Mode`] name.
//!
//! | mode | behaviour |
//! |---|---|
//! | `equivocate` | [`ByzKind::EquivocatingLeader`] |
//! | `double-vote` | [`ByzKind::DoubleVoter`] |
//! | `conflicting-timeouts` | [`ByzKind::ConflictingTimeouts`] |
//! | `silent` | [`ByzKind::SilentLeader`] |
//! | `withhold-votes` | [`ByzKind::VoteWithholder`] |
//! | `invalid-justify` | [`ByzKind::InvalidJustify`] |
//! | `bad-signatures` | [`ByzKind::BadSigner`] |
//! | `stale-replay` | [`ByzKind::StaleReplayer`] |
//! | `flood` | [`ByzKind::Flooder`] (frames of far-future signed messages) |
//! | `gossip-flood` | [`GossipFlood`]: junk transaction gossip (valid, invalid, undecodable) |
//! | `lock-hider` | [`ByzKind::LockHider`] |
//! | `late-leader` | [`ByzKind::LateLeader`] |
//! | `selective-sender` | [`ByzKind::SelectiveSender`] |
//! | `crafted-batch-signature`, `crafted-cert-confusion`, `crafted-future-proposals`, `crafted-tc-flood`, `crafted-park-evict`, `crafted-stale-block-flood` | [`ByzKind::crafted`] |

use crate::byzantine::{ByzCtx, ByzKind, Byzantine, FloodRate};
use consensus::{Action, Event, Millis, PrivateKey, ValidatorIndex, ValidatorSet};
use node::app::{Op, Transaction};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

/// Every mode name [`Mode::parse`] accepts, in the order of the module table.
pub const MODES: [&str; 19] = [
    "equivocate",
    "double-vote",
    "conflicting-timeouts",
    "silent",
    "withhold-votes",
    "invalid-justify",
    "bad-signatures",
    "stale-replay",
    "flood",
    "gossip-flood",
    "lock-hider",
    "late-leader",
    "selective-sender",
    "crafted-batch-signature",
    "crafted-cert-confusion",
    "crafted-future-proposals",
    "crafted-tc-flood",
    "crafted-park-evict",
    "crafted-stale-block-flood",
];

/// Errors building an adversary.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AdversaryError {
    /// The mode name is not one of [`MODES`].
    #[error("unknown adversary mode {name:?}; modes: {}", MODES.join(", "))]
    UnknownMode {
        /// The name given.
        name: String,
    },
    /// A validator index given as a parameter is not in the validator set (or is ourselves).
    #[error("validator {index} is not another member of the {n}-validator set")]
    BadTarget {
        /// The index given.
        index: u16,
        /// Validators.
        n: usize,
    },
    /// The late leader's margin is not below the view timeout.
    #[error("late-leader margin {margin_ms} ms must be below the view timeout {timeout_ms} ms")]
    BadMargin {
        /// The margin given.
        margin_ms: u64,
        /// τ_base of the node's config.
        timeout_ms: u64,
    },
}

/// Tunables of the modes that take parameters.
#[derive(Clone, Debug)]
pub struct Params {
    /// τ_base of the node (ms): the late leader releases its proposal `late_margin_ms` before it.
    pub timeout_base_ms: u64,
    /// Late leader: how long before the view timeout the proposal is released (ms).
    pub late_margin_ms: u64,
    /// Selective sender: who receives its proposals and votes (default: the next validator);
    /// lock hider: the first entry is the victim (default: the next validator).
    pub targets: Vec<u16>,
    /// Lock hider: delay before its hidden vote is released to the victim (ms; default 3/5 of
    /// τ_base, as in the simulator's hidden-lock scenario, 3Δ of τ = 6Δ).
    pub release_ms: Option<u64>,
    /// Frame flooder: signed messages per burst and burst period.
    pub flood: FloodRate,
    /// Gossip flooder: period (ms) and transactions per message.
    pub gossip: GossipRate,
}

impl Params {
    /// The defaults for a node whose view timeout base is `timeout_base_ms`.
    pub fn new(timeout_base_ms: u64) -> Self {
        Params {
            timeout_base_ms,
            late_margin_ms: timeout_base_ms / 5,
            targets: Vec::new(),
            release_ms: None,
            flood: FloodRate::default(),
            gossip: GossipRate::default(),
        }
    }
}

/// A parsed adversary mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One of the simulator's behaviours.
    Byzantine(ByzKind),
    /// Junk transaction gossip ([`GossipFlood`]).
    GossipFlood,
}

impl Mode {
    /// The mode `name` (one of [`MODES`]) for validator `me` of `vs`, with `params`.
    /// Errors: an unknown name, a target outside the set, a margin not below τ_base.
    pub fn parse(
        name: &str,
        me: ValidatorIndex,
        vs: &ValidatorSet,
        params: &Params,
    ) -> Result<Mode, AdversaryError> {
        let n = vs.len();
        let next = ValidatorIndex(((me.as_usize() + 1) % n.max(1)) as u16);
        for &t in &params.targets {
            if t as usize >= n || t == me.0 {
                return Err(AdversaryError::BadTarget { index: t, n });
            }
        }
        let first = params.targets.first().map_or(next, |t| ValidatorIndex(*t));
        let kind = match name {
            "equivocate" => ByzKind::EquivocatingLeader,
            "double-vote" => ByzKind::DoubleVoter,
            "conflicting-timeouts" => ByzKind::ConflictingTimeouts,
            "silent" => ByzKind::SilentLeader,
            "withhold-votes" => ByzKind::VoteWithholder,
            "invalid-justify" => ByzKind::InvalidJustify,
            "bad-signatures" => ByzKind::BadSigner,
            "stale-replay" => ByzKind::StaleReplayer,
            "flood" => ByzKind::Flooder,
            "gossip-flood" => return Ok(Mode::GossipFlood),
            "lock-hider" => ByzKind::LockHider {
                victim: first,
                release_ms: params.release_ms.unwrap_or(params.timeout_base_ms * 3 / 5),
            },
            "late-leader" => {
                if params.late_margin_ms >= params.timeout_base_ms {
                    return Err(AdversaryError::BadMargin {
                        margin_ms: params.late_margin_ms,
                        timeout_ms: params.timeout_base_ms,
                    });
                }
                ByzKind::LateLeader {
                    hold_ms: params.timeout_base_ms - params.late_margin_ms,
                }
            }
            "selective-sender" => {
                let targets = if params.targets.is_empty() {
                    1u64 << next.0.min(63)
                } else {
                    params
                        .targets
                        .iter()
                        .filter(|t| **t < 64)
                        .fold(0u64, |m, t| m | 1 << t)
                };
                ByzKind::SelectiveSender { targets }
            }
            other => {
                let crafted = other.strip_prefix("crafted-").map(|s| s.replace('-', "_"));
                return ByzKind::crafted()
                    .into_iter()
                    .find(|k| crafted.as_deref() == k.name().strip_prefix("crafted_"))
                    .map(Mode::Byzantine)
                    .ok_or_else(|| AdversaryError::UnknownMode {
                        name: other.to_string(),
                    });
            }
        };
        Ok(Mode::Byzantine(kind))
    }
}

/// Gossip flooder intensity.
#[derive(Clone, Copy, Debug)]
pub struct GossipRate {
    /// Period between messages (ms).
    pub period_ms: u64,
    /// Transactions per message.
    pub txs: usize,
}

impl Default for GossipRate {
    fn default() -> Self {
        // 512 transactions every 50 ms: ~10 000 junk transactions per second, far over an
        // honest peer's mempool quota.
        GossipRate {
            period_ms: 50,
            txs: 512,
        }
    }
}

/// Junk transaction gossip, cycling through three kinds of message: well-formed transactions
/// with random keys (they pass validation and compete for the honest mempools under this
/// peer's quota), transactions with an empty key (invalid), and random bytes (undecodable).
pub struct GossipFlood {
    rate: GossipRate,
    counter: u64,
}

impl GossipFlood {
    /// A flooder at `rate`.
    pub fn new(rate: GossipRate) -> Self {
        GossipFlood { rate, counter: 0 }
    }

    /// The next message.
    pub fn next_message(&mut self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        self.counter += 1;
        match self.counter % 3 {
            0 => {
                let mut junk = vec![0u8; 64 * self.rate.txs.max(1)];
                rng.fill_bytes(&mut junk);
                junk
            }
            k => {
                let txs: Vec<Transaction> = (0..self.rate.txs)
                    .map(|_| {
                        let key_len = if k == 1 { 16 } else { 0 };
                        let mut key = vec![0u8; key_len];
                        rng.fill_bytes(&mut key);
                        let mut value = vec![0u8; 32];
                        rng.fill_bytes(&mut value);
                        Transaction {
                            op: Op::Put { key, value },
                            nonce: rng.random(),
                            // Admissible at every height up to the window (tests' chains are
                            // shorter), so the flood is not refused by its expiry alone.
                            expires_at: consensus::Height(node::app::TX_VALIDITY_WINDOW),
                        }
                    })
                    .collect();
                consensus::encode(&txs)
            }
        }
    }
}

/// A node's adversarial wrapper: a [`Byzantine`] behaviour or a [`GossipFlood`], with the
/// validator's key and a ChaCha8 RNG seeded from `seed`.
pub struct Adversary {
    byz: Option<Byzantine>,
    gossip: Option<GossipFlood>,
    key: PrivateKey,
    vs: ValidatorSet,
    me: ValidatorIndex,
    rng: ChaCha8Rng,
    /// Whether the first misbehaving message was reported ([`Adversary::report_first`]).
    reported: bool,
}

/// The messages `actions` put on the wire: `(recipient or None for all, encoded message)`.
fn wire(actions: &[Action]) -> Vec<(Option<u16>, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } => Some((Some(to.0), msg.encode())),
            Action::Broadcast(msg) => Some((None, msg.encode())),
            _ => None,
        })
        .collect()
}

impl Adversary {
    /// Validator `me` of `vs`, signing with `key`, behaving as `mode`.
    pub fn new(
        mode: Mode,
        params: &Params,
        key: PrivateKey,
        vs: ValidatorSet,
        me: ValidatorIndex,
        seed: u64,
    ) -> Self {
        let (byz, gossip) = match mode {
            Mode::Byzantine(kind) => {
                let mut b = Byzantine::new(kind);
                b.flood = params.flood;
                (Some(b), None)
            }
            Mode::GossipFlood => (None, Some(GossipFlood::new(params.gossip))),
        };
        Adversary {
            byz,
            gossip,
            key,
            vs,
            me,
            rng: ChaCha8Rng::seed_from_u64(seed),
            reported: false,
        }
    }

    /// Print, once, the wall-clock time of the first message that differs from what the
    /// honest core would have sent (an added, altered or withheld message): the start of the
    /// attack for `testnet/drill.sh`'s detection time. Format:
    /// `bftnode-adversary: first misbehaving message unix_ms=<ms since the epoch>`.
    fn report_first(&mut self) {
        if self.reported {
            return;
        }
        self.reported = true;
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        eprintln!("bftnode-adversary: first misbehaving message unix_ms={unix_ms}");
    }

    /// Report the first time `extra` (actions the honest core did not ask for) sends anything.
    fn note_extra(&mut self, extra: &[Action]) {
        if !self.reported && !wire(extra).is_empty() {
            self.report_first();
        }
    }

    /// The default RNG seed of validator `me`: fixed per index, so a rerun repeats its choices.
    pub fn default_seed(me: ValidatorIndex) -> u64 {
        0xad5e_0000 ^ u64::from(me.0)
    }

    fn with_ctx<T>(
        &mut self,
        now: Millis,
        f: impl FnOnce(&mut Byzantine, &mut ByzCtx<'_>) -> T,
    ) -> Option<T> {
        let byz = self.byz.as_mut()?;
        let mut ctx = ByzCtx {
            now,
            me: self.me,
            key: &self.key,
            vs: &self.vs,
            rng: &mut self.rng,
        };
        Some(f(byz, &mut ctx))
    }
}

impl node::Interceptor for Adversary {
    fn inbound(&mut self, now: Millis, event: &Event) -> Vec<Action> {
        let extra = self
            .with_ctx(now, |b, ctx| b.inbound(ctx, event))
            .unwrap_or_default();
        self.note_extra(&extra);
        extra
    }

    fn outbound(&mut self, now: Millis, actions: Vec<Action>) -> Vec<Action> {
        if self.byz.is_none() {
            return actions;
        }
        let honest = (!self.reported).then(|| wire(&actions));
        let mut actions = Some(actions);
        let out = self
            .with_ctx(now, |b, ctx| {
                b.outbound(ctx, actions.take().unwrap_or_default())
            })
            .or(actions)
            .unwrap_or_default();
        if honest.is_some_and(|h| h != wire(&out)) {
            self.report_first();
        }
        out
    }

    fn tick_ms(&self) -> Option<u64> {
        match (&self.byz, &self.gossip) {
            (Some(b), _) => b.tick_ms(),
            (None, Some(g)) => Some(g.rate.period_ms.max(1)),
            (None, None) => None,
        }
    }

    fn tick(&mut self, now: Millis) -> Vec<Action> {
        let extra = self.with_ctx(now, |b, ctx| b.tick(ctx)).unwrap_or_default();
        self.note_extra(&extra);
        extra
    }

    fn tx_gossip(&mut self, _now: Millis) -> Vec<Vec<u8>> {
        match self.gossip.as_mut() {
            Some(g) => {
                let m = vec![g.next_message(&mut self.rng)];
                self.report_first();
                m
            }
            None => Vec::new(),
        }
    }
}
