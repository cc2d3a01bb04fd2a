//! Loopback benchmark of the network crate: two validators on 127.0.0.1 over QUIC.
//!
//! Measures (1) one-way throughput of 512-byte consensus frames with a bounded window of
//! unacknowledged frames, (2) unicast round-trip time (A sends, B echoes with `send`), and
//! (3) block-sync request/response round-trip time.
//!
//! Run: `cargo run --release -p network --example net_bench [frames] [rtt_rounds] [frame_bytes]`
//!
//! Through a WAN relay instead of loopback: `NET_BENCH_RELAY=1` listens on `127.0.0.1:17000`
//! and `:17001` and dials `127.0.0.2:17000` and `:17001`, the public addresses of a relay
//! started beforehand, e.g. `bftnode-wan-relay --node 127.0.0.2:17000=127.0.0.1:17000 --node
//! 127.0.0.2:17001=127.0.0.1:17001 --delay-ms 50 --loss 0.01`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use network::{NetworkConfig, NetworkEvent, ValidatorPeer, public_key_of, start};
use tokio::sync::watch;

const WINDOW: u64 = 384;

fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort_unstable();
    println!(
        "{name}: n={} median={:.3} ms p99={:.3} ms min={:.3} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        percentile(&v, 0.0)
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let frames: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let frame: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);

    let seeds = [[1u8; 32], [2u8; 32]];
    let (listen, dial) = if std::env::var_os("NET_BENCH_RELAY").is_some() {
        let at = |ip: &str, port: u16| SocketAddr::new(ip.parse().expect("an IP"), port);
        (
            [at("127.0.0.1", 17000), at("127.0.0.1", 17001)],
            [at("127.0.0.2", 17000), at("127.0.0.2", 17001)],
        )
    } else {
        let addrs = [free_addr(), free_addr()];
        (addrs, addrs)
    };
    let validators: Vec<ValidatorPeer> = (0..2)
        .map(|i| {
            Ok(ValidatorPeer {
                index: i as u16,
                public_key: public_key_of(&seeds[i])?,
                addr: dial[i],
            })
        })
        .collect::<Result<_, network::NetworkError>>()?;
    let cfg = |i: usize| {
        let mut c = NetworkConfig::new(seeds[i], listen[i], validators.clone());
        c.rate_limit_msgs_per_sec = 10_000_000;
        c.rate_limit_burst = 10_000_000;
        c.max_inflight_per_peer = 8 * WINDOW as usize;
        c
    };
    let (a, mut a_rx) = start(cfg(0)).await?;
    let (b, mut b_rx) = start(cfg(1)).await?;
    while !matches!(
        a_rx.recv().await,
        Some(NetworkEvent::PeerConnected { index: 1 })
    ) {}
    while !matches!(
        b_rx.recv().await,
        Some(NetworkEvent::PeerConnected { index: 0 })
    ) {}

    // B counts frames and publishes the count; in echo mode it sends every frame back.
    let (count_tx, mut count_rx) = watch::channel(0u64);
    let (mode_tx, mode_rx) = watch::channel(false); // false = count, true = echo
    let b2 = b.clone();
    let b_task = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(e) = b_rx.recv().await {
            match e {
                NetworkEvent::Consensus { from, bytes } => {
                    if *mode_rx.borrow() {
                        b2.send(from, bytes);
                    } else {
                        n += 1;
                        if n.is_multiple_of(64) || n == frames {
                            let _ = count_tx.send(n);
                        }
                    }
                }
                NetworkEvent::SyncRequest {
                    request_id, bytes, ..
                } => b2.respond(request_id, bytes),
                _ => {}
            }
        }
    });

    // 1. One-way throughput with at most WINDOW frames outstanding.
    let payload = vec![0xabu8; frame];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < frames {
        let received = *count_rx.borrow();
        let room = (received + WINDOW).saturating_sub(sent).min(frames - sent);
        for _ in 0..room {
            a.send(1, payload.clone());
        }
        sent += room;
        if (sent < frames || received < frames)
            && tokio::time::timeout(Duration::from_secs(10), count_rx.changed())
                .await
                .is_err()
        {
            eprintln!(
                "stalled: sent {sent} received {received}\nA: {:?}\nB: {:?}\nA peers: {:?}",
                a.metrics().await,
                b.metrics().await,
                a.peers().await
            );
            return Err("throughput phase stalled".into());
        }
    }
    while *count_rx.borrow() < frames {
        if tokio::time::timeout(Duration::from_secs(10), count_rx.changed())
            .await
            .is_err()
        {
            eprintln!(
                "stalled at the end: received {}\nA: {:?}\nB: {:?}\nA peers: {:?}",
                *count_rx.borrow(),
                a.metrics().await,
                b.metrics().await,
                a.peers().await
            );
            return Err("throughput phase stalled".into());
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let dropped = a.metrics().await.send_dropped;
    println!(
        "one-way {frame} B frames: {frames} in {dt:.2} s = {:.0} msg/s, {:.3} MB/s (window {WINDOW}, sender drops {dropped})",
        frames as f64 / dt,
        frames as f64 * frame as f64 / dt / 1e6
    );

    // 2. Unicast RTT: A -> B -> A, one at a time.
    mode_tx.send(true)?;
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        a.send(1, payload.clone());
        loop {
            if let Some(NetworkEvent::Consensus { .. }) = a_rx.recv().await {
                break;
            }
        }
        rtts.push(t.elapsed());
    }
    report(&format!("unicast RTT ({frame} B, send+echo)"), rtts);

    // 3. Sync request/response RTT.
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let id = a.request(1, payload.clone());
        loop {
            if let Some(NetworkEvent::SyncResponse { request_id, .. }) = a_rx.recv().await
                && request_id == id
            {
                break;
            }
        }
        rtts.push(t.elapsed());
    }
    report(&format!("sync request/response RTT ({frame} B)"), rtts);

    let peers = a.peers().await;
    if let Some(rtt) = peers.first().and_then(|p| p.rtt_ms) {
        println!("libp2p ping RTT: {rtt:.3} ms");
    }
    a.shutdown();
    b.shutdown();
    b_task.abort();
    Ok(())
}
