//! The operator's Prometheus metrics, in one place. Labels are bounded: controller names,
//! webhook paths, error kinds and outcomes are fixed sets; no object names.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for admission requests, in seconds (the API server waits at most 10 s).
pub const WEBHOOK_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// All operator metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by controller.
    pub reconciles: IntCounterVec,
    /// Failed reconciles by controller and error kind.
    pub reconcile_errors: IntCounterVec,
    /// Admission requests by webhook and outcome (`allowed`, `patched`, `injected`, `not_injected`, `denied`, `invalid`).
    pub webhook_requests: IntCounterVec,
    /// Admission request latency by webhook.
    pub webhook_duration: HistogramVec,
    /// Pod injection decisions by outcome.
    pub injections: IntCounterVec,
    /// Webhook certificate reloads by result (`ok`, `error`).
    pub cert_reloads: IntCounterVec,
    /// McpServers by approval state.
    pub servers: IntGaugeVec,
    /// 1 while this replica holds the leader Lease and runs the controllers.
    pub leader: IntGauge,
    /// McpServers whose ToolsChanged condition is True (a tool changed since approval).
    pub servers_tools_changed: IntGauge,
    /// 1 for each Approved McpServer, 0 for the others (labels: namespace, server — bounded
    /// by the McpServers an administrator declared).
    pub server_approved: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let reconciles = counter("mcp_ledger_operator_reconciles_total", "Reconciles by controller.", &["controller"]);
        let reconcile_errors = counter(
            "mcp_ledger_operator_reconcile_errors_total",
            "Failed reconciles by controller and error kind.",
            &["controller", "kind"],
        );
        let webhook_requests = counter(
            "mcp_ledger_operator_webhook_requests_total",
            "Admission requests by webhook and outcome.",
            &["webhook", "outcome"],
        );
        let injections =
            counter("mcp_ledger_operator_injections_total", "Pod injection decisions by outcome.", &["outcome"]);
        let cert_reloads = counter(
            "mcp_ledger_operator_certificate_reloads_total",
            "Webhook certificate reloads by result.",
            &["result"],
        );
        let webhook_duration = HistogramVec::new(
            HistogramOpts::new("mcp_ledger_operator_webhook_duration_seconds", "Admission request latency by webhook.")
                .buckets(WEBHOOK_BUCKETS.to_vec()),
            &["webhook"],
        )
        .expect("valid metric");
        registry.register(Box::new(webhook_duration.clone())).expect("unique metric");
        let servers = IntGaugeVec::new(
            Opts::new("mcp_ledger_operator_servers", "McpServers in the inventory by approval state."),
            &["approval"],
        )
        .expect("valid metric");
        registry.register(Box::new(servers.clone())).expect("unique metric");
        let leader =
            IntGauge::new("mcp_ledger_operator_leader", "1 while this replica leads and runs the controllers.")
                .expect("valid metric");
        registry.register(Box::new(leader.clone())).expect("unique metric");
        let servers_tools_changed = IntGauge::new(
            "mcp_ledger_operator_servers_tools_changed",
            "McpServers with a tool that changed, appeared or disappeared since approval.",
        )
        .expect("valid metric");
        registry.register(Box::new(servers_tools_changed.clone())).expect("unique metric");
        let server_approved = IntGaugeVec::new(
            Opts::new("mcp_ledger_operator_server_approved", "1 when the McpServer is Approved, 0 otherwise."),
            &["namespace", "server"],
        )
        .expect("valid metric");
        registry.register(Box::new(server_approved.clone())).expect("unique metric");
        Self {
            registry,
            reconciles,
            reconcile_errors,
            webhook_requests,
            webhook_duration,
            injections,
            cert_reloads,
            servers,
            leader,
            servers_tools_changed,
            server_approved,
        }
    }

    /// The names of every metric family this registry can export (also those without a
    /// sample yet), as dashboards and alert rules may use them.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 10] = [
            &self.reconciles,
            &self.reconcile_errors,
            &self.webhook_requests,
            &self.webhook_duration,
            &self.injections,
            &self.cert_reloads,
            &self.servers,
            &self.leader,
            &self.servers_tools_changed,
            &self.server_approved,
        ];
        collectors.iter().flat_map(|c| c.desc()).map(|d| d.fq_name.clone()).collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding never fails");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
