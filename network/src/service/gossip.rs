//! Gossip: publishing (evidence on gossipsub; transaction batches pushed directly, `txs.rs`)
//! and judging what gossipsub delivers.

use std::time::Instant;

use libp2p::{PeerId, gossipsub};
use tracing::{debug, trace, warn};

use crate::{NetworkEvent, Topic};

use super::Service;

impl Service {
    /// Publish `bytes` on `topic`: evidence through gossipsub, transaction batches pushed once to
    /// each connected validator (`txs.rs`).
    pub(super) fn publish(&mut self, topic: Topic, bytes: Vec<u8>) {
        if bytes.len() > self.cfg.max_gossip_bytes {
            self.metrics.gossip_publish_failed += 1;
            warn!(
                ?topic,
                len = bytes.len(),
                "gossip message too large; not published"
            );
            return;
        }
        if topic == Topic::Transactions {
            return self.push_txs(bytes);
        }
        let t = self.evidence_topic.clone();
        match self.swarm.behaviour_mut().gossip.inner().publish(t, bytes) {
            Ok(_) => self.metrics.gossip_out += 1,
            Err(e) => {
                self.metrics.gossip_publish_failed += 1;
                debug!(?topic, error = %e, "gossip publish failed");
            }
        }
    }

    /// A gossip message is delivered and relayed only once accepted here (validation mode):
    /// its topic is ours, its author (signed, checked by gossipsub's strict mode) is a genesis
    /// validator, and the author is within its byte budget. Cheap checks only; the node
    /// validates the content.
    pub(super) fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        else {
            return;
        };
        let verdict = self.judge_gossip(&message);
        let acceptance = match verdict {
            Ok(_) => gossipsub::MessageAcceptance::Accept,
            Err(a) => {
                self.metrics.gossip_rejected += 1;
                trace!(source = ?message.source, %propagation_source, ?a, "gossip rejected");
                a
            }
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .inner()
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if let Ok((topic, author)) = verdict {
            self.metrics.gossip_in += 1;
            self.emit(NetworkEvent::Gossip {
                topic,
                from: author,
                bytes: message.data,
            });
        }
    }

    /// `Ok((topic, author))` if the message may be delivered and relayed; otherwise how
    /// gossipsub should treat it (`Reject` penalises the relaying peer, `Ignore` does not).
    pub(super) fn judge_gossip(
        &mut self,
        m: &gossipsub::Message,
    ) -> Result<(Topic, PeerId), gossipsub::MessageAcceptance> {
        use gossipsub::MessageAcceptance::{Ignore, Reject};
        if m.topic != self.evidence_topic.hash() {
            return Err(Reject);
        }
        let topic = Topic::Evidence;
        let author = m.source.ok_or(Reject)?;
        let index = *self.by_peer.get(&author).ok_or(Reject)?;
        let budget = self.gossip_budget.get_mut(&index).ok_or(Reject)?;
        if !budget.take_n(Instant::now(), m.data.len()) {
            return Err(Ignore);
        }
        Ok((topic, author))
    }
}
