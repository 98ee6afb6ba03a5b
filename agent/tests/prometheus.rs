//! `/metrics` checked by the real tools: `promtool check metrics` (Prometheus' own linter)
//! and a real Prometheus server that scrapes the agent and answers queries over its data.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn tool(name: &str) -> std::path::PathBuf {
    let found =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join(name)).find(|p| p.exists());
    found.unwrap_or_else(|| panic!("{name} is not installed: run `make peers` (make test does)"))
}

async fn query(prom: u16, q: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{prom}/api/v1/query?query={}", encode(q));
    let r = raw("GET", &url, &[], "").await;
    serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn scalar(v: &serde_json::Value) -> Option<f64> {
    v["data"]["result"].as_array()?.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let (_server, port) = python_server("streamable-http", &[]);
    let dir = scratch("prometheus");
    let agent = Agent::start(config(port, &dir)).await;
    python_client(&agent.url("/mcp"), "legacy", "streamable-http");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let metrics = raw("GET", &format!("http://127.0.0.1:{}/metrics", agent.admin), &[], "").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for name in [
        "mcp_ledger_requests_total",
        "mcp_ledger_request_duration_seconds_bucket",
        "mcp_ledger_records_exported_total",
        "mcp_ledger_queue_depth",
        "mcp_ledger_active_sessions",
        "mcp_ledger_build_info",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics found problems (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scraping the admin port.
    let prom_port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mcp-ledger-agent\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            agent.admin
        ),
    )
    .unwrap();
    let _prom = Peer(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    while tokio::net::TcpStream::connect(("127.0.0.1", prom_port)).await.is_err() {
        assert!(Instant::now() < deadline, "Prometheus did not start listening");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = loop {
        let v = query(prom_port, "sum(mcp_ledger_requests_total{method=\"tools/call\"})").await;
        if let Some(n) = scalar(&v) {
            break n;
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape the agent within 45 s: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(calls, 6.0, "six tools/call requests in the scenario");
    let errors =
        scalar(&query(prom_port, "sum(mcp_ledger_requests_total{method=\"tools/call\",outcome=\"tool_error\"})").await);
    assert_eq!(errors, Some(2.0), "fail and no_such_tool answer isError");
    let by_tool = scalar(&query(prom_port, "sum(mcp_ledger_requests_total{tool=\"echo\"})").await);
    assert_eq!(by_tool, Some(1.0));
    let p99 = scalar(
        &query(
            prom_port,
            "histogram_quantile(0.99, sum by (le) (mcp_ledger_request_duration_seconds_bucket{method=\"tools/call\"}))",
        )
        .await,
    );
    assert!(p99.is_some_and(|v| v > 0.0), "a latency quantile can be computed: {p99:?}");
    let up = scalar(&query(prom_port, "up{job=\"mcp-ledger-agent\"}").await);
    assert_eq!(up, Some(1.0));
    agent.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
