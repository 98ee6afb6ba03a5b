//! Delivery through the node agent (`mcp-ledger-agent --mode node`, the real binary):
//! a sender standing in for the sidecars exports records over OTLP/HTTP; the real OTLP
//! receiver (the official generated types + grpcio) is stopped for a while and restarted,
//! and the node agent is killed with SIGKILL in the middle and started again on the same
//! disk buffer. Every record the node agent acknowledged must reach the receiver at least
//! once; the test counts them.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{free_port, python, repo_root, scratch, wait_for_port};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_ledger_agent::export::proto::{self, ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs};
use prost::Message as _;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn receiver(port: u16, out: &std::path::Path) -> Proc {
    let stdout = std::fs::File::create(out).unwrap();
    Proc(
        Command::new(python())
            .arg(repo_root().join("tests/peers/otlp_grpc_receiver.py"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::null())
            .spawn()
            .expect("the OTLP receiver starts"),
    )
}

/// The node agent relaying to the collector on `collector` (if any) and to `sinks`
/// (`--jsonl=FILE`, `--csv=FILE`).
fn node_agent(listen: u16, admin: u16, collector: Option<u16>, buffer: &std::path::Path, sinks: &[String]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-ledger-agent"))
        .args([
            "--mode=node",
            &format!("--otlp-listen=127.0.0.1:{listen}"),
            &format!("--admin=127.0.0.1:{admin}"),
            "--otlp-protocol=grpc",
            &format!("--buffer-dir={}", buffer.display()),
            "--buffer-sync-ms=200",
            "--enrich=false",
            "--log=warn",
        ])
        .args(collector.map(|c| format!("--otlp-endpoint=http://127.0.0.1:{c}")))
        .args(sinks)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the node agent starts");
    wait_for_port(listen);
    Proc(child)
}

fn request(seq: u64) -> Vec<u8> {
    let record = LogRecord { body: Some(proto::string(format!("seq-{seq}-end"))), ..Default::default() };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The seq numbers found in the receiver's output files.
fn received(files: &[std::path::PathBuf]) -> Vec<u64> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for part in text.split("seq-").skip(1) {
            if let Some((n, _)) = part.split_once("-end")
                && let Ok(n) = n.parse()
            {
                out.push(n);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_dead_collector_and_a_killed_node_agent() {
    let dir = scratch("node-delivery");
    let (listen, admin, collector) = (free_port(), free_port(), free_port());
    let buffer = dir.join("buffer");
    let outputs = [dir.join("received-1.ndjson"), dir.join("received-2.ndjson")];
    // The node agent also writes every record it relays as a JSON line.
    let jsonl = dir.join("relayed.jsonl");
    let sinks = [format!("--jsonl={}", jsonl.display())];
    let mut rx = Some(receiver(collector, &outputs[0]));
    wait_for_port(collector);
    let mut node = Some(node_agent(listen, admin, Some(collector), &buffer, &sinks));

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://127.0.0.1:{listen}/v1/logs");
    let total = 400u64;
    let mut acked = BTreeSet::new();
    let mut refused = 0u64;
    for seq in 0..total {
        match seq {
            100 => drop(rx.take()), // the collector goes down; the node agent buffers
            200 => {
                // SIGKILL: no drain, no fsync beyond what was already written.
                let mut n = node.take().unwrap();
                n.0.kill().unwrap();
                n.0.wait().unwrap();
                node = Some(node_agent(listen, admin, Some(collector), &buffer, &sinks));
            }
            300 => {
                rx = Some(receiver(collector, &outputs[1]));
                wait_for_port(collector);
            }
            _ => {}
        }
        let req = hyper::Request::post(&url)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(request(seq))))
            .unwrap();
        match client.request(req).await {
            Ok(resp) if resp.status() == 200 => {
                let _ = resp.into_body().collect().await;
                acked.insert(seq);
            }
            _ => refused += 1,
        }
    }
    assert!(acked.len() as u64 >= total - 5, "the node agent acknowledged {} of {total}", acked.len());

    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let got: BTreeSet<u64> = received(&outputs).into_iter().collect();
        let missing: Vec<u64> = acked.difference(&got).copied().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let all = received(&outputs);
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    eprintln!(
        "node delivery: sent {total}, acknowledged {}, refused {refused}, received {} ({} unique, {} duplicates)",
        acked.len(),
        all.len(),
        unique.len(),
        all.len() - unique.len()
    );
    assert!(missing.is_empty(), "acknowledged but never received: {missing:?}");

    // The JSON lines file got every acknowledged record too, while the collector was down
    // and across the kill; a record is written again only if the kill came before the
    // collector took it.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    let in_file: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["body"].as_str()?.strip_prefix("seq-")?.strip_suffix("-end")?.parse().ok())
        .collect();
    assert_eq!(in_file.len(), lines.len(), "every line is a relayed record");
    let unique_in_file: BTreeSet<u64> = in_file.iter().copied().collect();
    let missing_in_file: Vec<u64> = acked.difference(&unique_in_file).copied().collect();
    assert!(missing_in_file.is_empty(), "acknowledged but not in the JSON lines file: {missing_in_file:?}");
    eprintln!("node delivery: JSON lines file {} lines ({} unique)", in_file.len(), unique_in_file.len());
    // Within one run the file sink never repeats what it wrote, however often the
    // collector refused: duplicates are bounded by what was pending at the kill.
    assert!(in_file.len() - unique_in_file.len() <= 100, "{} duplicates", in_file.len() - unique_in_file.len());
    drop(node);
    drop(rx);
}

async fn get_text(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: String,
) -> String {
    let resp = client.request(hyper::Request::get(url).body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_the_node_agent_relays_to_csv_and_acknowledges() {
    let dir = scratch("node-csv");
    let (listen, admin) = (free_port(), free_port());
    let csv = dir.join("relayed.csv");
    let _node = node_agent(listen, admin, None, &dir.join("buffer"), &[format!("--csv={}", csv.display())]);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for seq in 0..20 {
        let req = hyper::Request::post(format!("http://127.0.0.1:{listen}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(request(seq))))
            .unwrap();
        assert_eq!(client.request(req).await.unwrap().status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = get_text(&client, format!("http://127.0.0.1:{admin}/metrics")).await;
        if text.contains("mcp_ledger_buffer_pending_requests 0") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("mcp_ledger_buffer_pending_requests 0"), "{metrics}");
    assert!(metrics.contains(r#"mcp_ledger_records_exported_total{exporter="csv"} 20"#), "{metrics}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows.len(), 21, "a header and one row per record: {text}");
    assert!(rows[0].starts_with("timestamp,observedTimestamp,severity,eventName"), "{}", rows[0]);
    assert!(!text.contains("seq-"), "the body is never in CSV: {text}");
}

#[test]
fn node_mode_without_any_destination_says_what_to_pass() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-ledger-agent"))
        .args(["--mode=node", "--otlp-listen=127.0.0.1:0", "--admin=127.0.0.1:0", "--enrich=false"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--otlp-endpoint") && err.contains("--jsonl") && err.contains("--csv"), "{err}");
}

#[tokio::test]
async fn requests_that_are_not_otlp_are_refused_and_not_stored() {
    let dir = scratch("node-refuse");
    let (listen, admin, collector) = (free_port(), free_port(), free_port());
    let _node = node_agent(listen, admin, Some(collector), &dir.join("buffer"), &[]);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let post = |path: &str, body: &'static [u8]| {
        hyper::Request::post(format!("http://127.0.0.1:{listen}{path}"))
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    let resp = client.request(post("/v1/logs", b"\xff\xff\xff not protobuf")).await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client.request(post("/v1/traces", b"")).await.unwrap();
    assert_eq!(resp.status(), 404);
    let text = get_text(&client, format!("http://127.0.0.1:{admin}/metrics")).await;
    assert!(text.contains(r#"mcp_ledger_node_received_total{protocol="http",result="invalid"} 1"#), "{text}");
    assert!(text.contains("mcp_ledger_buffer_pending_requests 0"), "{text}");
}
