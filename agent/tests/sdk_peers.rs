//! The official MCP SDKs through the agent: what the client receives is what it receives
//! directly, and every message becomes a well-formed, redacted audit record.

mod common;

use common::*;
use mcp_ledger_crds::record::{Direction, EventType};

fn by_event(records: &[mcp_ledger_crds::AuditRecord], e: EventType) -> Vec<&mcp_ledger_crds::AuditRecord> {
    records.iter().filter(|r| r.event_type == e).collect()
}

async fn check_python_scenario(mode: &str, transport: &str) {
    let (_server, port) = python_server(transport, &[]);
    let dir = scratch(&format!("py-{mode}-{transport}"));
    let mut cfg = config(port, &dir);
    if transport == "sse" {
        cfg.server.transport = mcp_ledger_crds::common::Transport::Sse;
    }
    let agent = Agent::start(cfg).await;
    let path = if transport == "sse" { "/sse" } else { "/mcp" };
    let direct = python_client(&format!("http://127.0.0.1:{port}{path}"), mode, transport);
    let via = python_client(&agent.url(path), mode, transport);
    assert_eq!(via, direct, "the client must see the same results through the agent");
    let records = agent.stop().await;
    let raw = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();

    // Redaction: the fake AWS key the server returns never reaches a record.
    assert!(!raw.contains("AKIAIOSFODNN7EXAMPLE"), "a credential leaked into the records");
    let config_answer = records
        .iter()
        .find(|r| r.event_type == EventType::McpResponseSuccess && r.tool_name.as_deref() == Some("whoami_config"))
        .expect("a record for the whoami_config answer");
    assert!(config_answer.redaction.kinds.get("aws-access-key-id").copied().unwrap_or(0) >= 1);

    // Every tool call: a request and an answer sharing one correlation id, with duration.
    let requests = by_event(&records, EventType::McpRequest);
    for tool in ["echo", "add", "fail", "whoami_config", "slow_count"] {
        let req = requests
            .iter()
            .find(|r| r.tool_name.as_deref() == Some(tool))
            .unwrap_or_else(|| panic!("no request record for {tool}"));
        assert_eq!(req.method.as_deref(), Some("tools/call"));
        // `<server>/<tool>@<definitionHash>`: the tools were listed first. On the
        // 2024-11-05 transport list answers travel on the GET stream, which governance
        // does not inspect yet: no hash there.
        let id = req.tool_id.as_deref().unwrap();
        if transport == "sse" {
            assert_eq!(id, format!("test-server/{tool}"));
        } else {
            let (name, hash) = id.split_once('@').unwrap_or_else(|| panic!("{id} has no definition hash"));
            assert_eq!(name, format!("test-server/{tool}"));
            assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        assert_eq!(req.direction, Direction::ClientToServer);
        let answer = records
            .iter()
            .find(|r| {
                matches!(r.event_type, EventType::McpResponseSuccess | EventType::McpResponseError)
                    && r.request_id.jsonrpc == req.request_id.jsonrpc
                    && r.correlation_id == req.correlation_id
            })
            .unwrap_or_else(|| panic!("no answer record correlated with the {tool} request"));
        assert_eq!(answer.tool_name.as_deref(), Some(tool));
        assert_eq!(answer.method.as_deref(), Some("tools/call"));
        assert!(answer.duration_ns.unwrap_or(0) > 0, "{tool} answer has no duration");
        assert_eq!(answer.response_code, Some(200));
        let expected = if tool == "fail" { EventType::McpResponseError } else { EventType::McpResponseSuccess };
        assert_eq!(answer.event_type, expected, "{tool}");
    }
    let fail = records
        .iter()
        .find(|r| r.event_type == EventType::McpResponseError && r.tool_name.as_deref() == Some("fail"))
        .unwrap();
    assert_eq!(fail.error.as_ref().unwrap().kind, "tool_error");

    // Progress notifications of the streamed call are recorded, server to client.
    let progress: Vec<_> = records.iter().filter(|r| r.method.as_deref() == Some("notifications/progress")).collect();
    assert_eq!(progress.len(), 3, "three progress notifications");
    assert!(
        progress.iter().all(|r| r.direction == Direction::ServerToClient && r.response_type.as_deref() == Some("sse"))
    );

    // Well-formed fields everywhere.
    for r in &records {
        // The ids were read as the record type reads them (hex of the right length, a
        // UUID); W3C Trace Context forbids all-zero ids, and the record ids are version 7.
        assert!(!r.correlation_id.is_zero() && !r.span_id.is_zero(), "{r:?}");
        assert_eq!(r.request_id.unique.get_version_num(), 7, "{r:?}");
        assert_eq!(r.server.name, "test-server");
        assert_eq!(r.server.namespace.as_deref(), Some("tools"));
        assert_eq!(r.server.pod.as_deref(), Some("test-pod-0"));
        assert_eq!(r.client_ip.as_deref(), Some("127.0.0.1"));
        assert!(r.observed_timestamp >= r.timestamp || r.direction == Direction::ClientToServer);
        // Only a client closing its event stream mid-event may show up as a cut stream.
        let allowed = r.error.as_ref().is_some_and(|e| e.kind == "client_disconnected");
        assert!(r.event_type != EventType::ParseError || allowed, "unexpected parse error: {r:?}");
    }
    let mut uniques: Vec<_> = records.iter().map(|r| &r.request_id.unique).collect();
    uniques.sort();
    uniques.dedup();
    assert_eq!(uniques.len(), records.len(), "unique ids repeat");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_legacy_streamable_http() {
    check_python_scenario("legacy", "streamable-http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_stateless_2026_07_28() {
    check_python_scenario("auto", "streamable-http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_legacy_sessions_are_recorded() {
    let (_server, port) = python_server("streamable-http", &[]);
    let dir = scratch("py-sessions");
    let agent = Agent::start(config(port, &dir)).await;
    python_client(&agent.url("/mcp"), "legacy", "streamable-http");
    // The client deleted its session; the server then closed the session's GET stream.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let metrics = raw("GET", &format!("http://127.0.0.1:{}/metrics", agent.admin), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(metrics.lines().any(|l| l == "mcp_ledger_active_sessions 0"), "no session left open:\n{metrics}");
    let records = agent.stop().await;
    let start = by_event(&records, EventType::McpSessionStart);
    let end = by_event(&records, EventType::McpSessionEnd);
    assert_eq!(start.len(), 1, "one session start");
    assert_eq!(end.len(), 1, "one session end (the client's DELETE)");
    assert_eq!(start[0].session_id, end[0].session_id);
    let init = records
        .iter()
        .find(|r| r.method.as_deref() == Some("initialize") && r.event_type == EventType::McpResponseSuccess)
        .unwrap();
    assert_eq!(init.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(init.server.version.as_deref(), Some("1.4.2"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_http_sse_2024_11_05() {
    check_python_scenario("legacy", "sse").await;
}
