//! `mcp-ledger-agent`: flags, logging, signals. Everything else is in the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use mcp_ledger_crds::AgentConfig;
use mcp_ledger_crds::common::Transport;
use mcp_ledger_crds::config::{FileSinkConfig, OtlpConfig, OtlpProtocol, ServerConfig};

/// The mcp-ledger agent: a transparent proxy in front of one MCP server that records every
/// MCP message as a redacted audit record (OTLP logs, JSON lines, CSV) and serves
/// Prometheus metrics on the admin port (/metrics, /healthz, /readyz).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// `sidecar`: in an MCP server pod, configured by the file the operator renders.
    /// `local`: no cluster; configured by --config and/or the flags below.
    /// `node`: the per-node agent: receives the sidecars' records over OTLP, buffers them
    /// on disk and relays them to --otlp-endpoint.
    #[arg(long, value_enum, env = "MCP_LEDGER_MODE", default_value = "sidecar")]
    mode: Mode,

    /// Agent configuration file (JSON, the `AgentConfig` type; see crds/schema/agent-config.schema.json).
    /// Required in sidecar mode. Changes to its redaction policy are picked up while running.
    #[arg(long, env = "MCP_LEDGER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// URL of the MCP server to put the agent in front of, e.g. http://127.0.0.1:8000.
    /// Overrides the config file (the operator passes the app's port this way).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,

    /// Address the proxy listens on for MCP clients. Overrides the config file.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// Address of the admin listener (/metrics, /healthz, /readyz). Overrides the config file.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,

    /// [local] Name of the MCP server in records and metrics.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,

    /// [local] MCP transport of the upstream server.
    #[arg(long, value_enum)]
    transport: Option<TransportArg>,

    /// [local, node] Write records as JSON lines to FILE (`-` for stdout). In node mode each
    /// relayed OTLP log record becomes one flat JSON object (timestamps, severity, traceId,
    /// resource, attributes, body), after enrichment.
    #[arg(long, value_name = "FILE")]
    jsonl: Option<String>,

    /// [local, node] Write records as CSV rows to FILE (metadata columns, never the body).
    #[arg(long, value_name = "FILE")]
    csv: Option<String>,

    /// [local, node] Export records as OTLP logs to this collector endpoint
    /// (gRPC: http://host:4317; HTTP: http://host:4318). Node mode needs this, --jsonl or
    /// --csv (any of them; a record is acknowledged in the buffer once all took it).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,

    /// [local, node] OTLP protocol for --otlp-endpoint.
    #[arg(long, value_enum, default_value = "grpc")]
    otlp_protocol: OtlpArg,

    /// [local] Largest message body captured into a record, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,

    /// [node] Address of the OTLP receiver for the sidecars (gRPC and HTTP/protobuf).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4317")]
    otlp_listen: std::net::SocketAddr,

    /// [node] Folder of the disk buffer (a hostPath survives pod restarts).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/mcp-ledger/buffer")]
    buffer_dir: PathBuf,

    /// [node] Most bytes the disk buffer may hold.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    buffer_max_bytes: u64,

    /// [node] When the buffer is full: `block` (sidecars are told to retry) or
    /// `drop-oldest` (the oldest records go, counted).
    #[arg(long, value_enum, default_value = "block")]
    buffer_full: BufferFullArg,

    /// [node] Milliseconds between fsyncs of the disk buffer (what a power loss can take;
    /// a killed process loses nothing that was acknowledged).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    buffer_sync_ms: u64,

    /// [node] The operator's inventory API, where usage is reported
    /// (e.g. https://mcp-ledger-operator.mcp-ledger.svc:8444). No reports without it.
    #[arg(long, value_name = "URL")]
    operator_url: Option<String>,

    /// [node] Bearer token file for the operator (re-read for every report: it rotates).
    #[arg(long, value_name = "FILE", default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token")]
    operator_token_file: PathBuf,

    /// [node] CA certificate (PEM) that signed the operator's certificate.
    #[arg(long, value_name = "FILE", default_value = "/etc/mcp-ledger/operator-ca/ca.crt")]
    operator_ca_file: PathBuf,

    /// [node] Seconds between usage reports.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    usage_interval_seconds: u64,

    /// [node] Enrich records from a watch of this node's pods and of the namespaces
    /// (k8s.* attributes, owner workload, McpServer, team/org). Needs in-cluster credentials.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enrich: bool,

    /// [node] The node's CRI pod log folder: the MCP server containers' own stdout/stderr are
    /// tailed from it, redacted with their McpServer's redaction policy and relayed (needs
    /// --enrich to know which containers, and list/watch of McpServers and
    /// McpRedactionPolicies; tailing starts once those are listed).
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pod_logs_dir: PathBuf,

    /// [node] Namespace of the cluster default McpRedactionPolicy (`default`), the
    /// operator's namespace.
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE", default_value = "mcp-ledger")]
    policy_namespace: String,

    /// [node] Pod or namespace label whose value is the team id of records without one.
    #[arg(long, value_name = "LABEL")]
    team_label: Option<String>,

    /// [node] Pod or namespace label whose value is the org id of records without one.
    #[arg(long, value_name = "LABEL")]
    org_label: Option<String>,

    /// Threads that serve traffic (proxy, admin listener; in node mode the OTLP receiver and
    /// relay). Sidecar and local mode default to 1: one thread proxies tens of thousands of
    /// MCP requests per second, and a sidecar sees every core of its node, so a thread per
    /// core would cost memory and cross-thread wake-ups for nothing. The record pipeline has
    /// its own thread whatever this says. Node mode defaults to one per core the container
    /// may use (its CPU limit, else the node's cores).
    #[arg(
        long,
        env = "MCP_LEDGER_WORKER_THREADS",
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    worker_threads: Option<u16>,

    /// Seconds open exchanges get to finish after SIGTERM/SIGINT before the agent exits.
    #[arg(long, default_value_t = 20)]
    drain_seconds: u64,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `mcp_ledger_agent=debug`.
    #[arg(long, env = "MCP_LEDGER_LOG", default_value = "info")]
    log: String,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Mode {
    Sidecar,
    Local,
    Node,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportArg {
    StreamableHttp,
    Sse,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BufferFullArg {
    Block,
    DropOldest,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OtlpArg {
    Grpc,
    HttpProtobuf,
}

fn load(args: &Args) -> Result<AgentConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading --config {}", path.display()))?;
            serde_json::from_str::<AgentConfig>(&text).with_context(|| format!("--config {}", path.display()))?
        }
        None if args.mode == Mode::Sidecar => {
            anyhow::bail!("--config is required in sidecar mode (the operator mounts it from the agent ConfigMap)")
        }
        None => {
            AgentConfig { server: ServerConfig { name: "local".into(), ..Default::default() }, ..Default::default() }
        }
    };
    if let Some(v) = &args.upstream {
        config.upstream.url = v.clone();
    }
    if let Some(v) = &args.listen {
        config.listen.proxy = v.clone();
    }
    if let Some(v) = &args.admin {
        config.listen.admin = v.clone();
    }
    if args.mode == Mode::Local {
        if config.server.path.is_empty() {
            config.server.path = "/mcp".into();
        }
        if let Some(v) = &args.server_name {
            config.server.name = v.clone();
        }
        if let Some(t) = args.transport {
            config.server.transport = match t {
                TransportArg::StreamableHttp => Transport::StreamableHttp,
                TransportArg::Sse => Transport::Sse,
            };
        }
        if let Some(p) = &args.jsonl {
            config.exporters.json_lines = Some(FileSinkConfig { path: p.clone() });
        }
        if let Some(p) = &args.csv {
            config.exporters.csv = Some(FileSinkConfig { path: p.clone() });
        }
        if let Some(e) = &args.otlp_endpoint {
            let protocol = match args.otlp_protocol {
                OtlpArg::Grpc => OtlpProtocol::Grpc,
                OtlpArg::HttpProtobuf => OtlpProtocol::HttpProtobuf,
            };
            config.exporters.otlp = Some(OtlpConfig { endpoint: e.clone(), protocol, timeout_ms: 5_000 });
        }
        if let Some(n) = args.max_body_bytes {
            config.capture.max_body_bytes = n;
        }
    }
    config.validate()?;
    Ok(config)
}

fn run_node(args: &Args) -> Result<()> {
    use mcp_ledger_agent::node::buffer::{BufferConfig, FullPolicy};
    anyhow::ensure!(
        args.otlp_endpoint.is_some() || args.jsonl.is_some() || args.csv.is_some(),
        "node mode needs somewhere to relay records: --otlp-endpoint URL (a collector), --jsonl FILE or --csv FILE"
    );
    let options = mcp_ledger_agent::node::relay::NodeOptions {
        listen: args.otlp_listen,
        buffer: BufferConfig {
            dir: args.buffer_dir.clone(),
            max_bytes: args.buffer_max_bytes,
            segment_bytes: (args.buffer_max_bytes / 16).clamp(1 << 20, 64 << 20),
            full: match args.buffer_full {
                BufferFullArg::Block => FullPolicy::Block,
                BufferFullArg::DropOldest => FullPolicy::DropOldest,
            },
        },
        collector: args.otlp_endpoint.clone().map(|endpoint| OtlpConfig {
            endpoint,
            protocol: match args.otlp_protocol {
                OtlpArg::Grpc => OtlpProtocol::Grpc,
                OtlpArg::HttpProtobuf => OtlpProtocol::HttpProtobuf,
            },
            timeout_ms: 5_000,
        }),
        jsonl: args.jsonl.clone(),
        csv: args.csv.clone(),
        sync_every: Duration::from_millis(args.buffer_sync_ms.max(10)),
        operator: args.operator_url.clone().map(|url| mcp_ledger_agent::node::usage::OperatorTarget {
            url,
            token_file: args.operator_token_file.clone(),
            ca_file: args.operator_ca_file.clone(),
        }),
        node_name: std::env::var("NODE_NAME").unwrap_or_else(|_| "unknown".to_owned()),
        usage_every: Duration::from_secs(args.usage_interval_seconds.max(1)),
        enrich: args.enrich,
        pod_logs_dir: args.pod_logs_dir.clone(),
        policy_namespace: args.policy_namespace.clone(),
        identity_labels: mcp_ledger_agent::node::enrich::IdentityLabels {
            team: args.team_label.clone(),
            org: args.org_label.clone(),
        },
    };
    let admin: std::net::SocketAddr = args
        .admin
        .as_deref()
        .unwrap_or("0.0.0.0:9090")
        .parse()
        .context("--admin must be an address like 0.0.0.0:9090")?;
    until_signal(args, |shutdown| mcp_ledger_agent::node::run(options, admin, shutdown))
}

/// Runs `serve` on the mode's runtime; SIGTERM or SIGINT turns its shutdown signal true.
fn until_signal<F, Fut>(args: &Args, serve: F) -> Result<()>
where
    F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    runtime(args.mode, args.worker_threads)?.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            mcp_ledger_agent::process::shutdown_signal().await;
            tracing::info!("shutdown requested: draining");
            let _ = tx.send(true);
        });
        serve(rx).await
    })
}

/// The runtime that serves traffic, `--worker-threads` big. One thread in sidecar and local
/// mode is a current-thread runtime: no work stealing, no wake-ups across threads. Node
/// mode is always multi-threaded: its disk buffer writes run in `block_in_place`.
fn runtime(mode: Mode, threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    use tokio::runtime::Builder;
    let threads = threads.map(usize::from);
    match (mode, threads) {
        (Mode::Node, None) => Builder::new_multi_thread().enable_all().build(),
        (Mode::Sidecar | Mode::Local, None | Some(1)) => Builder::new_current_thread().enable_all().build(),
        (_, Some(n)) => Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    mcp_ledger_agent::process::init_logging(&args.log).map_err(anyhow::Error::msg)?;
    if args.mode == Mode::Node {
        return run_node(&args);
    }
    let config = load(&args)?;
    let options = mcp_ledger_agent::RunOptions {
        mode: if args.mode == Mode::Local { "local" } else { "sidecar" },
        config_file: args.config.clone(),
        pod: mcp_ledger_agent::PodInfo::from_env(),
        drain: Duration::from_secs(args.drain_seconds),
    };
    until_signal(&args, |shutdown| mcp_ledger_agent::run(config, options, shutdown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::runtime::RuntimeFlavor;

    fn flavor(argv: &[&str]) -> RuntimeFlavor {
        let args = Args::try_parse_from(argv).expect("flags parse");
        let rt = runtime(args.mode, args.worker_threads).expect("runtime builds");
        rt.handle().runtime_flavor()
    }

    #[test]
    fn the_sidecar_serves_on_one_thread_unless_told_otherwise() {
        assert_eq!(flavor(&["agent", "--mode", "sidecar"]), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(&["agent", "--mode", "local"]), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(&["agent", "--mode", "local", "--worker-threads", "1"]), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(&["agent", "--mode", "sidecar", "--worker-threads", "3"]), RuntimeFlavor::MultiThread);
    }

    #[test]
    fn the_node_agent_is_always_multi_threaded() {
        // Its disk buffer writes run in block_in_place, which a current-thread runtime refuses.
        assert_eq!(flavor(&["agent", "--mode", "node"]), RuntimeFlavor::MultiThread);
        assert_eq!(flavor(&["agent", "--mode", "node", "--worker-threads", "1"]), RuntimeFlavor::MultiThread);
    }

    #[test]
    fn zero_worker_threads_is_refused_with_the_range() {
        let err = Args::try_parse_from(["agent", "--worker-threads", "0"]).unwrap_err().to_string();
        assert!(err.contains("1..=1024"), "{err}");
    }
}
