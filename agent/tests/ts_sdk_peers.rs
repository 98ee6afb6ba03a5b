//! The official TypeScript SDK client against the reference server
//! (`@modelcontextprotocol/server-everything`), direct vs. through the agent, over
//! Streamable HTTP and HTTP+SSE.

mod common;

use std::process::{Command, Stdio};

use common::*;
use mcp_ledger_crds::record::EventType;

fn peers_dir() -> std::path::PathBuf {
    let dir = repo_root().join("tests/peers");
    assert!(
        dir.join("node_modules/.bin/mcp-server-everything").exists(),
        "run `make peers` (make test does) to install the TypeScript peers"
    );
    dir
}

fn everything(transport: &str) -> (Peer, u16) {
    let port = free_port();
    let child = Command::new("node")
        .arg(peers_dir().join("node_modules/.bin/mcp-server-everything"))
        .arg(transport)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server-everything");
    wait_for_port(port);
    (Peer(child), port)
}

fn ts_client(url: &str, transport: &str) -> serde_json::Value {
    let out = Command::new("node")
        .current_dir(peers_dir())
        .args(["ts_client.mjs", url, transport])
        .output()
        .expect("run the TS client");
    assert!(out.status.success(), "TS client failed against {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn scenario(server_transport: &str, client_transport: &str, path: &str) {
    let (_server, port) = everything(server_transport);
    let dir = scratch(&format!("ts-{client_transport}"));
    let mut cfg = config(port, &dir);
    if client_transport == "sse" {
        cfg.server.transport = mcp_ledger_crds::common::Transport::Sse;
    }
    let agent = Agent::start(cfg).await;
    let mut direct = ts_client(&format!("http://127.0.0.1:{port}{path}"), client_transport);
    let mut via = ts_client(&agent.url(path), client_transport);
    // Over HTTP+SSE the reference server races its last progress event against the result,
    // direct or not; the SDK drops progress after the result. Both runs must see a prefix
    // of the three steps; everything else must be identical.
    let steps = serde_json::json!([[1, 3], [2, 3], [3, 3]]);
    for run in [&mut direct, &mut via] {
        let p = run.as_object_mut().unwrap().remove("progress").unwrap();
        let p = p.as_array().unwrap().clone();
        assert!(!p.is_empty() && steps.as_array().unwrap().starts_with(&p), "progress {p:?}");
        run["progress_seen"] = serde_json::json!(p.len());
    }
    let client_progress = via["progress_seen"].as_u64().unwrap() as usize;
    direct.as_object_mut().unwrap().remove("progress_seen");
    via.as_object_mut().unwrap().remove("progress_seen");
    assert_eq!(via, direct, "the TypeScript client sees the same results through the agent");
    let records = agent.stop().await;
    for tool in ["echo", "get-sum", "trigger-long-running-operation", "no-such-tool"] {
        let req = records
            .iter()
            .find(|r| r.event_type == EventType::McpRequest && r.tool_name.as_deref() == Some(tool))
            .unwrap_or_else(|| panic!("no request record for {tool}"));
        let answered = records.iter().any(|r| {
            matches!(r.event_type, EventType::McpResponseSuccess | EventType::McpResponseError)
                && r.tool_name.as_deref() == Some(tool)
                && r.correlation_id == req.correlation_id
                && r.duration_ns.is_some()
        });
        assert!(answered, "{tool}: the answer is correlated with its request");
    }
    let progress = records.iter().filter(|r| r.method.as_deref() == Some("notifications/progress")).count();
    // Every event on the wire is recorded; the SDK drops progress that arrives after the
    // result, so the client may have seen fewer than the server sent (3 steps).
    assert!(progress >= client_progress && progress <= 3, "recorded {progress}, client saw {client_progress}");
    // A conforming peer causes no parse errors; the one thing allowed is the client closing
    // its event stream at the end while an event was in flight, which the agent records
    // as a cut stream.
    let unexpected: Vec<_> = records
        .iter()
        .filter(|r| {
            r.event_type == EventType::ParseError && r.error.as_ref().is_none_or(|e| e.kind != "client_disconnected")
        })
        .collect();
    assert!(unexpected.is_empty(), "parse errors with a conforming peer: {unexpected:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_streamable_http() {
    scenario("streamableHttp", "streamable-http", "/mcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_http_sse() {
    scenario("sse", "sse", "/sse").await;
}
