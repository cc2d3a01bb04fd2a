//! Step tables for the issue-9 Byzantine kinds (`ByzKind::ConflictingTimeouts`,
//! `ByzKind::LateLeader`, `ByzKind::SelectiveSender`) and the equivocating leader's bridge: the
//! wrapper's input, the actions expected out. (The simulator runs them in whole networks,
//! `tests/sim.rs`; real nodes run them in `tests/adversary.rs`.)

use consensus::{
    Action, Block, ConsensusMessage, Digest, Epoch, Height, PrivateKey, Proposal, QuorumCert,
    SigKind, Timeout, ValidatorIndex, ValidatorInfo, ValidatorSet, View, Vote, VoteData,
    cert::timeout_body, messages::proposal_body,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use testnet::byzantine::{ByzCtx, ByzKind, Byzantine, LATE_LEADER_TICK_MS};

const ME: ValidatorIndex = ValidatorIndex(3);

fn keys() -> Vec<PrivateKey> {
    (0..4u8)
        .map(|i| PrivateKey::from_seed([i + 7; 32]))
        .collect()
}

fn set(keys: &[PrivateKey]) -> ValidatorSet {
    let infos = keys
        .iter()
        .map(|k| ValidatorInfo {
            public_key: k.public(),
            power: 1,
        })
        .collect();
    ValidatorSet::new("kinds", Epoch(0), infos).unwrap()
}

/// The key of validator `i` of `vs` (indices follow public-key order).
fn key_of<'a>(keys: &'a [PrivateKey], vs: &ValidatorSet, i: ValidatorIndex) -> &'a PrivateKey {
    keys.iter()
        .find(|k| vs.index_of(&k.public()) == Some(i))
        .unwrap()
}

fn proposal(vs: &ValidatorSet, key: &PrivateKey, view: u64) -> Proposal {
    let domain = vs.domain();
    let genesis = Block::genesis(domain);
    let block = Block {
        epoch: Epoch(0),
        view: View(view),
        height: Height(1),
        parent: genesis.id(domain),
        justify: QuorumCert::genesis(genesis.id(domain)),
        payload: b"txs".to_vec(),
        evidence: Vec::new(),
        proposer: ME,
        skipped_leaders: Vec::new(),
    };
    let id = block.id(domain);
    let sig = key.sign(domain, SigKind::Proposal, &proposal_body(block.view, &id));
    Proposal {
        block,
        tc: None,
        sig,
    }
}

fn vote(vs: &ValidatorSet, key: &PrivateKey, view: u64) -> Vote {
    let data = VoteData {
        view: View(view),
        block_id: Digest([9; 32]),
        height: Height(1),
        parent_id: Digest([0; 32]),
        parent_view: View(0),
    };
    Vote::sign(data, ME, key, vs)
}

/// Where a message goes: `Some(validator)` for a send, `None` for a broadcast.
type Route = (Option<u16>, ConsensusMessage);

/// One step: description, time (ms), actions in, routes expected out.
type Step = (&'static str, u64, Vec<Action>, Vec<Route>);

/// (recipient or None for a broadcast, message) of each message action.
fn routes(actions: &[Action]) -> Vec<Route> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } => Some((Some(to.0), msg.clone())),
            Action::Broadcast(msg) => Some((None, msg.clone())),
            _ => None,
        })
        .collect()
}

struct Harness {
    keys: Vec<PrivateKey>,
    vs: ValidatorSet,
    rng: ChaCha8Rng,
    byz: Byzantine,
}

impl Harness {
    fn new(kind: ByzKind) -> Harness {
        let keys = keys();
        let vs = set(&keys);
        Harness {
            keys,
            vs,
            rng: ChaCha8Rng::seed_from_u64(1),
            byz: Byzantine::new(kind),
        }
    }
    fn key(&self) -> PrivateKey {
        PrivateKey::from_seed(key_of(&self.keys, &self.vs, ME).seed())
    }
    fn outbound(&mut self, now: u64, actions: Vec<Action>) -> Vec<Action> {
        let key = self.key();
        let mut ctx = ByzCtx {
            now,
            me: ME,
            key: &key,
            vs: &self.vs,
            rng: &mut self.rng,
        };
        self.byz.outbound(&mut ctx, actions)
    }
    fn tick(&mut self, now: u64) -> Vec<Action> {
        let key = self.key();
        let mut ctx = ByzCtx {
            now,
            me: ME,
            key: &key,
            vs: &self.vs,
            rng: &mut self.rng,
        };
        self.byz.tick(&mut ctx)
    }
}

#[test]
fn late_leader_releases_its_proposal_and_vote_hold_ms_after_the_payload_request() {
    let hold = 300;
    let mut h = Harness::new(ByzKind::LateLeader { hold_ms: hold });
    assert_eq!(h.byz.tick_ms(), Some(LATE_LEADER_TICK_MS));
    let key = h.key();
    let p = proposal(&h.vs, &key, 5);
    let v = vote(&h.vs, &key, 5);
    let request = Action::RequestPayload {
        view: View(5),
        parent: p.block.parent,
        height: Height(1),
    };
    // (step, time, actions in, message routes expected out)
    let out = h.outbound(1_000, vec![request]);
    assert_eq!(out.len(), 1, "the payload request passes through");
    let prop = ConsensusMessage::Proposal(p.clone());
    let own_vote = ConsensusMessage::Vote(v.clone());
    let steps: Vec<Step> = vec![
        (
            "proposal held",
            1_020,
            vec![Action::Broadcast(prop.clone())],
            vec![],
        ),
        (
            "own vote held",
            1_021,
            vec![Action::Broadcast(own_vote.clone())],
            vec![],
        ),
        (
            "re-send held",
            1_200,
            vec![Action::Broadcast(prop.clone())],
            vec![],
        ),
    ];
    for (desc, now, input, expected) in steps {
        assert_eq!(routes(&h.outbound(now, input)), expected, "{desc}");
    }
    assert!(h.tick(1_000 + hold - 1).is_empty(), "not before hold_ms");
    assert_eq!(
        routes(&h.tick(1_000 + hold)),
        vec![(None, prop.clone()), (None, own_vote)],
        "released at hold_ms: proposal first, then its own vote"
    );
    assert!(h.tick(1_000 + hold + 5).is_empty(), "released once");
    assert_eq!(
        routes(&h.outbound(1_400, vec![Action::Broadcast(prop.clone())])),
        vec![(None, prop)],
        "re-sends after the release pass"
    );
}

#[test]
fn selective_sender_sends_its_proposals_and_votes_to_its_targets_only() {
    let targets = (1u64 << 0) | (1 << 2);
    let mut h = Harness::new(ByzKind::SelectiveSender { targets });
    let key = h.key();
    let prop = ConsensusMessage::Proposal(proposal(&h.vs, &key, 5));
    let own_vote = ConsensusMessage::Vote(vote(&h.vs, &key, 5));
    let out = h.outbound(0, vec![Action::Broadcast(prop.clone())]);
    assert_eq!(routes(&out), vec![(Some(0), prop.clone()), (Some(2), prop)]);
    let out = h.outbound(
        0,
        vec![Action::Send {
            to: ValidatorIndex(1),
            msg: own_vote.clone(),
        }],
    );
    assert_eq!(
        routes(&out),
        vec![(Some(0), own_vote.clone()), (Some(2), own_vote)]
    );
    // Its timeouts go out as the core says.
    let domain = h.vs.domain();
    let qc = QuorumCert::genesis(Block::genesis(domain).id(domain));
    let t = ConsensusMessage::Timeout(Timeout {
        view: View(5),
        high_qc: qc,
        sender: ME,
        sig: key.sign(domain, SigKind::Timeout, &timeout_body(View(5), View(0))),
        high_tc: None,
        commit_qc: None,
    });
    assert_eq!(
        routes(&h.outbound(0, vec![Action::Broadcast(t.clone())])),
        vec![(None, t)]
    );
}

#[test]
fn conflicting_timeouts_split_two_signed_bodies_and_the_bridge_gets_both() {
    let mut h = Harness::new(ByzKind::ConflictingTimeouts);
    let key = h.key();
    let domain = h.vs.domain().clone();
    let mut high = QuorumCert::genesis(Block::genesis(&domain).id(&domain));
    high.data.view = View(4);
    let t = Timeout {
        view: View(6),
        high_qc: high,
        sender: ME,
        sig: key.sign(&domain, SigKind::Timeout, &timeout_body(View(6), View(4))),
        high_tc: None,
        commit_qc: None,
    };
    let out = routes(&h.outbound(0, vec![Action::Broadcast(ConsensusMessage::Timeout(t))]));
    let mut seen: std::collections::BTreeMap<u16, Vec<View>> = Default::default();
    for (to, m) in &out {
        let ConsensusMessage::Timeout(t) = m else {
            panic!("only timeouts: {m:?}");
        };
        let verifier = consensus::crypto::Verifier::new(&key.public()).unwrap();
        let digest = domain.digest(SigKind::Timeout, &timeout_body(t.view, t.high_qc.view()));
        assert!(
            verifier.verify(&digest, &t.sig),
            "each timeout is validly signed"
        );
        seen.entry(to.expect("routed to one validator"))
            .or_default()
            .push(t.high_qc.view());
    }
    let bodies: std::collections::BTreeSet<View> = seen.values().flatten().copied().collect();
    assert_eq!(bodies.len(), 2, "two bodies for view 6: {seen:?}");
    assert_eq!(seen.len(), 3, "every other validator gets one: {seen:?}");
    assert!(
        seen.values().any(|v| v.len() == 2 && v[0] != v[1]),
        "a bridge gets both: {seen:?}"
    );
    // Its own proposals are dropped (silent leader: its views end in timeouts).
    let prop = ConsensusMessage::Proposal(proposal(&h.vs, &key, 7));
    assert!(routes(&h.outbound(0, vec![Action::Broadcast(prop)])).is_empty());
}

#[test]
fn equivocating_leader_shows_both_blocks_to_one_bridge() {
    let mut h = Harness::new(ByzKind::EquivocatingLeader);
    let key = h.key();
    let prop = ConsensusMessage::Proposal(proposal(&h.vs, &key, 5));
    let out = routes(&h.outbound(0, vec![Action::Broadcast(prop)]));
    let mut ids: std::collections::BTreeMap<u16, Vec<consensus::BlockId>> = Default::default();
    for (to, m) in out {
        let ConsensusMessage::Proposal(p) = m else {
            panic!("only proposals");
        };
        ids.entry(to.unwrap())
            .or_default()
            .push(p.block.id(h.vs.domain()));
    }
    let distinct: std::collections::BTreeSet<_> = ids.values().flatten().collect();
    assert_eq!(distinct.len(), 2, "two blocks: {ids:?}");
    assert_eq!(
        ids.values().filter(|v| v.len() == 2).count(),
        1,
        "one bridge: {ids:?}"
    );
}
