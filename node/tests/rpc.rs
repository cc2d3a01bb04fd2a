//! RPC input handling on a single-validator node: bad requests get 4xx JSON errors and the node
//! keeps running; a submitted transaction is committed and readable.

mod common;

use common::*;
use node::rpc_types::*;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_rejected_and_node_survives() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_ports(1)[0];
    node::init_home(dir.path(), "rpc-chain", port, 0).unwrap();
    let node = node::spawn(dir.path(), fast()).await.unwrap();
    let addr = node.rpc_addr();
    let c = client();

    // Garbage JSON.
    let r = c
        .post(url(addr, "/tx"))
        .body("{this is not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: ErrorResponse = r.json().await.unwrap();
    assert!(e.error.contains("invalid JSON"), "{}", e.error);

    // Unknown op / missing fields / empty key.
    for body in [
        r#"{"op":"frobnicate","key":"k","nonce":1}"#,
        r#"{"op":"put","key":"k"}"#,
        r#"{"op":"put","key":"","value":"v","nonce":1}"#,
    ] {
        let r = c.post(url(addr, "/tx")).body(body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let _: ErrorResponse = r.json().await.unwrap();
    }

    // Oversized body.
    let big = vec![b'x'; node::rpc::MAX_BODY_BYTES + 1024];
    let r = c.post(url(addr, "/txs")).body(big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e: ErrorResponse = r.json().await.unwrap();
    assert!(e.error.contains("exceeds"), "{}", e.error);

    // Too many txs in a batch.
    let txs: Vec<TxRequest> = (0..MAX_BATCH_TXS + 1)
        .map(|i| TxRequest::Delete {
            key: format!("k{i}"),
            nonce: 0,
        })
        .collect();
    let r = c
        .post(url(addr, "/txs"))
        .json(&BatchRequest { txs })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Bad path parameters and unknown items.
    let r = c.get(url(addr, "/blocks/abc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(url(addr, "/blocks/999999")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let _: ErrorResponse = r.json().await.unwrap();
    let r = c.get(url(addr, "/tx/zz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(url(addr, "/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Still alive.
    let s = status(&c, addr).await.expect("status after bad input");
    assert_eq!(s.chain_id, "rpc-chain");
    assert!(!node.is_finished());
    let m = c
        .get(url(addr, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("bftnode_committed_height"), "{m}");
    assert!(m.contains("bftnode_commits_total"), "{m}");
    let v: Vec<ValidatorResponse> = c
        .get(url(addr, "/validators"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.len(), 1);
    let _: Vec<EvidenceResponse> = c
        .get(url(addr, "/evidence"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _: Vec<PeerResponse> = c
        .get(url(addr, "/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // A valid transaction; duplicate rejected with 409.
    let tx = r#"{"op":"put","key":"hello","value":"world","nonce":1}"#;
    let r = c.post(url(addr, "/tx")).body(tx).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let SubmitResponse { hash } = r.json().await.unwrap();
    let r = c.post(url(addr, "/tx")).body(tx).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Committed by the single validator (needs the consensus core).
    let committed = wait_until(20, || async {
        kv(&c, addr, "hello").await.is_some_and(|k| k.found)
    })
    .await;
    assert!(committed, "transaction not committed");
    let k = kv(&c, addr, "hello").await.unwrap();
    assert_eq!(k.value.as_deref(), Some("world"));
    let t: TxResponse = c
        .get(url(addr, &format!("/tx/{hash}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t.status, TxStatus::Committed);
    let b = block(&c, addr, t.height.unwrap()).await.unwrap();
    assert!(b.tx_hashes.contains(&hash));
    let latest: BlockResponse = c
        .get(url(addr, "/blocks/latest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(latest.height >= b.height);
    let h = c.get(url(addr, "/health")).send().await.unwrap();
    assert!(h.status() == StatusCode::OK || h.status() == StatusCode::SERVICE_UNAVAILABLE);
    let _: HealthResponse = h.json().await.unwrap();

    node.stop().await.unwrap();

    // Restart from the same database: the state is still there.
    let node = node::spawn(dir.path(), fast()).await.unwrap();
    let k = kv(&c, node.rpc_addr(), "hello").await.unwrap();
    assert_eq!(k.value.as_deref(), Some("world"));
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_database_without_safety_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_ports(1)[0];
    node::init_home(dir.path(), "rpc-chain", port, 0).unwrap();
    // Plant a database holding a commit but no safety record.
    {
        use storage::Store as _;
        let mut s = storage::RocksStore::open(dir.path().join("data"), Default::default()).unwrap();
        s.write(storage::WriteBatch {
            sync: true,
            ops: vec![storage::Op::Commit {
                height: consensus::Height(0),
                id: consensus::Digest([1; 32]),
            }],
        })
        .unwrap();
    }
    let e = match node::spawn(dir.path(), fast()).await {
        Ok(_) => panic!("must refuse"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("no safety record"), "{e}");
}
