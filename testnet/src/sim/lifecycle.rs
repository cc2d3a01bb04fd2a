//! Instances starting, crashing and restarting, scheduled controls, and the resource oracle's
//! checks.

use super::{Control, Item, Role, Sim};
use crate::net::InstanceId;
use crate::oracle::Violation;
use crate::replica::build_core;
use consensus::{Event, PrivateKey, SafetyData, View};

impl Sim {
    pub(super) fn start(&mut self, inst: InstanceId) {
        let now = self.now;
        let ins = &mut self.instances[inst];
        if ins.core.is_some() {
            return;
        }
        let safety = ins
            .disk
            .safety
            .clone()
            .unwrap_or_else(|| SafetyData::genesis(self.genesis_id));
        let recovered = ins.disk.recovered();
        let key = PrivateKey::from_seed(ins.key_seed);
        match build_core(
            self.cfg.policy.clone(),
            ins.cfg.clone(),
            &self.vs,
            key,
            safety,
            recovered,
        ) {
            Ok(c) => ins.core = Some(c),
            Err(e) => {
                let v = Violation {
                    invariant: "RESTART",
                    detail: format!("instance {inst} could not be rebuilt from its disk: {e}"),
                    at: now,
                };
                self.fail(v);
                return;
            }
        }
        if let Some(t) = self.instances[inst].byz.as_ref().and_then(|b| b.tick_ms()) {
            let life = self.instances[inst].life;
            self.push(now + t, Item::Tick { inst, life });
        }
        self.feed(inst, Event::Start);
        if self.cfg.oracles && self.instances[inst].role == Role::Honest {
            // The lock after a restart is what was recovered.
            if let Some(st) = self.instances[inst].status(now) {
                self.instances[inst].lock_view = st.lock_view;
            }
        }
    }

    pub(super) fn crash(&mut self, inst: InstanceId) {
        let ins = &mut self.instances[inst];
        if ins.core.take().is_some() {
            ins.life += 1;
            ins.armed = None;
            self.trace.update(b"crash");
            self.trace.update(&(inst as u64).to_le_bytes());
            if let Some(d) = self.instances[inst].auto_restart {
                let at = self.now + d;
                self.push(at, Item::Control(Control::Restart(inst)));
            }
        }
    }

    pub(super) fn control(&mut self, c: Control) {
        self.trace.update(format!("control{c:?}").as_bytes());
        match c {
            Control::Crash(i) => self.crash(i),
            Control::Restart(i) => self.start(i),
            Control::ArmCrash(i, p) => self.instances[i].armed = Some(p),
            Control::Partition(groups) => {
                let n = self.instances.len();
                self.net.partition(n, &groups);
            }
            Control::Heal => self.net.heal(),
            Control::AutoRestart(i, d) => self.instances[i].auto_restart = d,
            Control::SetNet(m) => {
                let g = self.net.groups.take();
                self.net = m;
                self.net.groups = g;
            }
            Control::HealAll(m) => {
                self.net = m;
                self.net.heal();
                for i in 0..self.instances.len() {
                    self.instances[i].armed = None;
                    self.instances[i].auto_restart = None;
                    if !self.instances[i].is_up() {
                        self.start(i);
                    }
                }
            }
        }
    }

    /// Run the resource oracle after an event of honest `inst` (status `st`); `bare_tc`: the
    /// bare TC it received and its signature-check count before, with `before` = (lock view,
    /// current view) before the event.
    pub(super) fn check_resources(
        &mut self,
        inst: InstanceId,
        st: &consensus::CoreStatus,
        message: bool,
        bare_tc: Option<(consensus::TimeoutCert, u64)>,
        before: (View, View),
    ) {
        let now = self.now;
        let Some(r) = self.instances[inst].core.as_ref().map(|c| c.resources()) else {
            return;
        };
        let life = self.instances[inst].life;
        let persisted = self.instances[inst].disk.blocks.len();
        let Some(o) = self.resources.as_mut() else {
            return;
        };
        let mut res = o.on_step(now, (inst, life, message), st, &r, persisted);
        if let (Ok(()), Some((tc, sigs))) = (&res, bare_tc) {
            res = o.on_bare_tc(now, inst, &tc, before, r.signatures_verified - sigs);
        }
        if let Err(v) = res {
            self.fail(v);
        }
    }
}
