//! How the agent holds its connections to the MCP server: one per HTTP/1.1 client
//! connection, opened again when the server closes it, so that clients never see the
//! server's connection handling.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcp_ledger_crds::record::EventType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}],"isError":false}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

/// How the upstream treats its connections.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Closing {
    /// Keeps them open.
    Never,
    /// Answers with `Connection: close` and closes.
    WithHeader,
    /// Closes each one 100 ms after accepting it (a keep-alive timeout), after the
    /// exchange in flight if any.
    WhenIdle,
}

/// An upstream that counts the connections it accepts and returns, in `x-seen-host`,
/// the Host header it got. A hand-written mock: no real MCP server closes its
/// connections on demand or reports what it accepted.
async fn counting_upstream(closing: Closing) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| async move {
                    let host = req.headers().get(http::header::HOST).cloned();
                    let _ = req.into_body().collect().await;
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
                    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
                    if let Some(host) = host {
                        resp.headers_mut().insert("x-seen-host", host);
                    }
                    if closing == Closing::WithHeader {
                        resp.headers_mut().insert("connection", http::HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(resp)
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                if closing == Closing::WhenIdle {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => conn.as_mut().graceful_shutdown(),
                    }
                }
                let _ = conn.await;
            });
        }
    });
    (port, accepted)
}

/// One keep-alive client connection to `port`.
async fn client_connection(port: u16) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// A tools/call on `sender`: status and body.
async fn call_on(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> (u16, Bytes) {
    sender.ready().await.expect("the agent keeps the client connection open");
    let req = http::Request::post("/mcp")
        .header("host", "mcp.example.test")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(CALL.as_bytes())))
        .unwrap();
    let resp = sender.send_request(req).await.expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.expect("the whole body").to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_connection_keeps_one_upstream_connection() {
    let (port, accepted) = counting_upstream(Closing::Never).await;
    let dir = scratch("own-connection");
    let agent = Agent::start(config(port, &dir)).await;
    let (mut first, mut second) = (client_connection(agent.port).await, client_connection(agent.port).await);
    for _ in 0..3 {
        for sender in [&mut first, &mut second] {
            let (status, body) = call_on(sender).await;
            assert_eq!((status, &body[..]), (200, ANSWER.as_bytes()));
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "six calls on two client connections: two upstream connections");
    drop((first, second));
    let records = agent.stop().await;
    let answered = records.iter().filter(|r| r.event_type == EventType::McpResponseSuccess).count();
    assert_eq!(answered, 6, "{records:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_its_connections_costs_the_client_nothing() {
    for closing in [Closing::WithHeader, Closing::WhenIdle] {
        let (port, accepted) = counting_upstream(closing).await;
        let dir = scratch("server-closes");
        let agent = Agent::start(config(port, &dir)).await;
        let mut sender = client_connection(agent.port).await;
        for call in 0..3 {
            let (status, body) = call_on(&mut sender).await;
            assert_eq!((status, &body[..]), (200, ANSWER.as_bytes()), "{closing:?}, call {call}");
            // Long enough for the upstream to close an idle connection.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "{closing:?}: a new upstream connection for each call");
        drop(sender);
        let records = agent.stop().await;
        assert!(!records.iter().any(|r| r.event_type == EventType::UpstreamUnavailable), "{closing:?}: {records:?}");
        let answered = records.iter().filter(|r| r.event_type == EventType::McpResponseSuccess).count();
        assert_eq!(answered, 3, "{closing:?}: {records:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gets_the_clients_host_or_its_own_when_the_client_sent_none() {
    let (port, _) = counting_upstream(Closing::Never).await;
    let dir = scratch("host");
    let agent = Agent::start(config(port, &dir)).await;
    let mut sender = client_connection(agent.port).await;
    let req = http::Request::post("/mcp")
        .header("host", "mcp.example.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CALL.as_bytes())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["x-seen-host"], "mcp.example.test", "Host is kept as the client sent it");
    // HTTP/1.0 needs no Host: the server gets the upstream's authority, as a client of its own would send.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", agent.port)).await.unwrap();
    let request =
        format!("POST /mcp HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CALL}", CALL.len());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let head = answer.to_ascii_lowercase();
    assert!(head.starts_with("http/1.0 200"), "{answer}");
    assert!(head.contains(&format!("x-seen-host: 127.0.0.1:{port}\r\n")), "{answer}");
    assert!(answer.ends_with(ANSWER), "{answer}");
    drop(sender);
    agent.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
