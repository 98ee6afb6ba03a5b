//! Records read back from real OTLP receivers: OTLP/HTTP protobuf into `oteltap`, and
//! OTLP/gRPC into a receiver built from the official generated types and grpcio (which
//! also refuses the first exports, so retries are exercised). Every record the agent wrote
//! to its JSON lines sink must arrive, with the log data model fields and the MCP
//! semantic-convention attributes.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};

use base64_free::decode_base64;
use common::*;
use mcp_ledger_crds::config::{OtlpConfig, OtlpProtocol};
use serde_json::Value;

mod base64_free {
    /// Decodes standard base64 (protobuf's JSON mapping of `bytes`).
    pub fn decode_base64(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        };
        let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, c)| acc | (u32::from(val(*c)) << (18 - 6 * i)));
            out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
        }
        out
    }
}

fn receiver(script_or_bin: &str, args: &[String], out: &std::path::Path) -> Peer {
    let stdout = std::fs::File::create(out).unwrap();
    let mut cmd = if script_or_bin.ends_with(".py") {
        let mut c = Command::new(python());
        c.arg(repo_root().join(script_or_bin));
        c
    } else {
        Command::new(repo_root().join(".venv/bin").join(script_or_bin))
    };
    cmd.args(args).stdout(Stdio::from(stdout)).stderr(Stdio::null());
    Peer(cmd.spawn().expect("start the OTLP receiver"))
}

fn attrs(record: &Value) -> HashMap<String, Value> {
    record["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            let v = &kv["value"];
            let value = v
                .get("stringValue")
                .or_else(|| v.get("intValue"))
                .or_else(|| v.get("boolValue"))
                .cloned()
                .unwrap_or(Value::Null);
            (kv["key"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn run_scenario(
    protocol: OtlpProtocol,
    received: &std::path::Path,
    receiver_port: u16,
    dir: &std::path::Path,
) -> Vec<mcp_ledger_crds::AuditRecord> {
    let (_server, port) = python_server("streamable-http", &[]);
    let mut cfg = config(port, dir);
    cfg.exporters.otlp =
        Some(OtlpConfig { endpoint: format!("http://127.0.0.1:{receiver_port}"), protocol, timeout_ms: 2_000 });
    // A few batches of 8, so the refused exports exercise retries without the exporter's
    // bounded backlog (8 batches) overflowing while it backs off.
    cfg.pipeline.batch_size = 8;
    cfg.pipeline.flush_interval_ms = 1_000;
    let agent = Agent::start(cfg).await;
    python_client(&agent.url("/mcp"), "legacy", "streamable-http");
    let records = agent.stop().await;
    assert!(records.len() > 20, "the scenario yields records");
    let _ = received;
    records
}

fn check_log_record(
    log: &Value,
    by_uid: &HashMap<String, &mcp_ledger_crds::AuditRecord>,
    trace_hex: impl Fn(&Value) -> String,
) {
    let a = attrs(log);
    let uid = a["mcpledger.request.uid"].as_str().unwrap();
    let record = by_uid.get(uid).unwrap_or_else(|| panic!("OTLP record {uid} is not in the JSON lines sink"));
    assert_eq!(log["eventName"], record.event_type.as_str());
    assert_eq!(log["severityText"], record.level.as_str());
    assert_eq!(trace_hex(&log["traceId"]), record.correlation_id.to_string());
    assert_eq!(trace_hex(&log["spanId"]), record.span_id.to_string());
    let ts: u128 = log["timeUnixNano"].as_str().unwrap().parse().unwrap();
    assert_eq!(ts as i128, record.timestamp.as_nanosecond());
    assert!(log["observedTimeUnixNano"].as_str().unwrap().parse::<u128>().unwrap() > 0);
    assert_eq!(a["mcpledger.event.type"], record.event_type.as_str());
    assert_eq!(a["jsonrpc.protocol.version"], "2.0");
    assert_eq!(a["mcpledger.server.name"], "test-server");
    assert_eq!(a["client.address"], "127.0.0.1");
    if let Some(m) = &record.method {
        assert_eq!(a["mcp.method.name"], &**m);
    }
    if let Some(t) = &record.tool_name {
        assert_eq!(a["gen_ai.tool.name"], &**t);
        assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    }
    if let Some(id) = &record.request_id.jsonrpc {
        assert_eq!(a["jsonrpc.request.id"], id.as_str());
    }
    if let Some(s) = &record.session_id {
        assert_eq!(a["mcp.session.id"], &**s);
    }
    if let Some(e) = &record.error {
        assert_eq!(a["error.type"], e.kind.as_str());
    }
    assert_eq!(
        log.get("body").is_some_and(|b| !b.is_null()),
        record.body.is_some(),
        "body present iff the record has one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_into_oteltap() {
    let dir = scratch("otlp-http");
    let received = dir.join("oteltap.ndjson");
    let port = free_port();
    let _rx = receiver("oteltap", &["--port".into(), port.to_string()], &received);
    wait_for_port(port);
    let records = run_scenario(OtlpProtocol::HttpProtobuf, &received, port, &dir).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&received).unwrap();
    let logs: Vec<Value> =
        text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(logs.len(), records.len(), "every record arrives once");
    assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "a credential reached the collector");
    let by_uid: HashMap<String, _> = records.iter().map(|r| (r.request_id.unique.to_string(), r)).collect();
    for log in &logs {
        check_log_record(log, &by_uid, |v| v.as_str().unwrap().to_owned());
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_with_retries_into_the_official_types() {
    let dir = scratch("otlp-grpc");
    let received = dir.join("grpc.ndjson");
    let port = free_port();
    let _rx = receiver(
        "tests/peers/otlp_grpc_receiver.py",
        &["--port".into(), port.to_string(), "--fail-first".into(), "2".into()],
        &received,
    );
    wait_for_port(port);
    let records = run_scenario(OtlpProtocol::Grpc, &received, port, &dir).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&received).unwrap();
    let mut logs = Vec::new();
    for line in text.lines() {
        let request: Value = serde_json::from_str(line).unwrap();
        for rl in request["resourceLogs"].as_array().unwrap() {
            let resource = attrs(&rl["resource"]);
            assert_eq!(resource["service.name"], "mcp-ledger-agent");
            assert_eq!(resource["k8s.pod.name"], "test-pod-0");
            for sl in rl["scopeLogs"].as_array().unwrap() {
                assert_eq!(sl["scope"]["name"], "mcp-ledger-agent");
                logs.extend(sl["logRecords"].as_array().unwrap().iter().cloned());
            }
        }
    }
    assert_eq!(logs.len(), records.len(), "every record arrives once, the refused batches after retries");
    let by_uid: HashMap<String, _> = records.iter().map(|r| (r.request_id.unique.to_string(), r)).collect();
    for log in &logs {
        check_log_record(log, &by_uid, |v| hex(&decode_base64(v.as_str().unwrap())));
    }
    let _ = std::fs::remove_dir_all(dir);
}
