//! `mcp-ledger-operator`: flags, logging, signals and wiring. Everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};
use futures::FutureExt;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use mcp_ledger_crds::config::OtlpProtocol;
use mcp_ledger_operator::api::kube_backend::KubeBackend;
use mcp_ledger_operator::api::{self, InventoryApi};
use mcp_ledger_operator::cache::Caches;
use mcp_ledger_operator::controller::{self, Context, Settings};
use mcp_ledger_operator::inject::{InjectSettings, RejectedPods};
use mcp_ledger_operator::leader::LeaseLock;
use mcp_ledger_operator::metrics::Metrics;
use mcp_ledger_operator::render::RenderSettings;
use mcp_ledger_operator::webhook::{self, CertStore, Webhook};

/// The mcp-ledger operator: keeps the McpServer inventory (status), applies reviews,
/// renders agent configuration, records removals, and serves the admission webhooks that
/// record who added/reviewed/removed servers, check policies and inject the agent sidecar.
///
/// Every replica serves the webhooks; the replica that holds the leader Lease runs the
/// controllers. Metrics and health are on --admin-listen (/metrics, /healthz, /readyz).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Namespace the operator runs in: the cluster default McpRedactionPolicy, the
    /// removal history and the leader Lease live here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "mcp-ledger")]
    namespace: String,

    /// This replica's identity in the leader Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// The operator's own username, which may edit the annotations users may not
    /// (default: system:serviceaccount:<namespace>:<--service-account>).
    #[arg(long, env = "MCP_LEDGER_OPERATOR_USER")]
    operator_user: Option<String>,

    /// The operator's service account name (used to derive --operator-user).
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "mcp-ledger-operator")]
    service_account: String,

    /// HTTPS address of the admission webhooks.
    #[arg(long, default_value = "0.0.0.0:8443")]
    webhook_listen: SocketAddr,

    /// PEM certificate chain of the webhook (from the mounted Secret; reloaded on change).
    #[arg(long, default_value = "/etc/mcp-ledger/tls/tls.crt")]
    tls_cert: PathBuf,

    /// PEM private key of the webhook.
    #[arg(long, default_value = "/etc/mcp-ledger/tls/tls.key")]
    tls_key: PathBuf,

    /// Seconds between checks of the certificate files for a rotation.
    #[arg(long, default_value_t = 10)]
    cert_reload_seconds: u64,

    /// HTTPS address of the inventory API (/v1/inventory, /v1/inventory.csv, /v1/history,
    /// POST /v1/usage), served with the webhook certificate.
    #[arg(long, default_value = "0.0.0.0:8444")]
    api_listen: SocketAddr,

    /// Users allowed to POST usage reports (repeatable; default:
    /// system:serviceaccount:<namespace>:mcp-ledger-node, the node agents).
    #[arg(long = "usage-user")]
    usage_users: Vec<String>,

    /// Seconds the inventory API keeps the cluster's answer that a token is valid and that
    /// its user may list McpServers (TokenReview, SubjectAccessReview); refusals are kept
    /// for at most 10 s, errors never. 0 asks the cluster on every request.
    #[arg(long, default_value_t = 60)]
    api_auth_cache_seconds: u64,

    /// Plain-HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    admin_listen: SocketAddr,

    /// Run the controllers only while holding the leader Lease (needed with 2+ replicas).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,

    /// Name of the leader Lease.
    #[arg(long, default_value = "mcp-ledger-operator")]
    lease_name: String,

    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,

    /// Agent image injected into MCP server pods.
    #[arg(long, env = "MCP_LEDGER_AGENT_IMAGE", default_value = "mcp-ledger/agent:latest")]
    agent_image: String,

    /// imagePullPolicy of the injected agent (Always, IfNotPresent, Never).
    #[arg(long)]
    agent_pull_policy: Option<String>,

    /// Inject the agent as a native sidecar (init container with restartPolicy Always,
    /// Kubernetes 1.29+). Set false for clusters without native sidecars.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    native_sidecar: bool,

    /// Port of the agent's proxy in the pod (it takes over the name of the MCP port).
    #[arg(long, default_value_t = 15080)]
    agent_proxy_port: i32,

    /// Port of the agent's admin listener in the pod.
    #[arg(long, default_value_t = 15090)]
    agent_admin_port: i32,

    /// What happens to new pods of a rejected McpServer.
    #[arg(long, value_enum, default_value = "inject")]
    rejected_pods: RejectedPods,

    /// OTLP endpoint the injected agents export to (for example the node agent's
    /// node-local Service). Without it agents write records to stdout for the node agent.
    #[arg(long)]
    sidecar_otlp_endpoint: Option<String>,

    /// OTLP protocol for --sidecar-otlp-endpoint.
    #[arg(long, value_enum, default_value = "grpc")]
    sidecar_otlp_protocol: Protocol,

    /// Also write records to the agents' stdout when --sidecar-otlp-endpoint is set.
    #[arg(long)]
    sidecar_stdout: bool,

    /// Most removal records kept in the inventory history.
    #[arg(long, default_value_t = 1000)]
    history_limit: usize,

    /// Seconds between full re-reconciles of every object.
    #[arg(long, default_value_t = 300)]
    resync_seconds: u64,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "MCP_LEDGER_LOG", default_value = "info")]
    log: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    mcp_ledger_agent::process::init_logging(&args.log).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        mcp_ledger_agent::process::shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
    let render: mcp_ledger_agent::admin::RenderMetrics = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    tokio::spawn(mcp_ledger_agent::admin::serve(admin, render, ready.clone(), stop.clone()));

    let certs = CertStore::load(args.tls_cert.clone(), args.tls_key.clone()).with_context(|| {
        format!(
            "loading the webhook certificate (--tls-cert {}, --tls-key {}); the chart mounts it from a Secret",
            args.tls_cert.display(),
            args.tls_key.display()
        )
    })?;
    tokio::spawn(certs.clone().watch(
        Duration::from_secs(args.cert_reload_seconds.max(1)),
        metrics.clone(),
        stop.clone(),
    ));

    let client = Client::try_default().await.context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("mcp-ledger-operator-{}", std::process::id()))
    });
    let reporter = Reporter { controller: "mcp-ledger-operator".into(), instance: Some(identity.clone()) };
    let recorder = Recorder::new(client.clone(), reporter);
    let caches = Caches::start(client.clone());

    let operator_user = args
        .operator_user
        .clone()
        .unwrap_or_else(|| format!("system:serviceaccount:{}:{}", args.namespace, args.service_account));
    let inject = InjectSettings {
        image: args.agent_image.clone(),
        image_pull_policy: args.agent_pull_policy.clone(),
        native_sidecar: args.native_sidecar,
        proxy_port: args.agent_proxy_port,
        admin_port: args.agent_admin_port,
        rejected: args.rejected_pods,
        ..Default::default()
    };
    let effects: webhook::EffectSink = {
        let client = client.clone();
        let recorder = recorder.clone();
        Arc::new(move |effect| controller::carry_out(client.clone(), recorder.clone(), effect).boxed())
    };
    let app = Arc::new(Webhook {
        lookup: Arc::new(caches.clone()),
        inject,
        operator_user,
        metrics: metrics.clone(),
        effects,
    });
    let listener = tokio::net::TcpListener::bind(args.webhook_listen)
        .await
        .with_context(|| format!("binding --webhook-listen {}", args.webhook_listen))?;
    tokio::time::timeout(Duration::from_secs(60), caches.ready())
        .await
        .context("the McpServer and McpRedactionPolicy caches did not fill within 60 s: are the CRDs installed?")?;
    let api_listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding --api-listen {}", args.api_listen))?;
    let tls = webhook::tls_config(certs);
    let webhook_task = tokio::spawn(webhook::serve(listener, tls.clone(), webhook::handler(app), stop.clone()));
    let usage_users = if args.usage_users.is_empty() {
        vec![format!("system:serviceaccount:{}:mcp-ledger-node", args.namespace)]
    } else {
        args.usage_users.clone()
    };
    let kube_backend =
        KubeBackend { client: client.clone(), caches: caches.clone(), namespace: args.namespace.clone() };
    let backend: Arc<dyn api::Backend> = if args.api_auth_cache_seconds == 0 {
        Arc::new(kube_backend)
    } else {
        let allowed = Duration::from_secs(args.api_auth_cache_seconds);
        let ttl = api::cached::Ttl { allowed, denied: allowed.min(Duration::from_secs(10)), ..Default::default() };
        Arc::new(api::cached::Cached::new(kube_backend, ttl))
    };
    let inventory = Arc::new(InventoryApi { backend, usage_users });
    let api_task = tokio::spawn(webhook::serve(api_listener, tls, api::handler(inventory), stop.clone()));
    tokio::spawn(caches.clone().count_servers(metrics.clone(), Duration::from_secs(15)));
    ready.store(true, Ordering::Relaxed);
    tracing::info!(webhook = %args.webhook_listen, api = %args.api_listen, admin = %args.admin_listen, identity = %identity, "mcp-ledger operator serving");

    let settings = Settings {
        namespace: args.namespace.clone(),
        render: RenderSettings {
            otlp_endpoint: args.sidecar_otlp_endpoint.clone(),
            otlp_protocol: match args.sidecar_otlp_protocol {
                Protocol::Grpc => OtlpProtocol::Grpc,
                Protocol::HttpProtobuf => OtlpProtocol::HttpProtobuf,
            },
            stdout: args.sidecar_stdout,
        },
        history_limit: args.history_limit,
        resync: Duration::from_secs(args.resync_seconds.max(10)),
    };
    let ctx = Context::new(client.clone(), recorder, metrics.clone(), settings);
    let mut controllers_stop = stop.clone();
    let controllers = controller::run(ctx, async move {
        let _ = controllers_stop.wait_for(|s| *s).await;
    });
    let outcome = if args.leader_election {
        let lock = LeaseLock::new(
            client,
            &args.namespace,
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_seconds.max(3)),
        );
        lock.run(controllers, &metrics, stop.clone()).await
    } else {
        metrics.leader.set(1);
        controllers.await;
        Ok(())
    };
    ready.store(false, Ordering::Relaxed);
    webhook_task.abort();
    api_task.abort();
    match outcome {
        Ok(()) => {
            tracing::info!("mcp-ledger operator stopped");
            Ok(())
        }
        // Exit so that Kubernetes restarts the replica as a follower.
        Err(reason) => anyhow::bail!(reason),
    }
}
