//! The node agent's file sinks: every relayed OTLP log record — a sidecar's audit record
//! or a container log line, after enrichment — written as one JSON line and/or one CSV row.
//!
//! A JSON line is the log record flattened: `timestamp` and `observedTimestamp` (RFC 3339),
//! `severity`, `severityNumber`, `eventName`, `traceId`, `spanId` (hex), `resource` and
//! `attributes` (objects of the OTLP attributes, values as JSON) and `body`. A CSV row has
//! the columns of [`COLUMNS`]: the same time and severity fields and the attributes that
//! say who did what, looked up on the record first and then on its resource; the body is
//! never in CSV.
//!
//! The buffer delivers at least once: a request is written again only when the node agent
//! restarts before the collector (if any) accepted it. Within one run each sink remembers
//! the last buffer position it wrote, so a collector that is down does not duplicate lines.

use std::io::Write;

use mcp_ledger_crds::record::attr::{self, resource};
use prost::Message as _;
use serde_json::{Map, Value};

use crate::export::csv::{has_rows, push_row};
use crate::export::proto::{AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord, any_value};
use crate::mcp::trace::to_hex as hex;

/// CSV columns after the fixed ones (`timestamp` … `spanId`): attribute keys, except
/// `k8s.workload`, which is the owner workload as `<kind>/<name>`.
pub const COLUMNS: &[&str] = &[
    "timestamp",
    "observedTimestamp",
    "severity",
    "eventName",
    "traceId",
    "spanId",
    resource::K8S_NAMESPACE_NAME,
    resource::K8S_POD_NAME,
    resource::K8S_NODE_NAME,
    resource::K8S_CONTAINER_NAME,
    WORKLOAD,
    attr::SERVER_NAME,
    attr::SERVER_NAMESPACE,
    crate::node::enrich::SERVER_APPROVAL,
    attr::EVENT_TYPE,
    attr::MCP_METHOD_NAME,
    attr::GEN_AI_TOOL_NAME,
    attr::TOOL_ID,
    attr::USER_ID,
    attr::TEAM_ID,
    attr::ORG_ID,
    attr::IDENTITY_SOURCE,
    attr::CORRELATION_ID,
    attr::JSONRPC_REQUEST_ID,
    attr::REQUEST_UID,
    attr::MCP_SESSION_ID,
    attr::MCP_PROTOCOL_VERSION,
    attr::CLIENT_ADDRESS,
    attr::DIRECTION,
    attr::TRANSPORT,
    attr::HTTP_RESPONSE_STATUS_CODE,
    attr::RESPONSE_TYPE,
    attr::DURATION_NS,
    attr::BODY_BYTES,
    attr::BODY_TRUNCATED,
    attr::REDACTION_KINDS,
    attr::REDACTION_PAYLOAD_DROPPED,
    attr::ERROR_TYPE,
    attr::RPC_RESPONSE_STATUS_CODE,
    attr::ERROR_MESSAGE,
    attr::POLICY_CONTROL,
    attr::POLICY_ACTION,
    attr::POLICY_REASON,
    attr::TOOL_CHANGE,
    LOG_IOSTREAM,
];

/// The CSV column of the owner workload.
pub const WORKLOAD: &str = "k8s.workload";
/// Which stream a container log line came from (`stdout`, `stderr`).
pub const LOG_IOSTREAM: &str = "log.iostream";

/// Resource attributes naming the owner workload, and the kind they stand for.
const WORKLOAD_KEYS: &[(&str, &str)] = &[
    ("k8s.deployment.name", "deployment"),
    ("k8s.statefulset.name", "statefulset"),
    ("k8s.daemonset.name", "daemonset"),
    ("k8s.replicaset.name", "replicaset"),
    ("k8s.cronjob.name", "cronjob"),
    ("k8s.job.name", "job"),
];

/// An OTLP value as JSON (key/value lists become objects, bytes lower-case hex).
pub fn json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(object(&l.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
    }
}

fn object(attrs: &[KeyValue]) -> Map<String, Value> {
    attrs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json))).collect()
}

fn time(nanos: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map(|t| t.to_string()).unwrap_or_default()
}

fn text(v: &AnyValue) -> String {
    match json(v) {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One log record under its resource as a JSON object.
pub fn flat(record: &LogRecord, resource: &[KeyValue]) -> Value {
    let mut o = Map::new();
    o.insert("timestamp".into(), Value::String(time(record.time_unix_nano)));
    o.insert("observedTimestamp".into(), Value::String(time(record.observed_time_unix_nano)));
    o.insert("severity".into(), Value::String(record.severity_text.clone()));
    o.insert("severityNumber".into(), Value::from(record.severity_number));
    o.insert("eventName".into(), Value::String(record.event_name.clone()));
    if !record.trace_id.is_empty() {
        o.insert("traceId".into(), Value::String(hex(&record.trace_id)));
    }
    if !record.span_id.is_empty() {
        o.insert("spanId".into(), Value::String(hex(&record.span_id)));
    }
    o.insert("resource".into(), Value::Object(object(resource)));
    o.insert("attributes".into(), Value::Object(object(&record.attributes)));
    if let Some(body) = &record.body {
        o.insert("body".into(), json(body));
    }
    Value::Object(o)
}

/// The cells of one log record, in [`COLUMNS`] order.
pub fn row(record: &LogRecord, resource: &[KeyValue]) -> Vec<String> {
    let find = |key: &str| {
        record.attributes.iter().chain(resource).find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).map(text)
    };
    let mut cells = vec![
        time(record.time_unix_nano),
        time(record.observed_time_unix_nano),
        record.severity_text.clone(),
        record.event_name.clone(),
        hex(&record.trace_id),
        hex(&record.span_id),
    ];
    for key in &COLUMNS[cells.len()..] {
        let cell = if *key == WORKLOAD {
            WORKLOAD_KEYS.iter().find_map(|(k, kind)| find(k).map(|name| format!("{kind}/{name}")))
        } else {
            find(key)
        };
        cells.push(cell.unwrap_or_default());
    }
    cells
}

enum Format {
    JsonLines,
    Csv { wrote_header: bool },
}

impl Format {
    /// Metric label.
    fn name(&self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv { .. } => "csv",
        }
    }
}

struct FileSink {
    format: Format,
    out: Box<dyn Write + Send>,
    /// The buffer position after the last request written.
    written: u64,
}

/// The configured file sinks of a node agent.
pub struct FileSinks {
    sinks: Vec<FileSink>,
    buf: Vec<u8>,
}

impl FileSinks {
    /// Opens the sinks (`-` is stdout; files are appended to, a CSV header is written when
    /// the file is new or empty). `None` when neither is set.
    pub fn open(jsonl: Option<&str>, csv: Option<&str>) -> std::io::Result<Option<Self>> {
        let mut sinks = Vec::new();
        if let Some(path) = jsonl {
            sinks.push(FileSink { format: Format::JsonLines, out: crate::export::open_output(path)?, written: 0 });
        }
        if let Some(path) = csv {
            sinks.push(FileSink {
                format: Format::Csv { wrote_header: has_rows(path) },
                out: crate::export::open_output(path)?,
                written: 0,
            });
        }
        Ok((!sinks.is_empty()).then(|| Self { sinks, buf: Vec::new() }))
    }

    /// Writes the buffered request at position `seq` to every sink that has not written it
    /// yet, and flushes. Returns the number of log records of the request and the sinks
    /// written; an error names the sink that failed. A request that does not decode (never
    /// stored by this agent) is skipped.
    pub fn write(
        &mut self,
        seq: u64,
        payload: &[u8],
    ) -> Result<(usize, Vec<&'static str>), (&'static str, std::io::Error)> {
        let request = match ExportLogsServiceRequest::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, seq, "a buffered request does not decode; not written to the file sinks");
                return Ok((0, Vec::new()));
            }
        };
        let records: Vec<(&LogRecord, &[KeyValue])> = request
            .resource_logs
            .iter()
            .flat_map(|rl| {
                let resource = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
                rl.scope_logs.iter().flat_map(|s| s.log_records.iter()).map(move |r| (r, resource))
            })
            .collect();
        let mut written = Vec::new();
        for sink in &mut self.sinks {
            if sink.written > seq {
                continue;
            }
            let name = sink.format.name();
            self.buf.clear();
            let fail = |e: std::io::Error| (name, e);
            match &mut sink.format {
                Format::JsonLines => {
                    for (record, resource) in &records {
                        serde_json::to_writer(&mut self.buf, &flat(record, resource))
                            .map_err(|e| fail(std::io::Error::other(e)))?;
                        self.buf.push(b'\n');
                    }
                }
                Format::Csv { wrote_header } => {
                    if !*wrote_header {
                        push_row(&mut self.buf, COLUMNS);
                    }
                    for (record, resource) in &records {
                        push_row(&mut self.buf, &row(record, resource));
                    }
                }
            }
            sink.out.write_all(&self.buf).map_err(fail)?;
            sink.out.flush().map_err(fail)?;
            if let Format::Csv { wrote_header } = &mut sink.format {
                *wrote_header = true;
            }
            sink.written = seq + 1;
            written.push(name);
        }
        if self.buf.capacity() > 4 * 1024 * 1024 {
            self.buf = Vec::new();
        }
        Ok((records.len(), written))
    }
}

#[cfg(test)]
mod tests;
