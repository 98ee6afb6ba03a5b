//! Server-to-client requests through the agent, with the official Python SDK on both
//! sides: a tool that asks the client's model (`sampling/createMessage`) and then the user
//! (`elicitation/create`) before it answers. The client must see the same thing through
//! the agent as directly, and each request the server sends and each answer the client
//! gives must be a record, the answers matched to their requests.

mod common;

use std::process::Command;

use common::*;
use mcp_ledger_crds::AuditRecord;
use mcp_ledger_crds::record::{Direction, EventType};

fn client(url: &str, transport: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo_root().join("tests/peers/mcp_client.py"))
        .args([url, "--mode", "legacy", "--transport", transport, "--scenario", "client-requests"])
        .output()
        .expect("run the Python MCP client");
    assert!(out.status.success(), "client failed against {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(records: &'a [AuditRecord], event: EventType, direction: Direction, method: &str) -> &'a AuditRecord {
    let found: Vec<_> = records
        .iter()
        .filter(|r| r.event_type == event && r.direction == direction && r.method.as_deref() == Some(method))
        .collect();
    assert_eq!(found.len(), 1, "one {event:?} {direction:?} record of {method}: {found:#?}");
    found[0]
}

async fn check(transport: &str) {
    let (_server, port) = python_server(transport, &["--client-requests"]);
    let dir = scratch(&format!("client-requests-{transport}"));
    let mut cfg = config(port, &dir);
    if transport == "sse" {
        cfg.server.transport = mcp_ledger_crds::common::Transport::Sse;
    }
    let agent = Agent::start(cfg).await;
    let path = if transport == "sse" { "/sse" } else { "/mcp" };
    let direct = client(&format!("http://127.0.0.1:{port}{path}"), transport);
    let via = client(&agent.url(path), transport);
    assert_eq!(via, direct, "the client must see the same requests and result through the agent");
    assert_eq!(via["result"]["content"][0]["text"], "forty-two (sent: True)", "{via}");
    let records = agent.stop().await;

    let call = records
        .iter()
        .find(|r| r.event_type == EventType::McpRequest && r.tool_name.as_deref() == Some("ask_assistant"))
        .expect("the tools/call request record");
    for (method, question) in
        [("sampling/createMessage", "/params/messages/0/content/text"), ("elicitation/create", "/params/message")]
    {
        let asked = find(&records, EventType::McpRequest, Direction::ServerToClient, method);
        let answered = find(&records, EventType::McpResponseSuccess, Direction::ClientToServer, method);
        assert!(asked.request_id.jsonrpc.is_some(), "{asked:?}");
        assert_eq!(answered.request_id.jsonrpc, asked.request_id.jsonrpc, "the answer names the server's request");
        assert_eq!(answered.correlation_id, asked.correlation_id, "request and answer share one correlation id");
        assert!(answered.duration_ns.is_some(), "the answer's record says how long the client took: {answered:?}");
        let body = asked.body.as_ref().expect("the server's request is recorded").to_value();
        assert!(body.pointer(question).and_then(|v| v.as_str()).is_some(), "{method}: {body}");
        if transport == "streamable-http" {
            // On Streamable HTTP these requests travel on the call's own stream.
            assert_eq!(asked.correlation_id, call.correlation_id, "{method} is correlated with the tool call");
        }
    }
    let sampled = find(&records, EventType::McpResponseSuccess, Direction::ClientToServer, "sampling/createMessage");
    assert_eq!(
        sampled
            .body
            .as_ref()
            .map(|b| b.to_value())
            .as_ref()
            .and_then(|b| b.pointer("/result/content/text"))
            .and_then(|v| v.as_str()),
        Some("forty-two"),
        "the model's answer is in the record: {sampled:?}"
    );
    let result = records
        .iter()
        .find(|r| r.event_type == EventType::McpResponseSuccess && r.tool_name.as_deref() == Some("ask_assistant"))
        .expect("the tool's result record");
    assert_eq!(result.correlation_id, call.correlation_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_over_streamable_http() {
    check("streamable-http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_over_legacy_sse() {
    check("sse").await;
}
