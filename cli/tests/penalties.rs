//! `bftnode penalties [VALIDATOR]` against a tiny HTTP mock that answers with the node's own
//! response types (`node::rpc_types::PenaltiesResponse`), so the CLI and the RPC cannot drift.
//! The real route is exercised end to end in `node/tests/accountability.rs`.

use node::rpc_types::{PenaltiesResponse, PenaltyEntryResponse};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;

fn summary(v: u16, standing: &str, entries: Vec<PenaltyEntryResponse>) -> PenaltiesResponse {
    PenaltiesResponse {
        validator: v,
        standing: standing.to_string(),
        since_height: if entries.is_empty() { 0 } else { 40 },
        convicted: false,
        strikes: entries.len() as u64,
        downtime_records: entries.len() as u64,
        evidence_committed: 0,
        total_penalties: entries.len() as u64,
        accounted_height: 57,
        entries,
    }
}

fn downtime(height: u64) -> PenaltyEntryResponse {
    PenaltyEntryResponse {
        height,
        block_view: height + 2,
        kind: "downtime".to_string(),
        standing: "quarantined".to_string(),
        evidence_id: None,
        evidence_view: None,
        safety: None,
        window_start: Some(height - 19),
        window_end: Some(height),
        signed: Some(1),
        eligible: Some(18),
        proposed: Some(0),
        missed_slots: Some(2),
        threshold_pct: Some(20),
    }
}

/// Serve `GET /penalties` and `GET /penalties/3` forever; anything else is a 404.
fn mock() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let all: Vec<PenaltiesResponse> = (0..4)
        .map(|v| {
            if v == 3 {
                summary(v, "quarantined", vec![downtime(40)])
            } else {
                summary(v, "good", Vec::new())
            }
        })
        .collect();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = match path.as_str() {
                "/penalties" => (200, serde_json::to_string(&all).unwrap()),
                "/penalties/3" => (200, serde_json::to_string(&all[3]).unwrap()),
                _ => (
                    404,
                    r#"{"error":"no validator 9 in the accounting state"}"#.into(),
                ),
            };
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn bftnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bftnode"))
        .args(args)
        .env_remove("BFTNODE_RPC")
        .output()
        .expect("run bftnode")
}

#[test]
fn penalties_tables_and_json() {
    let url = mock();
    let o = bftnode(&["penalties", "--rpc", &url]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.starts_with("VALIDATOR"), "{text}");
    assert!(
        !text.contains("ENTRIES"),
        "entries are not a column: {text}"
    );
    assert_eq!(text.lines().count(), 5, "header + 4 validators: {text}");
    let row3 = text.lines().find(|l| l.starts_with('3')).unwrap();
    assert!(row3.contains("quarantined"), "{row3}");

    let o = bftnode(&["penalties", "3", "--rpc", &url]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success());
    assert!(
        text.contains("standing") && text.contains("quarantined"),
        "{text}"
    );
    assert!(text.contains("downtime"), "the entry table: {text}");

    let o = bftnode(&["penalties", "3", "--rpc", &url, "--output", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"][0]["signed"], 1);
    assert_eq!(v["entries"][0]["window_end"], 40);

    let o = bftnode(&["penalties", "9", "--rpc", &url]);
    assert_eq!(o.status.code(), Some(3), "the node's 404 is exit 3");
    let o = bftnode(&["penalties", "x", "--rpc", &url]);
    assert_eq!(o.status.code(), Some(2), "not an index");
}
