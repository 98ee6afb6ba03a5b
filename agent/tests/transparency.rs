//! Byte-for-byte transparency at the HTTP level, streamed responses, cut streams and
//! clients that go away.

mod common;

use std::time::Duration;

use common::*;
use mcp_ledger_crds::record::EventType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn call(id: u32, tool: &str, args: serde_json::Value) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args,
        "_meta": {"progressToken": id, "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
}

fn headers(tool: &str) -> Vec<(&str, &str)> {
    vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_byte_identical_including_sse_streams_and_batches() {
    let (_server, port) = python_server("streamable-http", &[]);
    let dir = scratch("bytes");
    let agent = Agent::start(config(port, &dir)).await;
    let cases = vec![
        ("echo", call(1, "echo", serde_json::json!({"text": "héllo ✓"}))),
        ("add", call(2, "add", serde_json::json!({"a": 20, "b": 22}))),
        ("slow_count", call(3, "slow_count", serde_json::json!({"n": 4}))),
        ("fail", call(4, "fail", serde_json::json!({"reason": "x"}))),
        // A JSON-RPC batch (2025-03-26): whatever the server answers, the client gets it as is.
        (
            "echo",
            format!(
                "[{},{}]",
                call(11, "echo", serde_json::json!({"text": "a"})),
                call(12, "add", serde_json::json!({"a": 1, "b": 1}))
            ),
        ),
    ];
    for (tool, body) in cases {
        let direct = raw("POST", &format!("http://127.0.0.1:{port}/mcp"), &headers(tool), body.clone()).await;
        let via = raw("POST", &agent.url("/mcp"), &headers(tool), body).await;
        assert_eq!(via.status, direct.status, "{tool}");
        assert_eq!(via.headers.get("content-type"), direct.headers.get("content-type"), "{tool}");
        assert_eq!(
            via.body,
            direct.body,
            "{tool}: body differs:\n{}\nvs\n{}",
            String::from_utf8_lossy(&via.body),
            String::from_utf8_lossy(&direct.body)
        );
    }
    let records = agent.stop().await;
    let progress = records.iter().filter(|r| r.method.as_deref() == Some("notifications/progress")).count();
    assert_eq!(progress, 4, "each streamed progress event is its own record");
    for id in ["11", "12"] {
        assert!(
            records
                .iter()
                .any(|r| r.event_type == EventType::McpRequest && r.request_id.jsonrpc.as_deref() == Some(id)),
            "batch member {id} has its own request record"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_reach_the_client_before_the_stream_ends() {
    let (_server, port) = python_server("streamable-http", &[]);
    let dir = scratch("streaming");
    let agent = Agent::start(config(port, &dir)).await;
    // slow_count(20) takes about a second; the first progress event must arrive long before.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", agent.port)).await.unwrap();
    let body = call(1, "slow_count", serde_json::json!({"n": 20}));
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: slow_count\r\ncontent-length: {}\r\n\r\n{body}",
        agent.port,
        body.len()
    );
    let started = std::time::Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("notifications/progress") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "stream ended before the first progress event");
        seen.extend_from_slice(&buf[..n]);
    }
    let first_event = started.elapsed();
    assert!(
        first_event < Duration::from_millis(700),
        "the first event took {first_event:?}: the agent held the stream back"
    );
    drop(stream); // the client goes away mid-stream
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = agent.stop().await;
    let unanswered: Vec<_> = records
        .iter()
        .filter(|r| {
            r.event_type == EventType::McpResponseError
                && r.error.as_ref().is_some_and(|e| e.kind == "client_disconnected")
        })
        .collect();
    assert_eq!(unanswered.len(), 1, "the abandoned call is recorded as unanswered: {records:?}");
    assert_eq!(unanswered[0].tool_name.as_deref(), Some("slow_count"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A stream cut in the middle of an event. No real MCP server cuts a stream on demand, so
/// this one upstream is a hand-written mock: it answers with an SSE head, one complete
/// event, half of a second event, and closes the connection.
async fn cutting_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let out = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = s.write_all(out.as_bytes()).await;
                let ev1 = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
                let _ = s.write_all(format!("{:x}\r\n{ev1}\r\n", ev1.len()).as_bytes()).await;
                let half = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"res";
                let _ = s.write_all(format!("{:x}\r\n{half}\r\n", half.len()).as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Close without the terminating chunk.
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_event_is_passed_on_and_recorded() {
    let port = cutting_upstream().await;
    let dir = scratch("cut");
    let agent = Agent::start(config(port, &dir)).await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(agent.url("/mcp"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    let result = resp.into_body().collect().await;
    assert!(result.is_err(), "the client sees the cut too: the agent does not pretend the stream ended cleanly");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = agent.stop().await;
    assert!(
        records.iter().any(|r| r.method.as_deref() == Some("notifications/progress")),
        "the complete event is recorded"
    );
    let cut: Vec<_> = records.iter().filter(|r| r.event_type == EventType::ParseError).collect();
    assert_eq!(cut.len(), 1, "{records:?}");
    assert_eq!(cut[0].error.as_ref().unwrap().kind, "upstream_stream_error");
    let unanswered = records
        .iter()
        .find(|r| r.event_type == EventType::McpResponseError)
        .expect("the call is recorded as unanswered");
    assert_eq!(unanswered.request_id.jsonrpc.as_deref(), Some("1"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_get_the_same_answer_and_are_recorded() {
    let (_server, port) = python_server("streamable-http", &["--json-response"]);
    let dir = scratch("h2c");
    let agent = Agent::start(config(port, &dir)).await;
    let body = call(21, "add", serde_json::json!({"a": 40, "b": 2}));
    let direct = raw("POST", &format!("http://127.0.0.1:{port}/mcp"), &headers("add"), body.clone()).await;
    // HTTP/2 with prior knowledge (h2c) to the agent; the agent speaks HTTP/1.1 upstream.
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).http2_only(true).build_http();
    let mut req = http::Request::post(agent.url("/mcp"));
    for (k, v) in headers("add") {
        req = req.header(k, v);
    }
    let resp = client.request(req.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), direct.status);
    use http_body_util::BodyExt;
    let via = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(via, direct.body, "h2c answer differs from the direct HTTP/1.1 answer");
    let records = agent.stop().await;
    let answer = records
        .iter()
        .find(|r| r.event_type == EventType::McpResponseSuccess && r.request_id.jsonrpc.as_deref() == Some("21"))
        .expect("the h2c call is recorded");
    assert_eq!(answer.tool_name.as_deref(), Some("add"));
    let _ = std::fs::remove_dir_all(dir);
}
