//! One-line descriptions of core events and actions for `SIM_LOG=1` replays: a failing seed
//! prints what every honest instance received and did, in virtual time order.

use consensus::{Action, ConsensusMessage, Event};

fn message(msg: &ConsensusMessage) -> String {
    match msg.author() {
        Some(a) => format!("{}(v{}, by {})", msg.kind(), msg.view().0, a.0),
        None => format!("{}(v{})", msg.kind(), msg.view().0),
    }
}

/// `event` in one line (messages by kind, view and author; blocks by count).
pub fn event(ev: &Event) -> String {
    match ev {
        Event::Message { from, msg } => format!("<- {} {}", from.0, message(msg)),
        Event::BlocksFetched {
            request_id, from, ..
        } => format!("<- {} blocks for request {request_id}", from.0),
        Event::PayloadReady { view, payload } => {
            format!("payload v{} ({} bytes)", view.0, payload.len())
        }
        Event::EvidenceReceived(e) => format!("evidence {:?}", e.kind()),
        other => format!("{other:?}"),
    }
}

/// `action` in one line, `None` for those a replay does not need (block persistence).
pub fn action(a: &Action) -> Option<String> {
    Some(match a {
        Action::Send { to, msg } => format!("-> {} {}", to.0, message(msg)),
        Action::Broadcast(msg) => format!("-> all {}", message(msg)),
        Action::SetTimer { timer, at } => format!("timer {timer:?} at {at}"),
        Action::Commit { ids, .. } => format!("commit {} blocks", ids.len()),
        Action::Evidence(e) => format!("evidence {:?}", e.kind()),
        Action::FetchBlocks {
            request_id, peer, ..
        } => format!("fetch {request_id} from {}", peer.0),
        Action::SafetyViolation(s) => format!("SAFETY VIOLATION {s}"),
        Action::PeerMisbehaved { peer, reason } => format!("misbehaved {} {reason:?}", peer.0),
        Action::PersistSafety(_) => "persist safety".into(),
        Action::PersistBlock { .. } | Action::RequestPayload { .. } => return None,
    })
}
