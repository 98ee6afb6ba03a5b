//! Usage per McpServer, aggregated by the node agent from the records its sidecars send,
//! and reported to the operator (`POST /v1/usage`), which merges it into McpServer status:
//! last used at/by, error responses with the last error, sanitized messages, and the
//! server's version and protocol revision. Counts are deltas since the last report that
//! the operator accepted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use mcp_ledger_crds::record::attr;
use mcp_ledger_crds::server::{ServerInfo, ToolFingerprint};
use mcp_ledger_crds::usage::{MAX_SERVERS_PER_REPORT, ServerUsage, Time, UsageReport};
use tokio::sync::watch;

use crate::export::proto::{ExportLogsServiceRequest, KeyValue, find_str as find};

/// Longest error message kept (the status bound).
const MAX_MESSAGE: usize = 1024;

fn time(nanos: u64) -> Option<Time> {
    Timestamp::from_nanosecond(i128::from(nanos)).ok().filter(|t| *t > Timestamp::UNIX_EPOCH).map(Time)
}

fn later(old: &Option<Time>, new: &Option<Time>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => n.0 > o.0,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// Usage seen since the last accepted report.
#[derive(Debug, Default)]
pub struct Aggregator {
    servers: BTreeMap<(String, String), ServerUsage>,
}

impl Aggregator {
    /// Adds what one export request tells about its servers.
    pub fn observe(&mut self, request: &ExportLogsServiceRequest) {
        for rl in &request.resource_logs {
            let resource: &[KeyValue] = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
            for record in rl.scope_logs.iter().flat_map(|s| s.log_records.iter()) {
                let a = &record.attributes;
                let Some(name) = find(a, attr::SERVER_NAME) else { continue };
                let Some(namespace) = find(a, attr::SERVER_NAMESPACE).or_else(|| find(resource, "k8s.namespace.name"))
                else {
                    continue;
                };
                let key = (namespace.to_owned(), name.to_owned());
                if !self.servers.contains_key(&key) && self.servers.len() >= MAX_SERVERS_PER_REPORT {
                    continue;
                }
                let usage = self.servers.entry(key).or_insert_with(|| ServerUsage {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    ..Default::default()
                });
                let at = time(record.time_unix_nano);
                let event = find(a, attr::EVENT_TYPE).unwrap_or_default();
                if event == "mcp-request" && later(&usage.last_used_at, &at) {
                    usage.last_used_at = at.clone();
                    usage.last_used_by = Some(find(a, attr::USER_ID).unwrap_or("unverified").to_owned());
                }
                if event == "mcp-response-error" {
                    usage.errors += 1;
                    if later(&usage.last_error_at, &at) {
                        usage.last_error_at = at.clone();
                        usage.last_error_message = find(a, attr::ERROR_MESSAGE).map(|m| {
                            let mut cut = m.len().min(MAX_MESSAGE);
                            while !m.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            m[..cut].to_owned()
                        });
                    }
                }
                if find(a, attr::REDACTION_KINDS).is_some() {
                    usage.sanitized += 1;
                    if later(&usage.last_sanitized_at, &at) {
                        usage.last_sanitized_at = at.clone();
                    }
                }
                // A complete tools/list answer carries every tool with its definition hash.
                if let Some(tools) = find(a, attr::TOOLS)
                    && let Ok(tools) = serde_json::from_str::<Vec<ToolFingerprint>>(tools)
                    && later(&usage.tools_at, &at)
                {
                    usage.tools = Some(tools);
                    usage.tools_at = at.clone();
                }
                let version = find(a, attr::SERVER_VERSION);
                let protocol = find(a, attr::MCP_PROTOCOL_VERSION);
                if version.is_some() || protocol.is_some() {
                    let info = usage.server_info.get_or_insert_with(ServerInfo::default);
                    if let Some(v) = version {
                        info.version = Some(v.to_owned());
                    }
                    if let Some(p) = protocol {
                        info.protocol_version = Some(p.to_owned());
                    }
                }
            }
        }
    }

    /// The report of everything seen so far, leaving the aggregator empty.
    pub fn take(&mut self, node: &str) -> Option<UsageReport> {
        if self.servers.is_empty() {
            return None;
        }
        let servers = std::mem::take(&mut self.servers).into_values().collect();
        Some(UsageReport { node: node.to_owned(), servers })
    }

    /// Puts a report that could not be delivered back, merged with what came since.
    pub fn restore(&mut self, report: UsageReport) {
        for old in report.servers {
            let key = (old.namespace.clone(), old.name.clone());
            match self.servers.get_mut(&key) {
                None => {
                    self.servers.insert(key, old);
                }
                Some(new) => {
                    new.errors += old.errors;
                    new.sanitized += old.sanitized;
                    if later(&new.last_used_at, &old.last_used_at) {
                        new.last_used_at = old.last_used_at;
                        new.last_used_by = old.last_used_by;
                    }
                    if later(&new.last_error_at, &old.last_error_at) {
                        new.last_error_at = old.last_error_at;
                        new.last_error_message = old.last_error_message;
                    }
                    if later(&new.last_sanitized_at, &old.last_sanitized_at) {
                        new.last_sanitized_at = old.last_sanitized_at;
                    }
                    if new.server_info.is_none() {
                        new.server_info = old.server_info;
                    }
                    if new.tools.is_none() {
                        new.tools = old.tools;
                        new.tools_at = old.tools_at;
                    }
                }
            }
        }
    }
}

/// Where usage goes: the operator's inventory API.
#[derive(Clone, Debug)]
pub struct OperatorTarget {
    /// `https://<service>.<namespace>.svc:8444`.
    pub url: String,
    /// The node agent's service account token (re-read for every report: it rotates).
    pub token_file: PathBuf,
    /// The CA that signed the operator's certificate (PEM).
    pub ca_file: PathBuf,
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

fn client(ca_file: &PathBuf) -> Result<HttpsClient, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(ca_file).map_err(|e| format!("reading the operator CA {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("the operator CA {} is not PEM: {e}", ca_file.display()))?;
        roots.add(cert).map_err(|e| format!("the operator CA {}: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Sends one report; `Err` says why it was not accepted.
pub async fn send(target: &OperatorTarget, report: &UsageReport) -> Result<(), String> {
    let client = client(&target.ca_file)?;
    let token = std::fs::read_to_string(&target.token_file)
        .map_err(|e| format!("reading the token {}: {e}", target.token_file.display()))?;
    let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
    let req = http::Request::post(format!("{}/v1/usage", target.url.trim_end_matches('/')))
        .header(http::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "the operator did not answer within 10 s".to_owned())?
        .map_err(|e| format!("sending to the operator: {e}"))?;
    let status = resp.status();
    let answer = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the operator answered {status}: {}", String::from_utf8_lossy(&answer)))
    }
}

/// Reports every `every` until `shutdown`; a report that fails is kept for the next one.
pub async fn report_loop(
    aggregator: Arc<Mutex<Aggregator>>,
    target: OperatorTarget,
    node: String,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let Some(report) = aggregator.lock().expect("usage lock").take(&node) else { continue };
        if let Err(e) = send(&target, &report).await {
            tracing::warn!(error = %e, servers = report.servers.len(), "usage report not accepted; keeping it for the next one");
            aggregator.lock().expect("usage lock").restore(report);
        }
    }
}

#[cfg(test)]
mod tests;
