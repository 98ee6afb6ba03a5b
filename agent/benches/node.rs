//! `make bench` (node agent, whole path): records/s through receive (OTLP/HTTP from the
//! sidecars) → enrichment from the watched pods → disk buffer (fsync every second) →
//! export (OTLP/HTTP to the collector), with the release `mcp-ledger-agent --mode node`
//! pinned to one core, and its memory at that rate.
//!
//! Roles: the node agent is its own process (`taskset -c 0`); this process (pinned to the
//! other core when there is one) runs the senders standing in for the sidecars, the
//! Kubernetes API double the agent watches (`tests/common/apiserver.rs`: no kube-apiserver
//! runs here) and the collector. The collector is a counting sink written here, not a test
//! peer: it decodes each request to count its records, and a Python receiver would be the
//! bottleneck. The baseline is the same senders writing to the same sink directly, in the
//! same run. Records are the sidecar's real OTLP encoding of audit records (`encode_request`).
//!
//! Per-core throughput is records divided by the CPU time the agent used (utime + stime
//! from /proc), which holds on a shared, noisy machine; wall-clock rates are printed too.

#[path = "../tests/common/apiserver.rs"]
mod apiserver;
#[path = "support.rs"]
mod support;

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_ledger_agent::export::otlp::encode_request;
use mcp_ledger_agent::export::proto::{self, ExportLogsServiceRequest, KeyValue};
use mcp_ledger_crds::AuditRecord;
use prost::Message as _;
use support::{Proc, cpu_seconds, free_port, on_cpus, proc_status_kib, wait_port};

/// Records per request, as the sidecar batches them (pipeline.batchSize default).
const BATCH: usize = 128;
/// Pods on the node the agent knows (the records name them round-robin).
const PODS: usize = 40;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to list
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 && std::env::var_os("BENCH_PINNED").is_none() && taskset() {
        // Re-run this process on core 1 so that the agent has core 0 to itself.
        let status = on_cpus("1").arg(std::env::current_exe().unwrap()).env("BENCH_PINNED", "1").status().unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(run());
}

fn taskset() -> bool {
    Command::new("taskset").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// What the collector counted.
#[derive(Default)]
struct Counts {
    records: AtomicU64,
    /// Records under a resource the node agent enriched (it alone adds the approval).
    enriched: AtomicU64,
}

/// The collector: counts the records of every OTLP/HTTP export request it accepts.
async fn sink(received: Arc<Counts>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let received = received.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let status = match ExportLogsServiceRequest::decode(body) {
                            Ok(r) => {
                                for rl in &r.resource_logs {
                                    let n: usize = rl.scope_logs.iter().map(|sl| sl.log_records.len()).sum();
                                    received.records.fetch_add(n as u64, Ordering::Relaxed);
                                    let attrs = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
                                    if proto::find_str(attrs, "mcpledger.server.approval").is_some() {
                                        received.enriched.fetch_add(n as u64, Ordering::Relaxed);
                                    }
                                }
                                200
                            }
                            Err(_) => 400,
                        };
                        Ok::<_, Infallible>(
                            hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

fn audit_record(i: usize) -> AuditRecord {
    serde_json::from_value(serde_json::json!({
        "timestamp": "2026-11-24T10:00:00.123456789Z",
        "observedTimestamp": "2026-11-24T10:00:00.123556789Z",
        "level": "INFO",
        "eventType": "mcp-request",
        "responseType": "json",
        "headers": {"content-type": "application/json", "mcp-protocol-version": "2025-11-25", "user-agent": "python-httpx/0.28.1"},
        "identitySource": "unverified",
        "toolId": "github/search_issues@3f2a9c1d",
        "toolName": "search_issues",
        "correlationId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "00f067aa0ba902b7",
        "requestId": {"jsonrpc": i.to_string(), "unique": format!("0193a0c4-0000-7000-8000-{i:012}")},
        "sessionId": "9c1e5a7e2f444b1a9d0e2a6b3c4d5e6f",
        "method": "tools/call",
        "protocolVersion": "2025-11-25",
        "clientIp": "10.0.3.17",
        "direction": "client-to-server",
        "transport": "streamable-http",
        "server": {"name": "github", "namespace": "tools", "pod": "github-7f9c4d-00000"},
        "bodyBytes": 118,
        "body": {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                 "params": {"name": "search_issues", "arguments": {"query": "label:bug state:open", "limit": 20}}},
        "bodyTruncated": false,
        "redaction": {"kinds": {}}
    }))
    .expect("the bench record is a valid AuditRecord")
}

/// Export requests as the sidecars of the node's pods send them.
fn requests(total: usize) -> Vec<Bytes> {
    let records: Vec<AuditRecord> = (0..BATCH).map(audit_record).collect();
    (0..total.div_ceil(BATCH))
        .map(|n| {
            let pod = n % PODS;
            let resource = vec![
                KeyValue { key: "service.name".into(), value: Some(proto::string("mcp-ledger-agent")) },
                KeyValue { key: "k8s.pod.uid".into(), value: Some(proto::string(format!("uid-{pod}"))) },
                KeyValue { key: "k8s.pod.name".into(), value: Some(proto::string(format!("github-7f9c4d-{pod:05}"))) },
                KeyValue { key: "k8s.namespace.name".into(), value: Some(proto::string("tools")) },
            ];
            Bytes::from(encode_request(&records, &resource).encode_to_vec())
        })
        .collect()
}

/// Sends every request over `conns` keep-alive connections; returns how many were refused
/// (retried until accepted, as a sidecar does).
async fn send_all(port: u16, requests: &[Bytes], conns: usize) -> u64 {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let requests: Arc<Vec<Bytes>> = Arc::new(requests.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, next, refused, requests) = (client.clone(), next.clone(), refused.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = requests.get(i) else { return };
                loop {
                    let req = hyper::Request::post(format!("http://127.0.0.1:{port}/v1/logs"))
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    match client.request(req).await {
                        Ok(resp) if resp.status() == 200 => {
                            let _ = resp.into_body().collect().await;
                            break;
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    refused.load(Ordering::Relaxed)
}

async fn wait_received(received: &Counts, want: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.records.load(Ordering::Relaxed) < want {
        let got = received.records.load(Ordering::Relaxed);
        assert!(Instant::now() < deadline, "the sink got {got} of {want} records");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Instant::now()
}

async fn run() {
    let total: usize = std::env::var("BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(400_000);
    let requests = requests(total);
    let total = (requests.len() * BATCH) as u64;
    let bytes: usize = requests.iter().map(Bytes::len).sum();
    let work = std::env::temp_dir().join(format!("mcp-ledger-bench-node-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();

    let api = apiserver::ApiServer::start().await;
    api.apply_namespace("tools", &[("team", "platform"), ("org", "acme")]);
    for pod in 0..PODS {
        let name = format!("github-7f9c4d-{pod:05}");
        api.apply_pod(apiserver::pod(
            "tools",
            &name,
            &format!("uid-{pod}"),
            "bench-node",
            "github",
            Some("github"),
            &[],
        ));
    }
    let received = Arc::new(Counts::default());
    let collector = sink(received.clone()).await;

    println!(
        "mcp-ledger node agent benchmark: {total} records in {} OTLP/HTTP requests of {BATCH} ({:.0} bytes/record encoded)",
        requests.len(),
        bytes as f64 / total as f64
    );
    // Baseline: the senders straight to the collector.
    let started = Instant::now();
    send_all(collector, &requests, 4).await;
    let direct = wait_received(&received, total).await - started;
    let direct_rate = total as f64 / direct.as_secs_f64();

    let (listen, admin) = (free_port(), free_port());
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/mcp-ledger-agent");
    assert!(bin.exists(), "{} missing: make bench builds it with `cargo build --release`", bin.display());
    // Set when main() re-ran this process on core 1 (after which it sees one core only).
    let pinned = std::env::var_os("BENCH_PINNED").is_some();
    let mut command = if pinned {
        let mut c = on_cpus("0");
        c.arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let agent = Proc(
        command
            .args([
                "--mode=node",
                "--otlp-protocol=http-protobuf",
                "--enrich=true",
                "--team-label=team",
                "--org-label=org",
            ])
            .args(["--log=warn", "--buffer-sync-ms=1000"])
            .arg(format!("--otlp-listen=127.0.0.1:{listen}"))
            .arg(format!("--admin=127.0.0.1:{admin}"))
            .arg(format!("--otlp-endpoint=http://127.0.0.1:{collector}"))
            .arg(format!("--buffer-dir={}", work.join("buffer").display()))
            .arg(format!("--pod-logs-dir={}", work.join("no-pod-logs").display()))
            .env("KUBECONFIG", api.kubeconfig(&work))
            .env("NODE_NAME", "bench-node")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    wait_port(listen);
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.open_watches(true) == 0 || api.open_watches(false) == 0 {
        assert!(Instant::now() < deadline, "the node agent did not start its watches");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_idle = proc_status_kib(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);
    assert_eq!(received.enriched.load(Ordering::Relaxed), 0, "the baseline is not enriched");
    received.records.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let refused = send_all(listen, &requests, 4).await;
    let accepted = started.elapsed();
    let rss_load = proc_status_kib(pid, "VmRSS:");
    let through = wait_received(&received, total).await - started;
    let cpu = cpu_seconds(pid) - cpu_before;
    let peak = proc_status_kib(pid, "VmHWM:");
    let through_rate = total as f64 / through.as_secs_f64();
    let enriched = received.enriched.load(Ordering::Relaxed);
    assert_eq!(enriched, total, "every record relayed by the node agent is enriched");

    println!("  direct to the collector          {direct_rate:>10.0} records/s (wall)");
    println!(
        "  through the node agent           {through_rate:>10.0} records/s (wall, {:.0} records/s accepted from the senders; {refused} refusals retried)",
        total as f64 / accepted.as_secs_f64()
    );
    println!("  ratio                            {:>10.1} %", through_rate / direct_rate * 100.0);
    println!(
        "  node agent CPU                   {cpu:>10.2} s{}",
        if pinned {
            " (pinned to core 0; this process on core 1)"
        } else {
            " (not pinned: taskset missing or one core)"
        }
    );
    println!(
        "  records per agent CPU-second     {:>10.0}   (target >= 50,000 per core, disk buffer on, enrichment on)",
        total as f64 / cpu
    );
    println!(
        "  node agent RSS                   idle {:.1} MiB, at the end of sending {:.1} MiB, peak {:.1} MiB",
        rss_idle as f64 / 1024.0,
        rss_load as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&work);
}
