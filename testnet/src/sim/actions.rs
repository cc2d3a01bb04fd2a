//! What the simulator does with a core's actions: persist to the simulated disk, schedule
//! timers, deliver messages through the network model (partitions, Twins view groups, uplink
//! bandwidth), fetches and evidence.

use super::{CrashPoint, Item, ProposalRecord, Role, Sim};
use crate::net::InstanceId;
use consensus::{Action, ConsensusMessage, Millis, ValidatorIndex, encode};

impl Sim {
    pub(super) fn apply(&mut self, inst: InstanceId, actions: Vec<Action>) {
        let now = self.now;
        let len = actions.len();
        let sends_after_persist = {
            let p = actions
                .iter()
                .position(|a| matches!(a, Action::PersistSafety(_)));
            p.map(|p| {
                actions[p + 1..]
                    .iter()
                    .any(|a| matches!(a, Action::Send { .. } | Action::Broadcast(_)))
            })
        };
        for (k, a) in actions.into_iter().enumerate() {
            // Armed crash points.
            if let Some(cp) = self.instances[inst].armed {
                let hit_before = match cp {
                    CrashPoint::BeforePersist => matches!(a, Action::PersistSafety(_)),
                    _ => false,
                };
                if hit_before {
                    self.crash(inst);
                    return;
                }
            }
            let is_persist = matches!(a, Action::PersistSafety(_));
            let is_timeout = matches!(&a, Action::Broadcast(ConsensusMessage::Timeout(_)));
            if self.cfg.oracles && self.instances[inst].role == Role::Honest {
                // Only actions that really take effect are checked (a crash cuts the batch).
                let lock_before = self.instances[inst].lock_view;
                let index = self.instances[inst].index;
                let gid = self.genesis_id;
                if let Err(v) = self.oracles.on_actions(
                    now,
                    inst,
                    index,
                    lock_before,
                    std::slice::from_ref(&a),
                    &gid,
                ) {
                    self.fail(v);
                }
            }
            self.hash_action(&a);
            self.apply_one(inst, a, now);
            if let Some(cp) = self.instances[inst].armed {
                let hit_after = match cp {
                    CrashPoint::AfterPersist => is_persist && sends_after_persist == Some(true),
                    CrashPoint::AfterTimeout => is_timeout,
                    CrashPoint::AfterAction(n) => k + 1 == n && len > n,
                    CrashPoint::BeforePersist => false,
                };
                if hit_after {
                    self.crash(inst);
                    return;
                }
            }
            if self.instances[inst].core.is_none() {
                return;
            }
        }
    }

    pub(super) fn apply_one(&mut self, inst: InstanceId, a: Action, now: Millis) {
        let me = self.instances[inst].index;
        let life = self.instances[inst].life;
        let honest = self.instances[inst].role == Role::Honest;
        if let (Some(o), Action::Send { msg, .. } | Action::Broadcast(msg)) =
            (self.resources.as_mut(), &a)
        {
            let res = match msg {
                ConsensusMessage::Proposal(p) => o.on_proposal(now, p, honest),
                ConsensusMessage::Timeout(t) if honest => {
                    o.on_timeout_sent(inst, t.view);
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(v) = res {
                self.fail(v);
            }
        }
        match a {
            Action::PersistSafety(_) | Action::PersistBlock { .. } => {
                self.instances[inst].disk.apply(&a);
            }
            Action::Commit { .. } => {
                self.instances[inst].disk.apply(&a);
            }
            Action::Send { to, msg } => {
                let targets: Vec<InstanceId> = (0..self.instances.len())
                    .filter(|&j| self.instances[j].index == to && j != inst && to != me)
                    .collect();
                for j in targets {
                    self.send(inst, j, me, msg.clone());
                }
            }
            Action::Broadcast(msg) => {
                if honest
                    && let ConsensusMessage::Proposal(p) = &msg
                    && p.block.proposer == me
                {
                    let v = p.block.view;
                    if !self.proposals.contains_key(&v) {
                        let id = p.block.id(self.vs.domain());
                        self.proposals.insert(
                            v,
                            ProposalRecord {
                                at: now,
                                id,
                                parent: p.block.parent,
                                inst,
                            },
                        );
                    }
                }
                let targets: Vec<InstanceId> = (0..self.instances.len())
                    .filter(|&j| self.instances[j].index != me)
                    .collect();
                for j in targets {
                    self.send(inst, j, me, msg.clone());
                }
            }
            Action::SetTimer { timer, at } => {
                self.push(at, Item::Timer { inst, life, timer });
            }
            Action::Evidence(ev) => {
                let id = ev.id();
                for j in 0..self.instances.len() {
                    if j == inst || !self.net.connected(inst, j) {
                        continue;
                    }
                    // Gossip dedupe: a receiver gets each item once (re-gossip is redundant).
                    if !self.gossiped.insert((id, j)) {
                        continue;
                    }
                    let d = self.net.sample(&mut self.rng, inst, j);
                    if let Some(d) = d.first() {
                        self.push(
                            now + d,
                            Item::Evidence {
                                to: j,
                                ev: (*ev).clone(),
                            },
                        );
                    }
                }
            }
            Action::FetchBlocks {
                request_id,
                peer,
                request,
            } => {
                let server = (0..self.instances.len()).find(|&j| {
                    self.instances[j].index == peer
                        && j != inst
                        && self.instances[j].is_up()
                        && self.net.connected(inst, j)
                });
                let d = server.map(|s| self.net.sample(&mut self.rng, inst, s));
                match (server, d) {
                    (Some(s), Some(d)) if !d.is_empty() => self.push(
                        now + d[0],
                        Item::FetchReq {
                            server: s,
                            client: inst,
                            life,
                            request_id,
                            request,
                        },
                    ),
                    _ => {
                        let t = now + 2 * self.net.base_ms.max(1);
                        self.push(
                            t,
                            Item::FetchResp {
                                client: inst,
                                life,
                                request_id,
                                from: peer,
                                resp: None,
                            },
                        );
                    }
                }
            }
            Action::RequestPayload { view, .. } => {
                let mut payload = encode(&(inst as u32, view.0));
                let fill = self.cfg.payload_bytes.saturating_sub(payload.len());
                payload.extend(self.cfg.seed.to_le_bytes().iter().cycle().take(fill));
                self.push(
                    now,
                    Item::Payload {
                        inst,
                        life,
                        view,
                        payload,
                    },
                );
            }
            // The oracle checks who is reported; the simulated network does not ban.
            Action::SafetyViolation(_) | Action::PeerMisbehaved { .. } => {}
        }
    }

    pub(super) fn view_ok(&self, a: InstanceId, b: InstanceId, msg: &ConsensusMessage) -> bool {
        if self.now >= self.view_groups_until {
            return true;
        }
        match self
            .view_groups
            .get(msg.view().0.min(usize::MAX as u64) as usize)
        {
            Some(g) => g.get(a) == g.get(b),
            None => true,
        }
    }

    pub(super) fn send(
        &mut self,
        from_inst: InstanceId,
        to: InstanceId,
        from: ValidatorIndex,
        msg: ConsensusMessage,
    ) {
        if !self.net.connected(from_inst, to) || !self.view_ok(from_inst, to, &msg) {
            return;
        }
        let queued = self.uplink_ms(from_inst, &msg);
        let delays = self.net.sample(&mut self.rng, from_inst, to);
        let now = self.now;
        for d in delays {
            self.push(
                now + queued + d,
                Item::Deliver {
                    to,
                    from_inst,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Occupy `from`'s uplink with `msg` (after what it already queued); returns how long
    /// after now the last bit leaves (ms, rounded down). 0 without a bandwidth limit.
    pub(super) fn uplink_ms(&mut self, from: InstanceId, msg: &ConsensusMessage) -> u64 {
        if self.net.uplink_bytes_per_ms.is_none() {
            return 0;
        }
        let now_us = self.now.saturating_mul(1_000);
        let free = &mut self.uplink_free_us[from];
        *free = (*free).max(now_us) + self.net.transmit_us(msg.encode().len());
        (*free - now_us) / 1_000
    }
}
