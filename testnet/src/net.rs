//! The simulated network: per-link latency with jitter (which also reorders), loss,
//! duplication, partitions and per-link overrides.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Index of a simulated instance (a replica process; twins share a validator index but not an
/// instance id).
pub type InstanceId = usize;

/// An override of the model for some links (`None` = any instance).
#[derive(Clone, Debug, Default)]
pub struct LinkOverride {
    /// Sender instance, or any.
    pub from: Option<InstanceId>,
    /// Receiver instance, or any.
    pub to: Option<InstanceId>,
    /// Extra latency added (ms).
    pub extra_ms: u64,
    /// Replaces the loss probability on these links.
    pub loss: Option<f64>,
}

impl LinkOverride {
    fn matches(&self, a: InstanceId, b: InstanceId) -> bool {
        self.from.is_none_or(|f| f == a) && self.to.is_none_or(|t| t == b)
    }
}

/// Network parameters.
#[derive(Clone, Debug)]
pub struct NetModel {
    /// Base one-way latency (ms).
    pub base_ms: u64,
    /// Uniform extra latency in `0..=jitter_ms` (reorders messages).
    pub jitter_ms: u64,
    /// Loss probability per message.
    pub loss: f64,
    /// Duplication probability per message.
    pub dup: f64,
    /// Per-link overrides, all matching ones apply (extra latencies add up).
    pub overrides: Vec<LinkOverride>,
    /// Partition: group id per instance; `None` = fully connected.
    pub groups: Option<Vec<usize>>,
    /// Uplink bandwidth of every instance (bytes per ms, 12 500 = 100 Mbit/s); `None` =
    /// unlimited. With a limit, each consensus message occupies its sender's uplink for
    /// `size / bandwidth` ms, one message after another in send order, before its latency
    /// starts: a leader's broadcast of a large block reaches the last peer `(n − 1)` times
    /// later than one copy would.
    pub uplink_bytes_per_ms: Option<u64>,
}

impl NetModel {
    /// A synchronous network: fixed latency, no jitter, loss or duplication.
    pub fn fixed(delay_ms: u64) -> Self {
        NetModel {
            base_ms: delay_ms,
            jitter_ms: 0,
            loss: 0.0,
            dup: 0.0,
            overrides: Vec::new(),
            groups: None,
            uplink_bytes_per_ms: None,
        }
    }

    /// Latency `base..=base+jitter`, no loss.
    pub fn jittery(base_ms: u64, jitter_ms: u64) -> Self {
        NetModel {
            jitter_ms,
            ..NetModel::fixed(base_ms)
        }
    }

    /// Split instances into groups; instances not listed are isolated alone.
    pub fn partition(&mut self, n_instances: usize, groups: &[Vec<InstanceId>]) {
        let mut g: Vec<usize> = (0..n_instances).map(|i| 1000 + i).collect();
        for (gi, members) in groups.iter().enumerate() {
            for &m in members {
                if m < n_instances {
                    g[m] = gi;
                }
            }
        }
        self.groups = Some(g);
    }

    /// Remove the partition.
    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Whether `a` can currently reach `b`.
    pub fn connected(&self, a: InstanceId, b: InstanceId) -> bool {
        match &self.groups {
            None => true,
            Some(g) => g.get(a) == g.get(b),
        }
    }

    /// Time (µs) a message of `bytes` occupies a sender's uplink (0 when unlimited).
    pub fn transmit_us(&self, bytes: usize) -> u64 {
        self.uplink_bytes_per_ms
            .map_or(0, |bw| (bytes as u64).saturating_mul(1_000) / bw.max(1))
    }

    /// Sample the fate of one message `a → b`: the delivery delays (empty = lost, two entries
    /// = duplicated). Partitions are checked by the caller.
    pub fn sample(&self, rng: &mut ChaCha8Rng, a: InstanceId, b: InstanceId) -> Vec<u64> {
        let mut loss = self.loss;
        let mut extra = 0;
        for o in &self.overrides {
            if o.matches(a, b) {
                extra += o.extra_ms;
                if let Some(l) = o.loss {
                    loss = l;
                }
            }
        }
        if loss > 0.0 && rng.random_bool(loss.min(1.0)) {
            return Vec::new();
        }
        let one = |rng: &mut ChaCha8Rng| {
            let j = if self.jitter_ms > 0 {
                rng.random_range(0..=self.jitter_ms)
            } else {
                0
            };
            self.base_ms + j + extra
        };
        let first = one(rng);
        if self.dup > 0.0 && rng.random_bool(self.dup.min(1.0)) {
            let second = one(rng);
            vec![first, second]
        } else {
            vec![first]
        }
    }
}
