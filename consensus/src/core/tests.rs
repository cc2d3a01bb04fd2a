//! Step-table unit tests of the core rules, plus a tiny lock-step network for end-to-end checks.
//! The full adversarial simulator lives in the `testnet` crate.

use super::*;
use crate::policy::RoundRobin;
use crate::types::Epoch;
use crate::validators::ValidatorInfo;
use std::collections::BTreeMap;

pub(crate) fn keys(n: usize) -> (ValidatorSet, Vec<PrivateKey>) {
    let mut ks: Vec<PrivateKey> = (0..n)
        .map(|i| PrivateKey::from_seed([i as u8 + 1; 32]))
        .collect();
    let infos = ks
        .iter()
        .map(|k| ValidatorInfo {
            public_key: k.public(),
            power: 1,
        })
        .collect();
    let vs = ValidatorSet::new("test", Epoch(0), infos).unwrap();
    ks.sort_by_key(|k| vs.index_of(&k.public()).unwrap());
    (vs, ks)
}

fn core(vs: &ValidatorSet, key: PrivateKey, i: u16) -> Core<RoundRobin> {
    let g = Block::genesis(vs.domain());
    let gid = g.id(vs.domain());
    let mut cfg = Config::new(ValidatorIndex(i));
    cfg.timeout_base_ms = 1000;
    Core::new(
        cfg,
        vs.clone(),
        key,
        RoundRobin::new(vs),
        SafetyData::genesis(gid),
        Recovered {
            committed: vec![g],
            uncommitted: vec![],
        },
    )
    .unwrap()
}

/// Lock-step network: zero delay, timers fire in deadline order when the network is quiet.
struct Net {
    nodes: Vec<Core<RoundRobin>>,
    now: Millis,
    queue: VecDeque<(usize, usize, ConsensusMessage)>,
    timers: BTreeMap<(Millis, usize, u64), Timer>,
    seq: u64,
    committed: Vec<Vec<BlockId>>,
    down: BTreeSet<usize>,
    evidence: Vec<Evidence>,
}

impl Net {
    fn new(n: usize) -> Self {
        let (vs, ks) = keys(n);
        let nodes = ks
            .into_iter()
            .enumerate()
            .map(|(i, k)| core(&vs, k, i as u16))
            .collect();
        let mut net = Net {
            nodes,
            now: 0,
            queue: VecDeque::new(),
            timers: BTreeMap::new(),
            seq: 0,
            committed: vec![Vec::new(); n],
            down: BTreeSet::new(),
            evidence: Vec::new(),
        };
        for i in 0..n {
            net.apply(i, Event::Start);
        }
        net
    }

    fn apply(&mut self, i: usize, ev: Event) {
        if self.down.contains(&i) {
            return;
        }
        let actions = self.nodes[i].handle(self.now, ev);
        for a in actions {
            match a {
                Action::Send { to, msg } => self.queue.push_back((i, to.as_usize(), msg)),
                Action::Broadcast(msg) => {
                    for j in 0..self.nodes.len() {
                        if j != i {
                            self.queue.push_back((i, j, msg.clone()));
                        }
                    }
                }
                Action::SetTimer { timer, at } => {
                    self.seq += 1;
                    self.timers.insert((at, i, self.seq), timer);
                }
                Action::Commit { ids, .. } => self.committed[i].extend(ids),
                Action::RequestPayload { view, .. } => {
                    self.apply(i, Event::PayloadReady {
                        view,
                        payload: view.0.to_le_bytes().to_vec(),
                    })
                }
                Action::Evidence(e) => self.evidence.push(*e),
                _ => {}
            }
        }
    }

    /// Run until virtual time `until` (ms) or until node 0 committed `height` blocks.
    fn run(&mut self, until: Millis, height: usize) {
        loop {
            while let Some((from, to, msg)) = self.queue.pop_front() {
                if self.committed[0].len() >= height {
                    return;
                }
                let from = ValidatorIndex(from as u16);
                self.apply(to, Event::Message { from, msg });
            }
            let Some((&(at, i, seq), _)) = self.timers.iter().next() else {
                return;
            };
            if at > until {
                return;
            }
            let t = self.timers.remove(&(at, i, seq)).unwrap();
            self.now = at;
            self.apply(i, Event::Timer(t));
        }
    }
}

#[test]
fn happy_path_commits_and_agrees() {
    let mut net = Net::new(4);
    net.run(10, 20);
    // Zero-delay network: everything happens at t=0; no timer needs to fire.
    assert_eq!(net.now, 0);
    let heights: Vec<usize> = net.committed.iter().map(|c| c.len()).collect();
    assert!(heights.iter().all(|h| *h > 0), "no commits: {heights:?}");
    let min = *heights.iter().min().unwrap();
    for c in &net.committed {
        assert_eq!(c[..min], net.committed[0][..min]);
    }
}
