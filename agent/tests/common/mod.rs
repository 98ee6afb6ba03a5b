//! Harness for the agent's in-process integration tests: real MCP peers (the official
//! Python SDK, installed into the repository's `.venv` by `make peers`, which `make test`
//! runs), the agent running in-process, and a raw HTTP client.

#![allow(dead_code)]

pub mod apiserver;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_ledger_crds::AgentConfig;
use mcp_ledger_crds::AuditRecord;
use mcp_ledger_crds::config::{FileSinkConfig, ServerConfig};
use tokio::sync::watch;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("MCP_LEDGER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run `make peers` (make test does) to install the MCP SDK test peers",
        p.display()
    );
    p
}

/// A port nothing listens on, for a peer that is told its port before it starts.
///
/// Chosen at random below the kernel's ephemeral range (`ip_local_port_range`): every
/// `bind(0)` listener of the tests running alongside gets a port from that range, so none
/// can take this one while the peer starts. A port from `bind(0)` could: the likely cause
/// of a run where the SSE test's GET got the 404 of a Streamable HTTP server.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    const LOWEST: u16 = 10_000;
    if ephemeral_low <= LOWEST + 1_000 {
        return StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    }
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0u32.. {
        let draw = std::hash::BuildHasher::hash_one(&seed, (std::process::id(), attempt));
        let port = LOWEST + (draw % u64::from(ephemeral_low - LOWEST)) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    unreachable!("the loop returns")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-ledger-test-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed on drop.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port} after 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the Python SDK test server.
pub fn python_server(transport: &str, extra: &[&str]) -> (Peer, u16) {
    let port = free_port();
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/peers/mcp_server.py"))
        .args(["--transport", transport, "--port", &port.to_string()])
        .args(extra);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let peer = Peer(cmd.spawn().expect("start the Python MCP server"));
    wait_for_port(port);
    (peer, port)
}

/// Runs the Python SDK test client scenario against `url`; returns its JSON output.
pub fn python_client(url: &str, mode: &str, transport: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo_root().join("tests/peers/mcp_client.py"))
        .args([url, "--mode", mode, "--transport", transport])
        .output()
        .expect("run the Python MCP client");
    assert!(out.status.success(), "client failed against {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The agent, running in-process.
pub struct Agent {
    pub port: u16,
    pub admin: u16,
    pub records_path: PathBuf,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn config(upstream_port: u16, dir: &Path) -> AgentConfig {
    let mut c = AgentConfig {
        server: ServerConfig {
            name: "test-server".into(),
            namespace: Some("tools".into()),
            path: "/mcp".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    c.upstream.url = format!("http://127.0.0.1:{upstream_port}");
    c.listen.proxy = format!("127.0.0.1:{}", free_port());
    c.listen.admin = format!("127.0.0.1:{}", free_port());
    c.exporters.json_lines = Some(FileSinkConfig { path: dir.join("records.jsonl").display().to_string() });
    c.pipeline.flush_interval_ms = 50;
    c
}

impl Agent {
    pub async fn start(config: AgentConfig) -> Self {
        Self::start_with(config, None).await
    }

    /// Starts the agent as sidecar mode does: configured from `file`, which it watches.
    pub async fn start_from_file(file: &Path) -> Self {
        let config = AgentConfig::from_json(&std::fs::read_to_string(file).unwrap()).unwrap();
        Self::start_with(config, Some(file.to_owned())).await
    }

    async fn start_with(config: AgentConfig, config_file: Option<PathBuf>) -> Self {
        let port: u16 = config.listen.proxy.rsplit(':').next().unwrap().parse().unwrap();
        let admin: u16 = config.listen.admin.rsplit(':').next().unwrap().parse().unwrap();
        let records_path = PathBuf::from(&config.exporters.json_lines.as_ref().unwrap().path);
        let (shutdown, rx) = watch::channel(false);
        let options = mcp_ledger_agent::RunOptions {
            mode: "local",
            config_file,
            pod: mcp_ledger_agent::PodInfo { pod: Some("test-pod-0".into()), ..Default::default() },
            drain: Duration::from_secs(5),
        };
        let mut task = tokio::spawn(mcp_ledger_agent::run(config, options, rx));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if task.is_finished() {
                panic!("agent exited at start: {:?}", (&mut task).await);
            }
            assert!(Instant::now() < deadline, "agent did not start listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { port, admin, records_path, shutdown, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops the agent (draining the pipeline) and returns every record it wrote.
    pub async fn stop(self) -> Vec<AuditRecord> {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("agent stops").unwrap().unwrap();
        read_records(&self.records_path)
    }
}

pub fn read_records(path: &Path) -> Vec<AuditRecord> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str::<AuditRecord>(l)
                .unwrap_or_else(|e| panic!("record does not parse as AuditRecord ({e}): {l}"))
        })
        .collect()
}

/// One raw HTTP exchange: status, headers and the whole body.
pub struct Raw {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub async fn raw(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Raw {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(body.into())).unwrap()).await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Raw { status, headers, body }
}

/// An Ed25519 key pair generated for the test run with `openssl` (nothing secret is
/// committed) that signs JWTs; `public` is the PEM path the agent's configuration names.
pub struct JwtSigner {
    private: Vec<u8>,
    pub public: String,
}

impl JwtSigner {
    pub fn new(dir: &Path) -> Self {
        let key = dir.join("signer.key");
        let public = dir.join("signer.pub");
        let run = |args: &[&str], a: &Path, b: &Path| {
            let ok = Command::new("openssl").args(args).arg(a).arg("-out").arg(b).status().unwrap().success();
            assert!(ok, "openssl {args:?}");
        };
        let ok = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl genpkey");
        run(&["pkey", "-pubout", "-in"], &key, &public);
        Self { private: std::fs::read(&key).unwrap(), public: public.display().to_string() }
    }

    /// Signs `claims` (JSON text) with EdDSA.
    pub fn sign(&self, claims: &str) -> String {
        let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_pem(&self.private).unwrap(),
        )
        .unwrap()
    }
}

/// Runs `tests/peers/governance_client.py` (the Python SDK client) with `steps`; returns
/// what each step gave the client.
pub fn governance_client(url: &str, token: Option<&str>, steps: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/peers/governance_client.py")).arg(url);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.args(steps).output().expect("run the Python governance client");
    assert!(out.status.success(), "client failed against {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
