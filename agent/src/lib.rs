//! The mcp-ledger agent: a transparent MCP capture proxy (`sidecar`, `local`) whose
//! records are redacted and exported as OTLP logs, JSON lines or CSV, with Prometheus
//! metrics. `main.rs` only parses flags and calls [`run`].

pub mod admin;
pub mod capture;
pub mod export;
pub mod govern;
pub mod ids;
pub mod json;
pub mod mcp;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod process;
pub mod proxy;
pub mod redact;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use mcp_ledger_crds::AgentConfig;
use mcp_ledger_crds::record::attr::resource;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Pod identity from the downward API (environment).
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    /// `POD_NAME`.
    pub pod: Option<String>,
    /// `POD_NAMESPACE`.
    pub namespace: Option<String>,
    /// `POD_UID`.
    pub uid: Option<String>,
    /// `NODE_NAME`.
    pub node: Option<String>,
    /// `MCP_CONTAINER_NAME`.
    pub container: Option<String>,
}

impl PodInfo {
    /// Reads the downward-API variables.
    pub fn from_env() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Self {
            pod: var("POD_NAME"),
            namespace: var("POD_NAMESPACE"),
            uid: var("POD_UID"),
            node: var("NODE_NAME"),
            container: var("MCP_CONTAINER_NAME"),
        }
    }

    fn resource_attributes(&self, mode: &str) -> Vec<(String, String)> {
        let mut out = vec![
            (resource::SERVICE_NAME.to_owned(), "mcp-ledger-agent".to_owned()),
            (resource::SERVICE_VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ("mcpledger.agent.mode".to_owned(), mode.to_owned()),
        ];
        for (k, v) in [
            (resource::K8S_POD_NAME, &self.pod),
            (resource::K8S_NAMESPACE_NAME, &self.namespace),
            (resource::K8S_POD_UID, &self.uid),
            (resource::K8S_NODE_NAME, &self.node),
            (resource::K8S_CONTAINER_NAME, &self.container),
        ] {
            if let Some(v) = v {
                out.push((k.to_owned(), v.clone()));
            }
        }
        out
    }
}

/// What `run` needs besides the configuration.
pub struct RunOptions {
    /// `sidecar` or `local` (a label in metrics and resource attributes).
    pub mode: &'static str,
    /// The file the configuration came from: watched for redaction policy changes.
    pub config_file: Option<PathBuf>,
    /// Downward-API identity.
    pub pod: PodInfo,
    /// How long open exchanges may take to finish on shutdown.
    pub drain: Duration,
}

/// Runs the proxy, admin listener and pipeline until `shutdown` turns true, then drains.
pub async fn run(config: AgentConfig, options: RunOptions, shutdown: watch::Receiver<bool>) -> Result<()> {
    config.validate()?;
    let metrics = metrics::Metrics::new();
    metrics.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), options.mode]).set(1);

    let mut sinks = Vec::new();
    if let Some(j) = &config.exporters.json_lines {
        sinks.push(export::Sink::JsonLines(
            export::jsonl::JsonLines::open(&j.path)
                .with_context(|| format!("exporters.jsonLines.path '{}'", j.path))?,
        ));
    }
    if let Some(c) = &config.exporters.csv {
        sinks.push(export::Sink::Csv(
            export::csv::Csv::open(&c.path).with_context(|| format!("exporters.csv.path '{}'", c.path))?,
        ));
    }
    if let Some(o) = &config.exporters.otlp {
        sinks.push(export::Sink::Otlp(Box::new(export::otlp::Otlp::new(
            o,
            options.pod.resource_attributes(options.mode),
        )?)));
    }
    if sinks.is_empty() {
        tracing::warn!("no exporter configured: records are built and counted but go nowhere");
    }

    // Fail closed: an agent whose policy does not compile does not start (and so never
    // forwards traffic it cannot record safely).
    let redactor = Arc::new(redact::Redactor::from_config(&config).context("redaction")?);
    let (redactor_tx, redactor_rx) = watch::channel(redactor.clone());
    let server = capture::ServerFacts {
        name: config.server.name.clone(),
        namespace: config.server.namespace.clone().or(options.pod.namespace.clone()),
        pod: options.pod.pod.clone(),
        transport: config.server.transport,
    };
    let governance = Arc::new(govern::Governance::new(govern::Rules::from_config(&config)));
    let mut processor = capture::Processor::new(server, redactor, metrics.clone(), governance.clone());
    processor.set_session_idle(Duration::from_secs(config.capture.session_idle_seconds));
    let (pipeline, running) = pipeline::start(&config.pipeline, processor, redactor_rx, sinks, metrics.clone())?;

    let upstream: http::Uri = config.upstream.url.parse().context("upstream.url")?;
    let proxy = Arc::new(proxy::Proxy::new(
        upstream,
        Duration::from_millis(config.upstream.connect_timeout_ms),
        pipeline,
        metrics.clone(),
        config.capture.max_body_bytes,
        proxy::identity::Resolver::new(&config.identity)?,
        governance.clone(),
    ));

    let proxy_addr: SocketAddr = config.listen.proxy.parse()?;
    let admin_addr: SocketAddr = config.listen.admin.parse()?;
    let proxy_listener =
        TcpListener::bind(proxy_addr).await.with_context(|| format!("listen.proxy: cannot listen on {proxy_addr}"))?;
    let admin_listener =
        TcpListener::bind(admin_addr).await.with_context(|| format!("listen.admin: cannot listen on {admin_addr}"))?;
    tracing::info!(
        proxy = %proxy_listener.local_addr()?, admin = %admin_listener.local_addr()?,
        upstream = %config.upstream.url, server = %config.server.name, mode = options.mode,
        "mcp-ledger agent listening"
    );
    let ready = Arc::new(AtomicBool::new(true));
    let render: admin::RenderMetrics = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, render, ready.clone(), shutdown.clone()));
    if let Some(path) = options.config_file.clone() {
        tokio::spawn(watch_policy(path, redactor_tx, governance.clone(), metrics.clone(), shutdown.clone()));
    }

    proxy::serve(proxy_listener, proxy, shutdown, options.drain).await;
    ready.store(false, Ordering::Relaxed);
    // The proxy (and with it every pipeline handle) is gone: drain what was captured.
    running.drain().await;
    admin_task.abort();
    tracing::info!("mcp-ledger agent stopped");
    Ok(())
}

/// Polls the configuration file and swaps in the new redaction policy and governance rules
/// (baseline, allowed versions, tool policy, access policies) when it changes. A file that
/// does not parse or validate is reported and the last good configuration stays.
async fn watch_policy(
    path: PathBuf,
    tx: watch::Sender<Arc<redact::Redactor>>,
    governance: Arc<govern::Governance>,
    metrics: metrics::Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
        let now = modified(&path);
        if now == last {
            continue;
        }
        last = now;
        let loaded = std::fs::read_to_string(&path)
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(AgentConfig::from_json(&t)?))
            .and_then(|config| {
                config.validate()?;
                Ok((redact::Redactor::from_config(&config)?, govern::Rules::from_config(&config)))
            });
        match loaded {
            Ok((redactor, rules)) => {
                let _ = tx.send(Arc::new(redactor));
                governance.set_rules(rules);
                metrics.config_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(path = %path.display(), "redaction policy and governance rules reloaded");
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["error"]).inc();
                tracing::error!(path = %path.display(), error = %e, "configuration change refused; keeping the last good policy")
            }
        }
    }
}
