//! `Last-Event-ID` resumption through the agent, against the real Python SDK server with
//! its resumability on (`mcp_server.py --event-store`, the SDK's `EventStore` interface).
//! A client reads part of a streamed `tools/call` answer, disconnects, and resumes with a
//! GET naming an event *before* the last one it got, so the server replays two events the
//! agent has already recorded, then the ones the agent never saw. The client must get the
//! replay unchanged, and the agent must record every event exactly once.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Agent, config, python_server, raw, scratch};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_ledger_crds::record::{Direction, EventType};
use serde_json::Value;

const VERSION: &str = "2025-11-25";

/// Reads an SSE answer until `until` appears in it, then drops the connection.
async fn read_until(req: http::Request<Full<Bytes>>, until: &str) -> String {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.expect("request");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut text = String::new();
    let read = async {
        while !text.contains(until) {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        text.push_str(&String::from_utf8_lossy(data));
                    }
                }
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the stream delivers in time");
    assert!(text.contains(until), "the stream ended before {until:?}: {text}");
    text
}

/// SSE events of `text` as (id, data); the SDK ends lines with CRLF.
fn events(text: &str) -> Vec<(String, String)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_owned());
                }
            }
            Some((id?, data?))
        })
        .filter(|(_, data)| !data.is_empty())
        .collect()
}

fn post(url: &str, session: Option<&str>, body: &str) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", VERSION);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_events_reach_the_client_unchanged_and_are_recorded_once() {
    let (_server, port) = python_server("streamable-http", &["--event-store"]);
    let dir = scratch("resumption");
    let agent = Agent::start(config(port, &dir)).await;
    let url = agent.url("/mcp");

    let init = raw(
        "POST",
        &url,
        &[("content-type", "application/json"), ("accept", "application/json, text/event-stream")],
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{VERSION}","capabilities":{{}},"clientInfo":{{"name":"resumer","version":"1"}}}}}}"#
        ),
    )
    .await;
    assert_eq!(init.status, 200);
    let session = init.headers.get("mcp-session-id").expect("a session id").to_str().unwrap().to_owned();
    let ack = raw(
        "POST",
        &url,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", VERSION),
        ],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(ack.status, 202);

    // The call streams six progress notifications and its result; the client leaves after three.
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow_count","arguments":{"n":6},"_meta":{"progressToken":"p1"}}}"#;
    let first = read_until(post(&url, Some(&session), call), r#""progress":3"#).await;
    let first = events(&first);
    assert_eq!(first.len(), 3, "three progress events before leaving: {first:?}");
    // Give the server time to finish the call (its events go to its store).
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Resume after the first progress event: the second and third come again.
    let resume_from = first[0].0.clone();
    let get = http::Request::get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", VERSION)
        .header("last-event-id", &resume_from)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let replay = events(&read_until(get, r#""id":2,"result""#).await);
    let replayed: Vec<Value> = replay.iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let progress: Vec<i64> = replayed.iter().filter_map(|m| m.pointer("/params/progress")?.as_i64()).collect();
    assert_eq!(progress, [2, 3, 4, 5, 6], "the replay, in order: {replayed:?}");
    assert_eq!(replay[..2], first[1..], "replayed events are byte-for-byte the ones sent before (ids and data)");
    assert_eq!(replayed.last().unwrap()["result"]["content"][0]["text"], "counted to 6");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = raw("GET", &format!("http://127.0.0.1:{}/metrics", agent.admin), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    let replay_drops: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("mcp_ledger_records_dropped_total{") && l.contains(r#"reason="replayed_event""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(replay_drops, 2.0, "the two replayed events are counted as intended drops:\n{metrics}");

    let records = agent.stop().await;
    let mut progress_seen: Vec<i64> = records
        .iter()
        .filter(|r| r.method.as_deref() == Some("notifications/progress"))
        .filter_map(|r| r.body.as_ref()?.to_value().pointer("/params/progress")?.as_i64())
        .collect();
    progress_seen.sort_unstable();
    assert_eq!(progress_seen, [1, 2, 3, 4, 5, 6], "every progress event recorded exactly once");
    let results: Vec<_> = records
        .iter()
        .filter(|r| r.direction == Direction::ServerToClient && r.request_id.jsonrpc.as_deref() == Some("2"))
        .collect();
    assert_eq!(results.len(), 1, "one record of the call's result: {results:?}");
    let result = results[0];
    assert_eq!(result.event_type, EventType::McpResponseSuccess, "{result:?}");
    assert_eq!(result.method.as_deref(), Some("tools/call"), "the replayed result is matched to its request");
    assert_eq!(result.tool_name.as_deref(), Some("slow_count"));
    assert_eq!(result.session_id.as_deref(), Some(session.as_str()));
    let call_record = records
        .iter()
        .find(|r| r.direction == Direction::ClientToServer && r.request_id.jsonrpc.as_deref() == Some("2"))
        .expect("the call's request record");
    assert_eq!(
        result.correlation_id, call_record.correlation_id,
        "request and replayed result share one correlation id"
    );
}
