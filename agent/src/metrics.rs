//! The agent's Prometheus metrics, in one place. Every label is bounded: server name
//! (configuration), method (known MCP methods or `other`), tool (names the server listed,
//! up to a cap, else `other`), outcome, exporter, reason.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets of the OpenTelemetry MCP `mcp.server.operation.duration` histogram, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// The agent's handle on its metrics: one shared set, so a clone (every response body
/// holds one) is one reference count, not one per metric.
#[derive(Clone, Default)]
pub struct Metrics(Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        Self(Arc::new(MetricSet::new()))
    }
}

/// All agent metrics.
pub struct MetricSet {
    registry: Registry,
    /// MCP requests by server, method, tool and outcome (`success`, `error`, `tool_error`, `unanswered`).
    pub requests: IntCounterVec,
    /// MCP request duration (request to response) by server and method.
    pub duration: HistogramVec,
    /// Records handed to each exporter successfully.
    pub records_exported: IntCounterVec,
    /// Records dropped, by reason and whether the drop was intended (policy) or not (overload, failure).
    pub records_dropped: IntCounterVec,
    /// Captured messages waiting for the record processor.
    pub queue_depth: IntGauge,
    /// MCP sessions currently open.
    pub active_sessions: IntGauge,
    /// Bodies that could not be parsed as MCP, by reason.
    pub parse_errors: IntCounterVec,
    /// Upstream failures (connection refused, timeouts) seen by the proxy.
    pub upstream_errors: IntCounterVec,
    /// Redactions by kind.
    pub redactions: IntCounterVec,
    /// HTTP requests through the proxy by HTTP method and status class.
    pub http_requests: IntCounterVec,
    /// Export attempts that failed and were retried, by exporter.
    pub export_retries: IntCounterVec,
    /// Reloads of the configuration file's redaction policy by result (`ok`, `error`).
    pub config_reloads: IntCounterVec,
    /// Node agent: export requests received from sidecars by protocol and result
    /// (`stored`, `full`, `invalid`, `failed`).
    pub node_received: IntCounterVec,
    /// Node agent: bytes in the disk buffer.
    pub buffer_bytes: IntGauge,
    /// Node agent: requests in the disk buffer not yet accepted by the collector (the lag).
    pub buffer_pending: IntGauge,
    /// Node agent: the disk buffer's size limit in bytes.
    pub buffer_max_bytes: IntGauge,
    /// Governance decisions that denied (enforced or observed), by server, control
    /// (`access`, `tool-pinning`, `server-version`), policy, rule, action and whether enforced.
    pub policy_denials: IntCounterVec,
    /// Tool definitions that differ from the approved baseline, by server and change.
    pub tool_changes: IntCounterVec,
    /// Build information (always 1).
    pub build_info: IntGaugeVec,
}

impl MetricSet {
    fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mcp_ledger_requests_total",
                "MCP requests through the agent by server, method, tool and outcome.",
            ),
            &["server", "method", "tool", "outcome"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "mcp_ledger_request_duration_seconds",
                "Time from an MCP request to its response, as seen by the agent.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["server", "method"],
        )
        .expect("valid metric");
        let records_exported = IntCounterVec::new(
            Opts::new("mcp_ledger_records_exported_total", "Audit records delivered, by exporter."),
            &["exporter"],
        )
        .expect("valid metric");
        let records_dropped = IntCounterVec::new(
            Opts::new(
                "mcp_ledger_records_dropped_total",
                "Audit records (or captured messages) dropped, by reason and whether intended.",
            ),
            &["reason", "intended"],
        )
        .expect("valid metric");
        let queue_depth =
            IntGauge::new("mcp_ledger_queue_depth", "Captured messages waiting for the record processor.")
                .expect("valid metric");
        let active_sessions =
            IntGauge::new("mcp_ledger_active_sessions", "MCP sessions currently open.").expect("valid metric");
        let parse_errors = IntCounterVec::new(
            Opts::new("mcp_ledger_parse_errors_total", "Bodies that could not be parsed as MCP, by reason."),
            &["reason"],
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "mcp_ledger_upstream_errors_total",
                "Requests the upstream MCP server could not take, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let redactions = IntCounterVec::new(
            Opts::new("mcp_ledger_redactions_total", "Values redacted from records, by kind."),
            &["kind"],
        )
        .expect("valid metric");
        let http_requests = IntCounterVec::new(
            Opts::new("mcp_ledger_http_requests_total", "HTTP requests through the proxy by method and status class."),
            &["method", "status_class"],
        )
        .expect("valid metric");
        let export_retries = IntCounterVec::new(
            Opts::new("mcp_ledger_export_retries_total", "Failed export attempts that were retried, by exporter."),
            &["exporter"],
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "mcp_ledger_config_reloads_total",
                "Reloads of the redaction policy from the configuration file, by result (error: the last good policy stays).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let node_received = IntCounterVec::new(
            Opts::new(
                "mcp_ledger_node_received_total",
                "Node agent: OTLP export requests received from sidecars, by protocol and result.",
            ),
            &["protocol", "result"],
        )
        .expect("valid metric");
        let buffer_bytes =
            IntGauge::new("mcp_ledger_buffer_bytes", "Node agent: bytes in the disk buffer.").expect("valid metric");
        let buffer_pending = IntGauge::new(
            "mcp_ledger_buffer_pending_requests",
            "Node agent: requests in the disk buffer that the collector has not accepted yet.",
        )
        .expect("valid metric");
        let buffer_max_bytes =
            IntGauge::new("mcp_ledger_buffer_max_bytes", "Node agent: the disk buffer's size limit in bytes.")
                .expect("valid metric");
        let policy_denials = IntCounterVec::new(
            Opts::new(
                "mcp_ledger_policy_denials_total",
                "Governance denials (calls refused, tools hidden, or what observe mode would have refused), by server, control, policy, rule, action and enforced.",
            ),
            &["server", "control", "policy", "rule", "action", "enforced"],
        )
        .expect("valid metric");
        let tool_changes = IntCounterVec::new(
            Opts::new(
                "mcp_ledger_tool_definition_changes_total",
                "Tool definitions seen to differ from the approved baseline (each change counted once), by server and change (changed, added, removed).",
            ),
            &["server", "change"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("mcp_ledger_build_info", "Build information of the agent (always 1)."),
            &["version", "mode"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(records_exported.clone()),
            Box::new(records_dropped.clone()),
            Box::new(queue_depth.clone()),
            Box::new(active_sessions.clone()),
            Box::new(parse_errors.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(redactions.clone()),
            Box::new(http_requests.clone()),
            Box::new(export_retries.clone()),
            Box::new(config_reloads.clone()),
            Box::new(node_received.clone()),
            Box::new(buffer_bytes.clone()),
            Box::new(buffer_pending.clone()),
            Box::new(buffer_max_bytes.clone()),
            Box::new(policy_denials.clone()),
            Box::new(tool_changes.clone()),
            Box::new(build_info.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            registry,
            requests,
            duration,
            records_exported,
            records_dropped,
            queue_depth,
            active_sessions,
            parse_errors,
            upstream_errors,
            redactions,
            http_requests,
            export_retries,
            config_reloads,
            node_received,
            buffer_bytes,
            buffer_pending,
            buffer_max_bytes,
            policy_denials,
            tool_changes,
            build_info,
        }
    }

    /// Counts a drop.
    pub fn dropped(&self, reason: &str, intended: bool) {
        self.dropped_many(reason, intended, 1);
    }

    /// Counts `n` drops of one reason (one label lookup for all of them).
    pub fn dropped_many(&self, reason: &str, intended: bool, n: u64) {
        self.records_dropped.with_label_values(&[reason, if intended { "true" } else { "false" }]).inc_by(n);
    }

    /// The names of every metric family this registry can export (also those without a
    /// sample yet), as dashboards and alert rules may use them.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 19] = [
            &self.requests,
            &self.duration,
            &self.records_exported,
            &self.records_dropped,
            &self.queue_depth,
            &self.active_sessions,
            &self.parse_errors,
            &self.upstream_errors,
            &self.redactions,
            &self.http_requests,
            &self.export_retries,
            &self.config_reloads,
            &self.node_received,
            &self.buffer_bytes,
            &self.buffer_pending,
            &self.buffer_max_bytes,
            &self.policy_denials,
            &self.tool_changes,
            &self.build_info,
        ];
        collectors.iter().flat_map(|c| c.desc()).map(|d| d.fq_name.clone()).collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for MetricSet {
    fn default() -> Self {
        Self::new()
    }
}
