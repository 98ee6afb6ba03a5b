//! The node agent (`--mode node`), one per node: receives the sidecars' records over OTLP,
//! enriches them from a watch of the node's pods ([`enrich`]), keeps them in a disk buffer
//! and relays them to the collector ([`relay`]) and/or JSON lines and CSV files ([`files`]); usage is aggregated from them and reported
//! to the operator ([`usage`]). The MCP server containers' own logs are tailed ([`tail`]), redacted and buffered too
//! ([`logs`]).

pub mod buffer;
pub mod cri;
pub mod enrich;
pub mod files;
pub mod logs;
pub mod policies;
pub mod relay;
pub mod tail;
pub mod usage;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::export::otlp::Otlp;
use crate::metrics::Metrics;

/// A new empty folder for a unit test, named after `name`.
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("mcpl-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the node agent until `shutdown` turns true.
pub async fn run(options: relay::NodeOptions, admin: SocketAddr, shutdown: watch::Receiver<bool>) -> Result<()> {
    let metrics = Metrics::new();
    metrics.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), "node"]).set(1);
    metrics.buffer_max_bytes.set(i64::try_from(options.buffer.max_bytes).unwrap_or(i64::MAX));
    let dir = options.buffer.dir.clone();
    let (buffer, recovery) = buffer::DiskBuffer::open(options.buffer.clone())
        .with_context(|| format!("opening the disk buffer in {}", dir.display()))?;
    tracing::info!(
        dir = %dir.display(), pending = recovery.pending, torn_bytes = recovery.torn_bytes, lost = recovery.lost,
        "disk buffer recovered"
    );
    let buffer = Arc::new(Mutex::new(buffer));
    let collector = match &options.collector {
        Some(c) => Some(Otlp::new(c, vec![]).context("--otlp-endpoint")?),
        None => None,
    };
    let files = files::FileSinks::open(options.jsonl.as_deref(), options.csv.as_deref())
        .context("opening the --jsonl/--csv file")?;
    anyhow::ensure!(
        collector.is_some() || files.is_some(),
        "the node agent needs somewhere to relay records: --otlp-endpoint, --jsonl or --csv"
    );
    let destinations = relay::Destinations { collector, files };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding the OTLP receiver on {}", options.listen))?;
    let admin_listener =
        tokio::net::TcpListener::bind(admin).await.with_context(|| format!("binding the admin listener on {admin}"))?;
    tracing::info!(otlp = %listener.local_addr()?, admin = %admin_listener.local_addr()?, "mcp-ledger node agent listening");
    let render: crate::admin::RenderMetrics = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    let ready = Arc::new(AtomicBool::new(true));
    let usage = options.operator.as_ref().map(|_| Arc::new(Mutex::new(usage::Aggregator::default())));
    let mut enrichment = None;
    let mut client = None;
    if options.enrich {
        match kube::Client::try_default().await {
            Ok(c) => {
                let cluster = Arc::new(std::sync::RwLock::new(enrich::Cluster::default()));
                tokio::spawn(enrich::watch::run(c.clone(), options.node_name.clone(), cluster.clone()));
                client = Some(c);
                tracing::info!(node = %options.node_name, "enriching records from the node's pods");
                enrichment = Some(relay::Enrichment { cluster, labels: options.identity_labels.clone() });
            }
            Err(e) => tracing::warn!(error = %e, "no Kubernetes credentials: records are relayed without enrichment"),
        }
    }
    let mut tasks = vec![
        tokio::spawn(crate::admin::serve(admin_listener, render, ready, shutdown.clone())),
        tokio::spawn(relay::serve_receiver(
            listener,
            relay::Receiver {
                buffer: buffer.clone(),
                usage: usage.clone(),
                enrichment: enrichment.clone(),
                metrics: metrics.clone(),
                permits: Arc::new(tokio::sync::Semaphore::new(relay::CONCURRENT_REQUESTS)),
            },
            shutdown.clone(),
        )),
        tokio::spawn(relay::relay(buffer.clone(), destinations, metrics.clone(), shutdown.clone())),
        tokio::spawn(relay::sync_loop(buffer.clone(), options.sync_every, shutdown.clone())),
    ];
    // The MCP server containers' own logs: only with the pod map, which says which
    // containers serve an McpServer.
    let stop_tailing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tail_thread = None;
    if let (Some(e), Some(client), true) = (&enrichment, client, options.pod_logs_dir.is_dir()) {
        tracing::info!(
            dir = %options.pod_logs_dir.display(), policy_namespace = %options.policy_namespace,
            "tailing the MCP server containers' logs once the redaction policies are listed"
        );
        let policies = Arc::new(Mutex::new(policies::Policies::new(options.policy_namespace.clone())));
        tokio::spawn(policies::watch::run(client, policies.clone()));
        tail_thread = Some(logs::spawn(
            options.pod_logs_dir.clone(),
            dir.clone(),
            policies,
            e.cluster.clone(),
            e.labels.clone(),
            buffer.clone(),
            metrics.clone(),
            stop_tailing.clone(),
        ));
    }
    if let (Some(aggregator), Some(target)) = (usage, options.operator.clone()) {
        tracing::info!(operator = %target.url, every_s = options.usage_every.as_secs(), "reporting usage to the operator");
        tasks.push(tokio::spawn(usage::report_loop(
            aggregator,
            target,
            options.node_name.clone(),
            options.usage_every,
            shutdown.clone(),
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
    stop_tailing.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = tail_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    tracing::info!("mcp-ledger node agent stopped");
    Ok(())
}
