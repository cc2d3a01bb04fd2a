//! End-to-end tests over real QUIC sockets on 127.0.0.1 (no mocks).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use network::{
    Misbehaviour, NetworkConfig, NetworkEvent, NetworkHandle, Topic, ValidatorPeer, public_key_of,
    start,
};
use tokio::sync::mpsc::Receiver;
use tokio::time::{Instant, timeout};

/// Generous per-wait timeout: tests never sleep blindly, they wait for an event or a counter.
const WAIT: Duration = Duration::from_secs(10);

/// `n` distinct free UDP ports on loopback (all held until every one is chosen).
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("addr"))
        .collect()
}

/// A secret seed unique to this test (`tag`) and node (`i`).
fn seed(tag: u8, i: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[0] = tag;
    s[1] = i;
    s[31] = 0x5a;
    s
}

/// Configs for `n` validators with indexes `0..n`; `tweak` adjusts each.
fn cluster(tag: u8, n: usize, tweak: impl Fn(usize, &mut NetworkConfig)) -> Vec<NetworkConfig> {
    let addrs = free_addrs(n);
    let validators: Vec<ValidatorPeer> = (0..n)
        .map(|i| ValidatorPeer {
            index: i as u16,
            public_key: public_key_of(&seed(tag, i as u8)).expect("key"),
            addr: addrs[i],
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut c = NetworkConfig::new(seed(tag, i as u8), addrs[i], validators.clone());
            c.redial_min_ms = 50;
            c.redial_max_ms = 500;
            tweak(i, &mut c);
            c
        })
        .collect()
}

type Node = (NetworkHandle, Receiver<NetworkEvent>);

async fn start_all(cfgs: Vec<NetworkConfig>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for c in cfgs {
        nodes.push(start(c).await.expect("start"));
    }
    nodes
}

/// Waits for the first event matching `pred`, skipping others.
async fn expect(
    rx: &mut Receiver<NetworkEvent>,
    what: &str,
    pred: impl Fn(&NetworkEvent) -> bool,
) -> NetworkEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            rx.recv(),
        )
        .await
        {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Waits until node `rx` has seen `PeerConnected` for every index in `others`.
async fn connected_to(rx: &mut Receiver<NetworkEvent>, others: &[u16]) {
    let mut missing: Vec<u16> = others.to_vec();
    while !missing.is_empty() {
        if let NetworkEvent::PeerConnected { index } = expect(rx, "PeerConnected", |e| {
            matches!(e, NetworkEvent::PeerConnected { .. })
        })
        .await
        {
            missing.retain(|i| *i != index);
        }
    }
}

/// Polls `handle.metrics()` until `pred` holds.
async fn metrics_until(
    handle: &NetworkHandle,
    what: &str,
    pred: impl Fn(&network::NetworkMetrics) -> bool,
) -> network::NetworkMetrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = handle.metrics().await;
        if pred(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn consensus(e: &NetworkEvent) -> Option<(u16, &[u8])> {
    match e {
        NetworkEvent::Consensus { from, bytes } => Some((*from, bytes)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_broadcast_and_unicast() {
    let mut nodes = start_all(cluster(1, 4, |_, _| {})).await;
    for (i, (_, rx)) in nodes.iter_mut().enumerate() {
        let others: Vec<u16> = (0..4u16).filter(|j| *j as usize != i).collect();
        connected_to(rx, &others).await;
    }
    // Broadcast from 0, looped back to 0 as well.
    nodes[0].0.broadcast(b"proposal-0".to_vec(), true);
    for (_, rx) in nodes.iter_mut() {
        let e = expect(rx, "broadcast", |e| consensus(e).is_some()).await;
        assert_eq!(consensus(&e), Some((0, &b"proposal-0"[..])));
    }
    // Unicast 2 -> 3 and 2 -> 2 (loopback).
    nodes[2].0.send(3, b"vote-2".to_vec());
    nodes[2].0.send(2, b"self-2".to_vec());
    let e = expect(&mut nodes[3].1, "unicast", |e| consensus(e).is_some()).await;
    assert_eq!(consensus(&e), Some((2, &b"vote-2"[..])));
    let e = expect(&mut nodes[2].1, "loopback", |e| consensus(e).is_some()).await;
    assert_eq!(consensus(&e), Some((2, &b"self-2"[..])));
    // Every node broadcasts without loopback; each receives exactly the three others.
    for (i, (h, _)) in nodes.iter().enumerate() {
        h.broadcast(vec![i as u8; 512], false);
    }
    for (i, (_, rx)) in nodes.iter_mut().enumerate() {
        let mut froms = Vec::new();
        for _ in 0..3 {
            let e = expect(rx, "all-to-all", |e| consensus(e).is_some()).await;
            let (from, bytes) = consensus(&e).unwrap();
            assert_eq!(bytes, &vec![from as u8; 512][..]);
            froms.push(from);
        }
        froms.sort_unstable();
        let want: Vec<u16> = (0..4u16).filter(|j| *j as usize != i).collect();
        assert_eq!(froms, want);
    }
    let m = nodes[3].0.metrics().await;
    assert_eq!(m.frames_in, 5, "{m:?}");
    assert_eq!(m.oversized_dropped + m.non_validator_dropped, 0);
    let peers = nodes[1].0.peers().await;
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| p.connected && p.score == 0));
    assert_eq!(peers.iter().map(|p| p.msgs_out).sum::<u64>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_request_response_round_trip() {
    let mut nodes = start_all(cluster(2, 2, |_, c| {
        c.sync_max_response_bytes = 64 * 1024;
        c.sync_timeout_ms = 500;
    }))
    .await;
    connected_to(&mut nodes[0].1, &[1]).await;
    connected_to(&mut nodes[1].1, &[0]).await;

    let id = nodes[0].0.request(1, b"blocks 5..9".to_vec());
    let e = expect(&mut nodes[1].1, "SyncRequest", |e| {
        matches!(e, NetworkEvent::SyncRequest { .. })
    })
    .await;
    let NetworkEvent::SyncRequest {
        from,
        request_id,
        bytes,
    } = e
    else {
        unreachable!()
    };
    assert_eq!((from, &bytes[..]), (0, &b"blocks 5..9"[..]));
    nodes[1].0.respond(request_id, vec![7u8; 60 * 1024]);
    let e = expect(&mut nodes[0].1, "SyncResponse", |e| {
        matches!(e, NetworkEvent::SyncResponse { .. })
    })
    .await;
    assert_eq!(
        e,
        NetworkEvent::SyncResponse {
            from: 1,
            request_id: id,
            result: Ok(vec![7u8; 60 * 1024])
        }
    );

    // A response above the cap becomes an error reply, not a giant frame.
    let id2 = nodes[0].0.request(1, b"too much".to_vec());
    let e = expect(&mut nodes[1].1, "SyncRequest 2", |e| {
        matches!(e, NetworkEvent::SyncRequest { .. })
    })
    .await;
    let NetworkEvent::SyncRequest { request_id, .. } = e else {
        unreachable!()
    };
    nodes[1].0.respond(request_id, vec![0u8; 65 * 1024]);
    let e = expect(&mut nodes[0].1, "SyncResponse 2", |e| {
        matches!(e, NetworkEvent::SyncResponse { .. })
    })
    .await;
    assert!(
        matches!(&e, NetworkEvent::SyncResponse { request_id, result: Err(_), .. } if *request_id == id2),
        "{e:?}"
    );

    // Unanswered -> timeout error; unknown target -> immediate error.
    let id3 = nodes[0].0.request(1, b"ignored".to_vec());
    let id4 = nodes[0].0.request(9, b"nobody".to_vec());
    let mut got = Vec::new();
    for _ in 0..2 {
        if let NetworkEvent::SyncResponse {
            request_id, result, ..
        } = expect(&mut nodes[0].1, "SyncResponse errors", |e| {
            matches!(e, NetworkEvent::SyncResponse { .. })
        })
        .await
        {
            assert!(result.is_err());
            got.push(request_id);
        }
    }
    got.sort_unstable();
    assert_eq!(got, vec![id3, id4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_dropped_counted_and_scored() {
    // Node 0 may send up to 1 MiB; node 1 accepts at most 1 KiB.
    let mut nodes = start_all(cluster(3, 2, |i, c| {
        c.max_frame_bytes = if i == 0 { 1 << 20 } else { 1024 };
    }))
    .await;
    connected_to(&mut nodes[0].1, &[1]).await;
    connected_to(&mut nodes[1].1, &[0]).await;

    nodes[0].0.send(1, vec![0xee; 64 * 1024]);
    let m = metrics_until(&nodes[1].0, "oversized count", |m| m.oversized_dropped == 1).await;
    assert_eq!(m.frames_in, 0);
    let peers = nodes[1].0.peers().await;
    assert_eq!(peers[0].score, Misbehaviour::OversizedFrame.penalty());
    assert!(
        peers[0].connected,
        "one oversized frame must not cost the connection"
    );

    // The receiver keeps working: a frame under the cap arrives.
    nodes[0].0.send(1, b"small".to_vec());
    let e = expect(&mut nodes[1].1, "small frame", |e| consensus(e).is_some()).await;
    assert_eq!(consensus(&e), Some((0, &b"small"[..])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_non_validator_are_dropped() {
    // Node 0's genesis set is {0, 1}; the intruder has a random key but lists node 0 as a peer.
    let mut cfgs = cluster(4, 2, |_, _| {});
    let intruder_addr = free_addrs(1)[0];
    let intruder_seed = seed(44, 9);
    let mut intruder_set = vec![cfgs[0].validators[0].clone()];
    intruder_set.push(ValidatorPeer {
        index: 1,
        public_key: public_key_of(&intruder_seed).unwrap(),
        addr: intruder_addr,
    });
    let intruder_cfg = NetworkConfig::new(intruder_seed, intruder_addr, intruder_set);
    cfgs.truncate(1); // node 1 of the genesis set stays offline
    let mut nodes = start_all(cfgs).await;
    let (intruder, mut intruder_rx) = start(intruder_cfg).await.unwrap();
    connected_to(&mut intruder_rx, &[0]).await;

    for i in 0..5u8 {
        intruder.send(0, vec![i; 100]);
    }
    intruder.publish(Topic::Transactions, b"spam".to_vec());
    let m = metrics_until(&nodes[0].0, "non-validator drops", |m| {
        m.non_validator_dropped == 5
    })
    .await;
    assert_eq!(m.frames_in, 0);
    // No consensus event leaked through.
    while let Ok(e) = nodes[0].1.try_recv() {
        assert!(consensus(&e).is_none(), "{e:?}");
        assert!(
            !matches!(e, NetworkEvent::PeerConnected { .. }),
            "a non-validator is not a validator peer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_the_others() {
    let mut nodes = start_all(cluster(5, 3, |_, _| {})).await;
    for (i, (_, rx)) in nodes.iter_mut().enumerate() {
        let others: Vec<u16> = (0..3u16).filter(|j| *j as usize != i).collect();
        connected_to(rx, &others).await;
    }
    let author = nodes[0].0.local_peer_id();
    // Subscriptions propagate asynchronously: republish (fresh payloads) until both receive.
    let mut received = [false; 3];
    let deadline = Instant::now() + WAIT;
    let mut n = 0u32;
    while !(received[1] && received[2]) {
        assert!(Instant::now() < deadline, "gossip did not arrive");
        nodes[0]
            .0
            .publish(Topic::Transactions, format!("tx-{n}").into_bytes());
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (i, (_, rx)) in nodes.iter_mut().enumerate().skip(1) {
            while let Ok(e) = rx.try_recv() {
                if let NetworkEvent::Gossip { topic, from, bytes } = e {
                    assert_eq!(topic, Topic::Transactions);
                    assert_eq!(from, author);
                    assert!(bytes.starts_with(b"tx-"));
                    received[i] = true;
                }
            }
        }
    }
    nodes[2].0.publish(Topic::Evidence, b"evidence".to_vec());
    let e = expect(&mut nodes[1].1, "evidence gossip", |e| {
        matches!(e, NetworkEvent::Gossip { .. })
    })
    .await;
    assert_eq!(
        e,
        NetworkEvent::Gossip {
            topic: Topic::Evidence,
            from: nodes[2].0.local_peer_id(),
            bytes: b"evidence".to_vec()
        }
    );
    // An over-cap message is refused locally.
    nodes[0]
        .0
        .publish(Topic::Transactions, vec![0; (1 << 20) + 1]);
    metrics_until(&nodes[0].0, "publish refused", |m| {
        m.gossip_publish_failed >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_is_banned_then_let_back() {
    // Node 1 allows 20 frames/s with a burst of 10; 10 excess frames reach ban_score 10.
    let mut nodes = start_all(cluster(6, 2, |i, c| {
        if i == 1 {
            c.rate_limit_msgs_per_sec = 20;
            c.rate_limit_burst = 10;
            c.ban_score = 10;
            c.ban_cooldown_ms = 1_500;
        }
    }))
    .await;
    connected_to(&mut nodes[0].1, &[1]).await;
    connected_to(&mut nodes[1].1, &[0]).await;

    for i in 0..300u32 {
        nodes[0].0.send(1, i.to_be_bytes().to_vec());
    }
    expect(&mut nodes[1].1, "flooder disconnected", |e| {
        *e == NetworkEvent::PeerDisconnected { index: 0 }
    })
    .await;
    let m = nodes[1].0.metrics().await;
    assert_eq!(m.bans, 1, "{m:?}");
    assert!(m.rate_limited_dropped >= 10, "{m:?}");
    assert!(m.frames_in <= 20, "{m:?}");
    let peers = nodes[1].0.peers().await;
    assert!(peers[0].banned && !peers[0].connected);

    // After the cool-down the peer is let back (its redial succeeds).
    let banned_at = Instant::now();
    expect(&mut nodes[1].1, "reconnect after cool-down", |e| {
        *e == NetworkEvent::PeerConnected { index: 0 }
    })
    .await;
    assert!(banned_at.elapsed() >= Duration::from_millis(1_000));

    // A report() from the node bans it again (Undecodable = 20 >= 10).
    nodes[1].0.report(0, Misbehaviour::Undecodable);
    expect(&mut nodes[1].1, "disconnect after report", |e| {
        *e == NetworkEvent::PeerDisconnected { index: 0 }
    })
    .await;
    assert_eq!(nodes[1].0.metrics().await.bans, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_sync_response_is_rejected_by_requester() {
    // Node 0 accepts responses up to 16 KiB; node 1 (willing to send 1 MiB) answers with 32 KiB.
    let mut nodes = start_all(cluster(7, 2, |i, c| {
        c.sync_max_response_bytes = if i == 0 { 16 * 1024 } else { 1 << 20 };
    }))
    .await;
    connected_to(&mut nodes[0].1, &[1]).await;
    connected_to(&mut nodes[1].1, &[0]).await;
    let id = nodes[0].0.request(1, b"big".to_vec());
    let e = expect(&mut nodes[1].1, "SyncRequest", |e| {
        matches!(e, NetworkEvent::SyncRequest { .. })
    })
    .await;
    let NetworkEvent::SyncRequest { request_id, .. } = e else {
        unreachable!()
    };
    nodes[1].0.respond(request_id, vec![1u8; 32 * 1024]);
    let e = expect(&mut nodes[0].1, "SyncResponse", |e| {
        matches!(e, NetworkEvent::SyncResponse { .. })
    })
    .await;
    assert!(
        matches!(&e, NetworkEvent::SyncResponse { from: 1, request_id, result: Err(_) } if *request_id == id),
        "{e:?}"
    );
    let m = nodes[0].0.metrics().await;
    assert_eq!(m.oversized_dropped, 1, "{m:?}");
    assert_eq!(
        nodes[0].0.peers().await[0].score,
        Misbehaviour::OversizedFrame.penalty()
    );
}
