//! The run's trace hash: every message and action folded into one BLAKE3 digest, so two runs
//! of one seed can be compared for determinism.

use super::Sim;
use consensus::{Action, ConsensusMessage, encode};

impl Sim {
    pub(super) fn hash_msg(&mut self, msg: &ConsensusMessage) {
        self.trace.update(&msg.encode());
    }

    pub(super) fn hash_action(&mut self, a: &Action) {
        match a {
            Action::PersistSafety(s) => {
                self.trace.update(b"ps");
                self.trace.update(&encode(&**s));
            }
            Action::PersistBlock { block, .. } => {
                self.trace.update(b"pb");
                self.trace.update(&encode(&**block));
            }
            Action::Send { to, msg } => {
                self.trace.update(b"send");
                self.trace.update(&to.0.to_le_bytes());
                self.hash_msg(msg);
            }
            Action::Broadcast(msg) => {
                self.trace.update(b"bcast");
                self.hash_msg(msg);
            }
            Action::SetTimer { timer, at } => {
                self.trace.update(format!("timer{timer:?}@{at}").as_bytes());
            }
            Action::Commit { ids, .. } => {
                self.trace.update(b"commit");
                for id in ids {
                    self.trace.update(&id.0);
                }
            }
            Action::Evidence(e) => {
                self.trace.update(b"ev");
                self.trace.update(&encode(&**e));
            }
            Action::FetchBlocks {
                request_id,
                peer,
                request,
            } => {
                self.trace.update(b"fetch");
                self.trace.update(&request_id.to_le_bytes());
                self.trace.update(&peer.0.to_le_bytes());
                self.trace.update(&encode(request));
            }
            Action::RequestPayload { view, .. } => {
                self.trace.update(b"payload");
                self.trace.update(&view.0.to_le_bytes());
            }
            Action::SafetyViolation(s) => {
                self.trace.update(b"violation");
                self.trace.update(s.as_bytes());
            }
            Action::PeerMisbehaved { peer, reason } => {
                self.trace
                    .update(format!("misbehaved{}:{reason:?}", peer.0).as_bytes());
            }
        }
    }
}
