//! Bad input leaves traffic untouched and is recorded: non-JSON bodies, malformed
//! JSON-RPC, invalid UTF-8, a body over the capture limit, an upstream that is down, a
//! client that leaves before the answer.

mod common;

use common::*;
use mcp_ledger_crds::record::EventType;

const JSON: (&str, &str) = ("content-type", "application/json");
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

fn stateless_headers() -> Vec<(&'static str, &'static str)> {
    vec![JSON, ACCEPT, ("mcp-protocol-version", "2026-07-28")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_reach_the_server_unchanged_and_are_recorded_without_payload() {
    let (_server, port) = python_server("streamable-http", &["--json-response"]);
    let dir = scratch("bad-bodies");
    let agent = Agent::start(config(port, &dir)).await;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not-json", b"this is not json, password=hunter2".to_vec()),
        (
            "invalid-utf8",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"x\":\"\xff\xfe\"}}".to_vec(),
        ),
        ("not-jsonrpc", br#"{"jsonrpc":"1.0","id":1,"method":"tools/list","secret":"hunter2"}"#.to_vec()),
        ("empty-batch", b"[]".to_vec()),
    ];
    for (name, body) in &bodies {
        let direct = raw("POST", &format!("http://127.0.0.1:{port}/mcp"), &stateless_headers(), body.clone()).await;
        let via = raw("POST", &agent.url("/mcp"), &stateless_headers(), body.clone()).await;
        assert_eq!(via.status, direct.status, "{name}: status");
        assert_eq!(via.body, direct.body, "{name}: body");
        assert_eq!(via.headers.get("content-type"), direct.headers.get("content-type"), "{name}: content-type");
    }
    let records = agent.stop().await;
    let raw_text = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    assert!(!raw_text.contains("hunter2"), "an unparseable payload leaked into a record");
    let parse_errors: Vec<_> = records.iter().filter(|r| r.event_type == EventType::ParseError).collect();
    assert!(parse_errors.len() >= bodies.len(), "each bad request body is recorded: {parse_errors:?}");
    for r in &parse_errors {
        assert!(r.body.is_none());
        assert!(r.redaction.payload_dropped.as_deref().unwrap_or("").starts_with("unparseable body"), "{r:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_capture_limit_is_forwarded_whole_and_recorded_as_truncated() {
    let (_server, port) = python_server("streamable-http", &["--json-response"]);
    let dir = scratch("truncate");
    let mut cfg = config(port, &dir);
    cfg.capture.max_body_bytes = 256;
    let agent = Agent::start(cfg).await;
    let long = "x".repeat(4000);
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": long},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let mut headers = stateless_headers();
    headers.push(("mcp-method", "tools/call"));
    headers.push(("mcp-name", "echo"));
    let direct = raw("POST", &format!("http://127.0.0.1:{port}/mcp"), &headers, body.clone()).await;
    let via = raw("POST", &agent.url("/mcp"), &headers, body.clone()).await;
    assert_eq!(direct.status, 200, "{}", String::from_utf8_lossy(&direct.body));
    assert_eq!(via.status, direct.status);
    assert_eq!(via.body, direct.body, "the long answer arrives whole through the agent");
    assert!(via.body.len() > 4000);
    let records = agent.stop().await;
    let truncated: Vec<_> = records.iter().filter(|r| r.body_truncated).collect();
    assert_eq!(truncated.len(), 2, "request and answer are both over the limit: {records:?}");
    assert!(truncated.iter().all(|r| r.body.is_none() && r.body_bytes > 4000));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_gets_a_502_json_rpc_error_and_a_record() {
    let dead_port = free_port(); // nothing listens here
    let dir = scratch("upstream-down");
    let mut cfg = config(dead_port, &dir);
    cfg.upstream.connect_timeout_ms = 500;
    let agent = Agent::start(cfg).await;
    let body = r#"{"jsonrpc":"2.0","id":"req-7","method":"tools/list","params":{}}"#;
    let resp = raw("POST", &agent.url("/mcp"), &stateless_headers(), body).await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.headers.get("content-type").unwrap(), "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(answer["jsonrpc"], "2.0");
    assert_eq!(answer["id"], "req-7", "the error answers the request's id");
    assert_eq!(answer["error"]["code"], -32000);
    let metrics = raw("GET", &format!("http://127.0.0.1:{}/metrics", agent.admin), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(text.contains("mcp_ledger_upstream_errors_total{reason=\"connect_failed\"} 1"), "{text}");
    let records = agent.stop().await;
    let down: Vec<_> = records.iter().filter(|r| r.event_type == EventType::UpstreamUnavailable).collect();
    assert_eq!(down.len(), 1, "{records:?}");
    assert_eq!(down[0].response_code, Some(502));
    assert_eq!(down[0].error.as_ref().unwrap().kind, "upstream_unavailable");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_counted_drops_not_traffic() {
    let (_server, port) = python_server("streamable-http", &["--json-response"]);
    let dir = scratch("collector-down");
    let mut cfg = config(port, &dir);
    cfg.exporters.otlp = Some(mcp_ledger_crds::config::OtlpConfig {
        endpoint: format!("http://127.0.0.1:{}", free_port()),
        protocol: mcp_ledger_crds::config::OtlpProtocol::HttpProtobuf,
        timeout_ms: 300,
    });
    cfg.pipeline.max_attempts = 2;
    let agent = Agent::start(cfg).await;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let mut headers = stateless_headers();
    headers.push(("mcp-method", "tools/call"));
    headers.push(("mcp-name", "add"));
    for _ in 0..5 {
        let resp = raw("POST", &agent.url("/mcp"), &headers, body.clone()).await;
        assert_eq!(resp.status, 200, "traffic is unaffected by a dead collector");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let metrics = raw("GET", &format!("http://127.0.0.1:{}/metrics", agent.admin), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(text.contains("mcp_ledger_export_retries_total{exporter=\"otlp_http\"}"), "{text}");
    assert!(text.contains("mcp_ledger_records_dropped_total{intended=\"false\",reason=\"export_failed\"}"), "{text}");
    // The JSON lines sink, configured beside it, still got every record.
    let records = agent.stop().await;
    assert_eq!(records.iter().filter(|r| r.event_type == EventType::McpResponseSuccess).count(), 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_answer_is_recorded_as_gone() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // JSON answers: the server sends its response head only when the tool is done.
    let (_server, port) = python_server("streamable-http", &["--json-response"]);
    let dir = scratch("client-gone");
    let agent = Agent::start(config(port, &dir)).await;
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow_count","arguments":{"n":40},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n\
         mcp-method: tools/call\r\nmcp-name: slow_count\r\n\
         content-length: {}\r\n\r\n{call}",
        agent.port,
        call.len()
    );
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", agent.port)).await.unwrap();
    client.write_all(request.as_bytes()).await.unwrap();
    // The call takes two seconds; the client gives up after a fraction of one.
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(std::time::Duration::from_millis(400), client.read(&mut buf)).await;
    assert!(early.is_err(), "no answer should come this early: {early:?} {:?}", String::from_utf8_lossy(&buf));
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let records = agent.stop().await;
    let request = records
        .iter()
        .find(|r| r.event_type == EventType::McpRequest && r.request_id.jsonrpc.as_deref() == Some("7"))
        .expect("the call's request record");
    let gone: Vec<_> = records.iter().filter(|r| r.event_type == EventType::McpResponseError).collect();
    assert_eq!(gone.len(), 1, "one record says the call got no answer: {records:?}");
    let gone = gone[0];
    assert_eq!(gone.request_id.jsonrpc.as_deref(), Some("7"));
    assert_eq!(gone.method.as_deref(), Some("tools/call"));
    assert_eq!(gone.tool_name.as_deref(), Some("slow_count"));
    assert_eq!(gone.error.as_ref().map(|e| e.kind.as_str()), Some("client_disconnected"));
    assert_eq!(gone.response_code, None, "no answer reached the client");
    assert_eq!(gone.correlation_id, request.correlation_id);
    assert!(gone.duration_ns.is_some_and(|d| d >= 300_000_000), "how long the client waited: {gone:?}");
    let _ = std::fs::remove_dir_all(dir);
}
