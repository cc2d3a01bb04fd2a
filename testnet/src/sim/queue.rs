//! The event queue: items ordered by (virtual time, sequence number), so ties resolve in
//! insertion order and a seed replays exactly.

use super::Control;
use crate::net::InstanceId;
use consensus::{BlockResponse, ConsensusMessage, Evidence, Millis, ValidatorIndex, View};
use std::cmp::Ordering;

pub(super) enum Item {
    Deliver {
        to: InstanceId,
        from_inst: InstanceId,
        from: ValidatorIndex,
        msg: ConsensusMessage,
    },
    Timer {
        inst: InstanceId,
        life: u32,
        timer: consensus::Timer,
    },
    Payload {
        inst: InstanceId,
        life: u32,
        view: View,
        payload: Vec<u8>,
    },
    FetchReq {
        server: InstanceId,
        client: InstanceId,
        life: u32,
        request_id: u64,
        request: consensus::BlockRequest,
    },
    FetchResp {
        client: InstanceId,
        life: u32,
        request_id: u64,
        from: ValidatorIndex,
        resp: Option<BlockResponse>,
    },
    Evidence {
        to: InstanceId,
        ev: Evidence,
    },
    Tick {
        inst: InstanceId,
        life: u32,
    },
    Control(Control),
}

pub(super) struct Entry {
    pub(super) at: Millis,
    pub(super) seq: u64,
    pub(super) item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        // Min-heap on (time, seq).
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}
