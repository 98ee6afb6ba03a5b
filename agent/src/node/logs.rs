//! The MCP server containers' own stdout/stderr, tailed from the node's CRI log files
//! ([`super::tail`]), redacted with their McpServer's effective policy
//! ([`super::policies`]; JSON lines field by field, other lines as text), turned into OTLP log records and put into the disk buffer next to the sidecars'
//! records. Tail positions are saved only after the lines are in the buffer, so a restart
//! neither skips nor repeats them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::json::Node;
use mcp_ledger_crds::record::attr::{self, resource};
use prost::Message as _;

use super::buffer::DiskBuffer;
use super::enrich::{Cluster, IdentityLabels, enrich};
use super::policies::Policies;
use super::tail::{Position, Source, Tailed, Tailer};
use crate::export::otlp::any_value;
use crate::export::proto::{
    self, AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs,
};
use crate::metrics::Metrics;
use crate::redact::Redactor;

/// Name of the positions file in the buffer folder.
pub const POSITIONS_FILE: &str = "tail-positions.json";

fn text(v: impl Into<String>) -> Option<AnyValue> {
    Some(proto::string(v))
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.to_owned(), value }
}

/// One tailed line as a redacted OTLP log record.
pub fn log_record(t: &Tailed, redactor: &Redactor) -> LogRecord {
    let mut summary = BTreeMap::new();
    let body = match Node::parse(t.line.content.as_bytes()) {
        Ok(mut v @ Node::Object(_)) => {
            let outcome = redactor.node(&mut v, &mut summary);
            if outcome.drop_payload.is_some() { text("[REDACTED:payload]") } else { Some(any_value(&v)) }
        }
        _ => text(redactor.string(&t.line.content, &mut summary).unwrap_or_else(|| t.line.content.clone())),
    };
    let mut attributes =
        vec![kv(attr::EVENT_TYPE, text("container-log")), kv("log.iostream", text(t.line.stream.as_str()))];
    if t.line.truncated {
        attributes
            .push(kv(attr::BODY_TRUNCATED, Some(AnyValue { value: Some(proto::any_value::Value::BoolValue(true)) })));
    }
    if !summary.is_empty() {
        attributes.push(kv(attr::REDACTION_KINDS, text(serde_json::to_string(&summary).unwrap_or_default())));
    }
    let nanos = u64::try_from(t.line.time.as_nanosecond()).unwrap_or(0);
    LogRecord {
        time_unix_nano: nanos,
        observed_time_unix_nano: u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0),
        severity_number: if t.line.stream == super::cri::Stream::Stderr { 13 } else { 9 },
        severity_text: if t.line.stream == super::cri::Stream::Stderr { "WARN".into() } else { "INFO".into() },
        body,
        attributes,
        event_name: "container-log".into(),
        ..Default::default()
    }
}

/// One export request per container for a batch of tailed lines; `redactor` gives the
/// redactor of a container's lines.
pub fn requests(lines: &[Tailed], mut redactor: impl FnMut(&Source) -> Arc<Redactor>) -> Vec<ExportLogsServiceRequest> {
    let mut by_source: BTreeMap<&Source, (Arc<Redactor>, Vec<LogRecord>)> = BTreeMap::new();
    for t in lines {
        let (r, records) = by_source.entry(&t.source).or_insert_with(|| (redactor(&t.source), Vec::new()));
        records.push(log_record(t, r));
    }
    by_source
        .into_iter()
        .map(|(s, (_, records))| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv(resource::K8S_NAMESPACE_NAME, text(&s.namespace)),
                        kv(resource::K8S_POD_NAME, text(&s.pod)),
                        kv(resource::K8S_POD_UID, text(&s.uid)),
                        kv(resource::K8S_CONTAINER_NAME, text(&s.container)),
                        kv(resource::SERVICE_NAME, text("mcp-ledger-node")),
                    ],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }],
        })
        .collect()
}

/// Reads saved positions (none when missing or unreadable).
pub fn load_positions(dir: &Path) -> BTreeMap<PathBuf, Position> {
    std::fs::read(dir.join(POSITIONS_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save_positions(dir: &Path, positions: &BTreeMap<PathBuf, Position>) -> std::io::Result<()> {
    let tmp = dir.join(format!("{POSITIONS_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(positions).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, dir.join(POSITIONS_FILE))
}

/// The redactor for a container's lines: its pod's McpServer's effective policy.
fn redactor_for(source: &Source, cluster: &RwLock<Cluster>, policies: &Mutex<Policies>) -> Arc<Redactor> {
    let server = cluster.read().expect("cluster lock").pods.get(&source.uid).and_then(|p| p.server.clone());
    policies.lock().expect("policies lock").redactor(&source.namespace, server.as_deref().unwrap_or_default())
}

/// One round: read new lines, redact, enrich, buffer, then save the positions. Returns the
/// number of lines buffered; none until the policies are synced (the positions wait).
pub fn tail_once(
    tailer: &mut Tailer,
    policies: &Mutex<Policies>,
    cluster: &RwLock<Cluster>,
    labels: &IdentityLabels,
    buffer: &Mutex<DiskBuffer>,
    state_dir: &Path,
) -> std::io::Result<usize> {
    if !policies.lock().expect("policies lock").synced() {
        return Ok(0);
    }
    let lines = tailer.poll()?;
    if !lines.is_empty() {
        let mut payloads = Vec::new();
        for mut request in requests(&lines, |s| redactor_for(s, cluster, policies)) {
            enrich(&mut request, &cluster.read().expect("cluster lock"), labels);
            payloads.push(request.encode_to_vec());
        }
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        // Block policy and a full buffer: keep the position, so the lines are read again.
        buffer.lock().expect("buffer lock").append(&refs).map_err(std::io::Error::other)?;
    }
    save_positions(state_dir, &tailer.positions())?;
    Ok(lines.len())
}

/// Tails the MCP server containers of the node (pods that carry the agent, other than the
/// agent's own container) on a thread of its own until `stop`.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    root: PathBuf,
    state_dir: PathBuf,
    policies: Arc<Mutex<Policies>>,
    cluster: Arc<RwLock<Cluster>>,
    labels: IdentityLabels,
    buffer: Arc<Mutex<DiskBuffer>>,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let filter_cluster = cluster.clone();
        let mut tailer = Tailer::new(&root, load_positions(&state_dir)).with_filter(move |s: &Source| {
            s.container != "mcp-ledger-agent"
                && filter_cluster.read().expect("cluster lock").pods.get(&s.uid).is_some_and(|p| p.server.is_some())
        });
        while !stop.load(Ordering::Relaxed) {
            match tail_once(&mut tailer, &policies, &cluster, &labels, &buffer, &state_dir) {
                Ok(n) => metrics.node_received.with_label_values(&["container-log", "stored"]).inc_by(n as u64),
                Err(e) => {
                    metrics.node_received.with_label_values(&["container-log", "failed"]).inc();
                    tracing::warn!(error = %e, "tailing container logs failed; retrying");
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

#[cfg(test)]
mod tests;
