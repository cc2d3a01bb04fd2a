//! A wide-area network in user space: a UDP relay that holds and drops datagrams between
//! validators, for kernels without the `netem` qdisc (issue 11 item 2).
//!
//! Every validator `k` has a *public* address `public_k` (the one in the others'
//! `persistent_peers`), bound by the relay, and a *real* address `real_k` (its QUIC listener,
//! in its own network namespace). A datagram that arrives at `public_k` from `real_m` is a
//! packet of validator `m` for validator `k`: after the delay it leaves the relay from
//! `public_m` towards `real_k`. So each validator sees each other one at a single address,
//! whichever side dialled, exactly as across a real network; a datagram from any other source
//! is dropped and counted.
//!
//! Conditions ([`WanConditions`]) apply to every datagram once, in each direction: a one-way
//! delay, a uniform jitter of ± `jitter` around it, and an independent loss probability. Jitter
//! never reorders the datagrams of one path (a datagram leaves no earlier than the one sent
//! before it from the same validator to the same validator), as on a real link and unlike
//! `netem`'s default: with ±10 ms drawn independently per datagram, nearly every burst arrived
//! shuffled, QUIC took the reordering for loss, and at 1,000 tx/s the chain committed 13
//! transactions in 20 s. The random choices come from a seeded ChaCha generator per public
//! socket.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Largest datagram relayed, in bytes (QUIC sends at most about 1,500 on these links).
pub const MAX_DATAGRAM: usize = 65_535;
/// Datagrams held at once (delayed, not yet sent); beyond it new ones are dropped as a full
/// router queue would (counted in [`RelayStats::dropped_queue`]).
pub const MAX_HELD: usize = 1 << 20;

/// What the relay does to each datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WanConditions {
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// Each datagram's delay is `delay` ± up to `jitter` (uniform), never below zero, and
    /// never earlier than the previous datagram's on the same path (no reordering).
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is dropped.
    pub loss: f64,
}

/// One validator as the relay sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayNode {
    /// The address the others dial it at; the relay binds it.
    pub public: SocketAddr,
    /// Its QUIC listener.
    pub real: SocketAddr,
}

/// Counters of a running relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams sent on after their delay.
    pub forwarded: AtomicU64,
    /// Datagrams dropped by the loss probability.
    pub dropped_loss: AtomicU64,
    /// Datagrams from an address that is no validator's real address.
    pub dropped_unknown: AtomicU64,
    /// Datagrams dropped because [`MAX_HELD`] were held.
    pub dropped_queue: AtomicU64,
}

/// A datagram waiting for its time.
struct Held {
    at: Instant,
    seq: u64,
    from: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Check the conditions and the node list: loss in `[0, 1]`, distinct public and real
/// addresses, at least two nodes.
pub fn check(nodes: &[RelayNode], cond: &WanConditions) -> io::Result<()> {
    let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    if !(0.0..=1.0).contains(&cond.loss) {
        return bad(format!("loss {} is not in [0, 1]", cond.loss));
    }
    if nodes.len() < 2 {
        return bad("a relay needs at least two nodes".into());
    }
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            if a.public == b.public || a.real == b.real {
                return bad(format!("nodes {a:?} and {b:?} share an address"));
            }
        }
    }
    Ok(())
}

/// Bind every node's public address.
async fn bind_all(nodes: &[RelayNode]) -> io::Result<Vec<Arc<UdpSocket>>> {
    let mut sockets = Vec::with_capacity(nodes.len());
    for n in nodes {
        let s = UdpSocket::bind(n.public).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind relay address {}: {e}", n.public),
            )
        })?;
        sockets.push(Arc::new(s));
    }
    Ok(sockets)
}

/// Run the relay on the current tokio runtime until `stop` turns true (or its sender is
/// dropped). Binds every node's public address first; a bind error is returned at once.
pub async fn run(
    nodes: Vec<RelayNode>,
    cond: WanConditions,
    seed: u64,
    stats: Arc<RelayStats>,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    check(&nodes, &cond)?;
    let sockets = bind_all(&nodes).await?;
    relay(&nodes, sockets, cond, seed, stats, stop).await
}

/// The relay loop over bound sockets (`sockets[k]` bound at `nodes[k].public`).
async fn relay(
    nodes: &[RelayNode],
    sockets: Vec<Arc<UdpSocket>>,
    cond: WanConditions,
    seed: u64,
    stats: Arc<RelayStats>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let reals: Arc<Vec<SocketAddr>> = Arc::new(nodes.iter().map(|n| n.real).collect());
    let (tx, mut rx) = mpsc::unbounded_channel::<Held>();
    let mut readers = Vec::with_capacity(sockets.len());
    for (k, sock) in sockets.iter().enumerate() {
        let (sock, reals, stats, tx) = (sock.clone(), reals.clone(), stats.clone(), tx.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (k as u64).wrapping_mul(0x9E37_79B9));
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let mut seq = 0u64;
            // Per sender: when its last datagram to this node leaves the relay.
            let mut last_at = vec![Instant::now(); reals.len()];
            loop {
                let Ok((len, src)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(from) = reals.iter().position(|r| *r == src) else {
                    stats.dropped_unknown.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if cond.loss > 0.0 && rng.random::<f64>() < cond.loss {
                    stats.dropped_loss.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let jitter = cond.jitter.as_micros() as i64;
                let offset = if jitter > 0 {
                    rng.random_range(-jitter..=jitter)
                } else {
                    0
                };
                let micros = (cond.delay.as_micros() as i64 + offset).max(0) as u64;
                // Jitter varies the delay but does not reorder one path's datagrams.
                let at = (Instant::now() + Duration::from_micros(micros)).max(last_at[from]);
                last_at[from] = at;
                seq += 1;
                let held = Held {
                    at,
                    seq: seq * 64 + k as u64,
                    from,
                    to: reals[k],
                    bytes: buf[..len].to_vec(),
                };
                if tx.send(held).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let result = loop {
        let next = heap.peek().map(|Reverse(h)| h.at);
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break Ok(());
                }
            }
            held = rx.recv() => match held {
                Some(h) if heap.len() < MAX_HELD => heap.push(Reverse(h)),
                Some(_) => { stats.dropped_queue.fetch_add(1, Ordering::Relaxed); }
                None => break Ok(()),
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|Reverse(h)| h.at <= now) {
                    let Some(Reverse(h)) = heap.pop() else { break };
                    // A send error (e.g. the node is down: ICMP unreachable) is a lost datagram.
                    if sockets[h.from].send_to(&h.bytes, h.to).await.is_ok() {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    for r in readers {
        r.abort();
    }
    result
}

/// A relay running on its own thread.
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    /// Its counters.
    pub stats: Arc<RelayStats>,
}

impl RelayHandle {
    /// Stop the relay and wait for its thread; returns its result.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let _ = self.stop.send(true);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("relay thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Start the relay on a new thread with its own single-threaded runtime; with `netns`, the
/// thread first joins that network namespace (`/run/netns/<name>`, as `ip netns add` makes
/// it), so every socket of the relay lives there. Returns once the public addresses are bound,
/// or with the bind error.
pub fn spawn(
    netns: Option<String>,
    nodes: Vec<RelayNode>,
    cond: WanConditions,
    seed: u64,
) -> io::Result<RelayHandle> {
    check(&nodes, &cond)?;
    let stats = Arc::new(RelayStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
    let st = stats.clone();
    let thread = std::thread::Builder::new()
        .name("wan-relay".into())
        .spawn(move || {
            let setup = (|| {
                if let Some(ns) = &netns {
                    crate::netns::enter(ns)?;
                }
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })();
            let rt = match setup {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            rt.block_on(async move {
                // Bind first (the result goes to the caller), then relay.
                match bind_all(&nodes).await {
                    Err(e) => {
                        let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        Err(e)
                    }
                    Ok(sockets) => {
                        let _ = ready_tx.send(Ok(()));
                        relay(&nodes, sockets, cond, seed, st, stop_rx).await
                    }
                }
            })
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("relay thread ended before binding")))?;
    Ok(RelayHandle {
        stop: stop_tx,
        thread: Some(thread),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(public: u16, real: u16) -> RelayNode {
        RelayNode {
            public: SocketAddr::from(([127, 0, 0, 1], public)),
            real: SocketAddr::from(([127, 0, 0, 1], real)),
        }
    }

    fn free_udp() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn bad_conditions_and_nodes_are_refused() {
        let ok = WanConditions {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
        };
        check(&[node(1, 2), node(3, 4)], &ok).unwrap();
        assert!(check(&[node(1, 2)], &ok).is_err());
        assert!(check(&[node(1, 2), node(1, 4)], &ok).is_err());
        assert!(check(&[node(1, 2), node(3, 2)], &ok).is_err());
        let lossy = WanConditions { loss: 1.5, ..ok };
        assert!(check(&[node(1, 2), node(3, 4)], &lossy).is_err());
    }

    /// Two "validators" on loopback talk through the relay: a datagram from A's real address
    /// to B's public one reaches B's real address from A's public one, after the delay; a
    /// stranger's datagram is dropped; with loss 1 nothing passes.
    #[test]
    fn datagrams_cross_with_the_delay_and_the_right_source() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (pa, pb) = (free_udp(), free_udp());
        let nodes = vec![
            node(pa, a.local_addr().unwrap().port()),
            node(pb, b.local_addr().unwrap().port()),
        ];
        let cond = WanConditions {
            delay: Duration::from_millis(50),
            jitter: Duration::ZERO,
            loss: 0.0,
        };
        let relay = spawn(None, nodes.clone(), cond, 7).unwrap();
        let sent = std::time::Instant::now();
        a.send_to(b"hello", nodes[1].public).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert!(sent.elapsed() >= Duration::from_millis(50));
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, nodes[0].public);
        // The reply goes back the same way.
        b.send_to(b"back", from).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"back"[..], nodes[1].public));
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger.send_to(b"x", nodes[1].public).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while relay.stats.dropped_unknown.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "stranger not counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(relay.stats.forwarded.load(Ordering::Relaxed), 2);
        relay.stop().unwrap();

        let lossy = WanConditions { loss: 1.0, ..cond };
        let relay = spawn(None, nodes.clone(), lossy, 7).unwrap();
        for _ in 0..20 {
            a.send_to(b"lost", nodes[1].public).unwrap();
        }
        b.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(b.recv_from(&mut buf).is_err());
        assert_eq!(relay.stats.dropped_loss.load(Ordering::Relaxed), 20);
    }
}
