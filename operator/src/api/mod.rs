//! The inventory API (HTTPS): `GET /v1/inventory` (JSON), `GET /v1/inventory.csv`,
//! `GET /v1/history`, and `POST /v1/usage` for node agents. Every request carries a bearer
//! token that the cluster authenticates (TokenReview); reads are authorised as
//! `list mcpservers` in the namespace asked for (`?namespace=`, or cluster-wide without
//! it) with a SubjectAccessReview, so the inventory sits behind the cluster's own login.
//! Usage reports are accepted only from the node agents' users.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use kube::ResourceExt;
use mcp_ledger_agent::export::csv::quote;
use mcp_ledger_crds::McpServer;
use mcp_ledger_crds::server::condition;
use mcp_ledger_crds::usage::{MAX_SERVERS_PER_REPORT, UsageReport};
use serde::Serialize;
use serde_json::json;

use crate::inventory::RemovalRecord;

pub mod cached;
pub mod kube_backend;

/// Largest usage report accepted.
pub const MAX_USAGE_BODY: usize = 1024 * 1024;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Username.
    pub username: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (passed on to the SubjectAccessReview).
    pub extra: BTreeMap<String, Vec<String>>,
    /// UID.
    pub uid: Option<String>,
}

/// What the API needs from the cluster. The real one asks the API server
/// ([`kube_backend::KubeBackend`]); tests use an in-memory one.
pub trait Backend: Send + Sync + 'static {
    /// Who presents `token`; `Ok(None)` for a token the cluster does not accept.
    fn authenticate(&self, token: String) -> BoxFuture<'static, Result<Option<Identity>, String>>;
    /// Whether `who` may list McpServers in `namespace` (every namespace when `None`).
    fn may_list(&self, who: Identity, namespace: Option<String>) -> BoxFuture<'static, Result<bool, String>>;
    /// The McpServers of `namespace` (every namespace when `None`).
    fn servers(&self, namespace: Option<&str>) -> Vec<McpServer>;
    /// The removal history.
    fn history(&self) -> BoxFuture<'static, Result<Vec<RemovalRecord>, String>>;
    /// Merges a usage report into status; returns the servers it did not know (`ns/name`).
    fn merge_usage(&self, report: UsageReport) -> BoxFuture<'static, Result<Vec<String>, String>>;
}

/// One McpServer as the inventory shows it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InventoryRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Owner contact.
    pub owner: String,
    /// Description.
    pub description: String,
    /// When it was added (RFC 3339).
    pub added_at: String,
    /// Who added it.
    pub added_by: String,
    /// Pending, Approved or Rejected.
    pub approval: String,
    /// Who reviewed it.
    pub reviewed_by: String,
    /// When.
    pub reviewed_at: String,
    /// Reason of a rejection.
    pub reason: String,
    /// `serverInfo.name`.
    pub server_name: String,
    /// `serverInfo.version`.
    pub server_version: String,
    /// Negotiated protocol revision.
    pub protocol_version: String,
    /// Tool names.
    pub tools: Vec<String>,
    /// When a client last called it.
    pub last_used_at: String,
    /// Who.
    pub last_used_by: String,
    /// Error responses seen.
    pub errors: i64,
    /// Messages sanitized.
    pub sanitized: i64,
    /// Pods serving it.
    pub pods: usize,
    /// Pods carrying the agent.
    pub injected_pods: i32,
    /// Whether a tool changed since approval.
    pub tools_changed: bool,
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
}

/// The inventory rows of `servers`, sorted by namespace and name.
pub fn inventory_rows(servers: &[McpServer]) -> Vec<InventoryRow> {
    let mut rows: Vec<InventoryRow> = servers
        .iter()
        .map(|s| {
            let status = s.status.clone().unwrap_or_default();
            let approval = status.approval.clone().unwrap_or_default();
            let info = status.server_info.clone().unwrap_or_default();
            InventoryRow {
                namespace: s.namespace().unwrap_or_default(),
                name: s.name_any(),
                owner: s.spec.owner.clone().unwrap_or_default(),
                description: s.spec.description.clone().unwrap_or_default(),
                added_at: time(&status.added_at.or_else(|| s.metadata.creation_timestamp.clone())),
                added_by: status.added_by.unwrap_or_default(),
                approval: approval.state.as_str().to_owned(),
                reviewed_by: approval.reviewed_by.unwrap_or_default(),
                reviewed_at: time(&approval.reviewed_at),
                reason: approval.reason.unwrap_or_default(),
                server_name: info.name.unwrap_or_default(),
                server_version: info.version.unwrap_or_default(),
                protocol_version: info.protocol_version.unwrap_or_default(),
                tools: status.tools.iter().map(|t| t.name.clone()).collect(),
                last_used_at: time(&status.last_used_at),
                last_used_by: status.last_used_by.unwrap_or_default(),
                errors: status.errors.map(|e| e.count).unwrap_or(0),
                sanitized: status.sanitized.map(|e| e.count).unwrap_or(0),
                pods: status.pods.len(),
                injected_pods: status.injected_pods.unwrap_or(0),
                tools_changed: status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == condition::TOOLS_CHANGED && c.status == "True"),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

/// CSV header of [`inventory_csv`].
pub const CSV_HEADER: &[&str] = &[
    "namespace",
    "name",
    "owner",
    "addedAt",
    "addedBy",
    "approval",
    "reviewedBy",
    "reviewedAt",
    "reason",
    "serverName",
    "serverVersion",
    "protocolVersion",
    "toolCount",
    "tools",
    "lastUsedAt",
    "lastUsedBy",
    "errors",
    "sanitized",
    "pods",
    "injectedPods",
    "toolsChanged",
];

/// The rows as CSV (RFC 4180, cells that a spreadsheet would run as formulas neutralised).
pub fn inventory_csv(rows: &[InventoryRow]) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for r in rows {
        let cells = [
            r.namespace.clone(),
            r.name.clone(),
            r.owner.clone(),
            r.added_at.clone(),
            r.added_by.clone(),
            r.approval.clone(),
            r.reviewed_by.clone(),
            r.reviewed_at.clone(),
            r.reason.clone(),
            r.server_name.clone(),
            r.server_version.clone(),
            r.protocol_version.clone(),
            r.tools.len().to_string(),
            r.tools.join(" "),
            r.last_used_at.clone(),
            r.last_used_by.clone(),
            r.errors.to_string(),
            r.sanitized.to_string(),
            r.pods.to_string(),
            r.injected_pods.to_string(),
            r.tools_changed.to_string(),
        ];
        out.push_str(&cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The inventory API.
pub struct InventoryApi {
    /// The cluster.
    pub backend: Arc<dyn Backend>,
    /// Usernames allowed to POST usage reports (the node agents' service accounts).
    pub usage_users: Vec<String>,
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}

fn problem(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut resp = respond(status, "application/json", json!({"error": message}).to_string());
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    resp
}

/// The `namespace` query parameter, if any (a DNS label; anything else is refused).
fn namespace_param(query: Option<&str>) -> Result<Option<String>, String> {
    for pair in query.unwrap_or_default().split('&') {
        if let Some(ns) = pair.strip_prefix("namespace=") {
            let valid = !ns.is_empty()
                && ns.len() <= 63
                && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            return if valid {
                Ok(Some(ns.to_owned()))
            } else {
                Err(format!("namespace '{ns}' is not a namespace name"))
            };
        }
    }
    Ok(None)
}

impl InventoryApi {
    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let route = match (req.method(), path.as_str()) {
            (&Method::GET, "/v1/inventory" | "/v1/inventory.csv" | "/v1/history") => path.as_str(),
            (&Method::POST, "/v1/usage") => "/v1/usage",
            (_, "/v1/inventory" | "/v1/inventory.csv" | "/v1/history" | "/v1/usage") => {
                return problem(StatusCode::METHOD_NOT_ALLOWED, "GET the inventory and history; POST usage");
            }
            _ => {
                return problem(
                    StatusCode::NOT_FOUND,
                    "not found: try /v1/inventory, /v1/inventory.csv, /v1/history or POST /v1/usage",
                );
            }
        };
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let Some(token) = token else {
            return problem(StatusCode::UNAUTHORIZED, "send a Kubernetes bearer token: Authorization: Bearer <token>");
        };
        let who = match self.backend.authenticate(token).await {
            Ok(Some(who)) => who,
            Ok(None) => return problem(StatusCode::UNAUTHORIZED, "the cluster did not accept the bearer token"),
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed");
                return problem(StatusCode::SERVICE_UNAVAILABLE, "could not verify the token with the cluster; retry");
            }
        };
        if route == "/v1/usage" {
            return self.usage(who, req).await;
        }
        let namespace = match namespace_param(req.uri().query()) {
            Ok(ns) => ns,
            Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
        };
        match self.backend.may_list(who.clone(), namespace.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                let scope = namespace
                    .as_deref()
                    .map(|n| format!("in namespace {n}"))
                    .unwrap_or("cluster-wide (or add ?namespace=)".into());
                return problem(
                    StatusCode::FORBIDDEN,
                    &format!("{} may not list mcpservers.mcpledger.dev {scope}", who.username),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "SubjectAccessReview failed");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "could not authorise the request with the cluster; retry",
                );
            }
        }
        match route {
            "/v1/inventory" => {
                let rows = inventory_rows(&self.backend.servers(namespace.as_deref()));
                respond(StatusCode::OK, "application/json", json!({"items": rows}).to_string())
            }
            "/v1/inventory.csv" => {
                let rows = inventory_rows(&self.backend.servers(namespace.as_deref()));
                respond(StatusCode::OK, "text/csv; charset=utf-8", inventory_csv(&rows))
            }
            _ => match self.backend.history().await {
                Ok(records) => {
                    let items: Vec<RemovalRecord> =
                        records.into_iter().filter(|r| namespace.as_deref().is_none_or(|n| r.namespace == n)).collect();
                    respond(StatusCode::OK, "application/json", json!({"items": items}).to_string())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the history failed");
                    problem(StatusCode::SERVICE_UNAVAILABLE, "could not read the history; retry")
                }
            },
        }
    }

    async fn usage(&self, who: Identity, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.usage_users.contains(&who.username) {
            return problem(
                StatusCode::FORBIDDEN,
                &format!("{} may not report usage: only the node agents' service accounts may", who.username),
            );
        }
        let body = match read_body(req.into_body(), MAX_USAGE_BODY).await {
            Ok(b) => b,
            Err(status) => {
                return problem(status, &format!("a usage report is at most {MAX_USAGE_BODY} bytes; split it"));
            }
        };
        let report: UsageReport = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("the body is not a usage report: {e}")),
        };
        if report.servers.len() > MAX_SERVERS_PER_REPORT {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("at most {MAX_SERVERS_PER_REPORT} servers per report; split it"),
            );
        }
        let count = report.servers.len();
        match self.backend.merge_usage(report).await {
            Ok(unknown) => respond(
                StatusCode::OK,
                "application/json",
                json!({"merged": count - unknown.len(), "unknown": unknown}).to_string(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "merging a usage report failed");
                problem(StatusCode::SERVICE_UNAVAILABLE, "could not merge the report; send it again")
            }
        }
    }
}

/// Reads a body of at most `max` bytes. A larger one is read on (and thrown away, up to
/// 16 MiB for 10 s) before the 413 answer, so that a client that sends its whole body
/// before reading gets the answer instead of a reset connection.
async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, StatusCode> {
    let mut out = bytes::BytesMut::new();
    let mut seen = 0usize;
    let drain = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return Err(StatusCode::BAD_REQUEST) };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen <= max {
                    out.extend_from_slice(&data);
                } else if seen > 16 * 1024 * 1024 {
                    break;
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), drain).await {
        Ok(Ok(())) if seen <= max => Ok(out.freeze()),
        Ok(Err(status)) => Err(status),
        _ => Err(StatusCode::PAYLOAD_TOO_LARGE),
    }
}

/// The API as a [`crate::webhook::Handler`].
pub fn handler(api: Arc<InventoryApi>) -> crate::webhook::Handler {
    Arc::new(move |req| {
        let api = api.clone();
        Box::pin(async move { api.handle(req).await })
    })
}

#[cfg(test)]
mod tests;
