//! The inventory API over real TLS (Python's OpenSSL client). The cluster side —
//! TokenReview, SubjectAccessReview, the McpServer cache, status writes — is an in-memory
//! backend: no API server can run on this machine (the real backend is exercised by
//! `make e2e`). What is tested here is everything the operator decides: who gets in, what
//! they see, and how reports are received.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use mcp_ledger_crds::McpServer;
use mcp_ledger_crds::usage::UsageReport;
use mcp_ledger_operator::api::{self, Backend, Identity, InventoryApi};
use mcp_ledger_operator::inventory::RemovalRecord;
use mcp_ledger_operator::webhook::{self, CertStore};
use serde_json::{Value, json};

const NODE_AGENT: &str = "system:serviceaccount:mcp-ledger:mcp-ledger-node";

/// Tokens: `alice-token` (may list in `tools` only), `admin-token` (everywhere),
/// `node-token` (the node agent), anything else is refused.
struct Memory {
    servers: Vec<McpServer>,
    reports: Mutex<Vec<UsageReport>>,
}

impl Backend for Memory {
    fn authenticate(&self, token: String) -> BoxFuture<'static, Result<Option<Identity>, String>> {
        let user = match token.as_str() {
            "alice-token" => Some("alice"),
            "admin-token" => Some("admin"),
            "node-token" => Some(NODE_AGENT),
            _ => None,
        };
        let who = user.map(|u| Identity { username: u.into(), groups: vec![], extra: Default::default(), uid: None });
        async move { Ok(who) }.boxed()
    }
    fn may_list(&self, who: Identity, namespace: Option<String>) -> BoxFuture<'static, Result<bool, String>> {
        let allowed = who.username == "admin" || (who.username == "alice" && namespace.as_deref() == Some("tools"));
        async move { Ok(allowed) }.boxed()
    }
    fn servers(&self, namespace: Option<&str>) -> Vec<McpServer> {
        self.servers
            .iter()
            .filter(|s| namespace.is_none_or(|n| s.metadata.namespace.as_deref() == Some(n)))
            .cloned()
            .collect()
    }
    fn history(&self) -> BoxFuture<'static, Result<Vec<RemovalRecord>, String>> {
        let record: RemovalRecord = serde_json::from_value(json!({
            "namespace": "tools", "name": "old", "uid": "u1", "removedAt": "2026-11-24T10:00:00Z",
            "removedBy": "carol", "approval": "Approved", "toolCount": 3
        }))
        .unwrap();
        let other = RemovalRecord { namespace: "other".into(), ..record.clone() };
        async move { Ok(vec![record, other]) }.boxed()
    }
    fn merge_usage(&self, report: UsageReport) -> BoxFuture<'static, Result<Vec<String>, String>> {
        let unknown = report
            .servers
            .iter()
            .filter(|u| !self.servers.iter().any(|s| s.metadata.name.as_deref() == Some(u.name.as_str())))
            .map(|u| format!("{}/{}", u.namespace, u.name))
            .collect();
        self.reports.lock().unwrap().push(report);
        async move { Ok(unknown) }.boxed()
    }
}

fn server(ns: &str, name: &str) -> McpServer {
    serde_json::from_value(json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServer",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": name}}, "port": "mcp"},
        "status": {"addedBy": "alice", "approval": {"state": "Approved", "reviewedBy": "sec"}}
    }))
    .unwrap()
}

async fn start() -> (std::net::SocketAddr, String, Arc<Memory>, tokio::sync::watch::Sender<bool>) {
    let dir = support::tempdir();
    let (ca, cert, key) = support::pki("api");
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let store = CertStore::load(dir.join("tls.crt"), dir.join("tls.key")).unwrap();
    let memory = Arc::new(Memory {
        servers: vec![server("tools", "github"), server("other", "slack")],
        reports: Mutex::default(),
    });
    let api = Arc::new(InventoryApi { backend: memory.clone(), usage_users: vec![NODE_AGENT.to_owned()] });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(webhook::serve(listener, webhook::tls_config(store), api::handler(api), rx));
    (addr, ca, memory, tx)
}

async fn get(addr: std::net::SocketAddr, ca: &str, route: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("Authorization", a)]).unwrap_or_default();
    support::request(addr, "GET", route, ca, &headers, Vec::new()).await
}

#[tokio::test]
async fn reads_need_a_token_the_cluster_accepts_and_list_rights_in_the_namespace() {
    let (addr, ca, _, _stop) = start().await;
    let (status, body) = get(addr, &ca, "/v1/inventory", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    assert_eq!(get(addr, &ca, "/v1/inventory", Some("forged")).await.0, 401);

    let (status, body) = get(addr, &ca, "/v1/inventory", Some("alice-token")).await;
    assert_eq!(status, 403, "alice may not list cluster-wide: {body}");
    assert!(body.contains("alice may not list mcpservers.mcpledger.dev cluster-wide"), "{body}");
    assert_eq!(get(addr, &ca, "/v1/inventory?namespace=other", Some("alice-token")).await.0, 403);

    let (status, body) = get(addr, &ca, "/v1/inventory?namespace=tools", Some("alice-token")).await;
    assert_eq!(status, 200, "{body}");
    let items: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = items["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["github"], "only the namespace asked for");
    assert_eq!(items["items"][0]["approval"], "Approved");

    let (status, body) = get(addr, &ca, "/v1/inventory", Some("admin-token")).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["items"].as_array().unwrap().len(), 2);

    let (status, csv) = get(addr, &ca, "/v1/inventory.csv?namespace=tools", Some("alice-token")).await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("namespace,name,owner,addedAt,addedBy,approval"), "{csv}");
    assert!(lines[1].starts_with("tools,github,,"), "{csv}");

    let (status, body) = get(addr, &ca, "/v1/history?namespace=tools", Some("alice-token")).await;
    assert_eq!(status, 200);
    let history: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "only the namespace's records: {body}");
    assert_eq!(history["items"][0]["removedBy"], "carol");

    assert_eq!(get(addr, &ca, "/v1/inventory?namespace=..%2Fetc", Some("admin-token")).await.0, 400);
    assert_eq!(get(addr, &ca, "/v2/anything", Some("admin-token")).await.0, 404);
}

#[tokio::test]
async fn only_node_agents_report_usage_and_bad_reports_are_refused_whole() {
    let (addr, ca, memory, _stop) = start().await;
    let report = json!({"node": "node-1", "servers": [
        {"namespace": "tools", "name": "github", "lastUsedAt": "2026-11-24T10:00:00Z", "lastUsedBy": "bob", "errors": 2},
        {"namespace": "tools", "name": "ghost", "sanitized": 1}
    ]});
    let body = serde_json::to_vec(&report).unwrap();
    let post = |token: &'static str, body: Vec<u8>| {
        let ca = ca.clone();
        async move {
            let auth = format!("Bearer {token}");
            support::request(
                addr,
                "POST",
                "/v1/usage",
                &ca,
                &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
                body,
            )
            .await
        }
    };
    let (status, answer) = post("alice-token", body.clone()).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("only the node agents' service accounts may"), "{answer}");
    assert!(memory.reports.lock().unwrap().is_empty());

    let (status, answer) = post("node-token", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap(), json!({"merged": 1, "unknown": ["tools/ghost"]}));
    assert_eq!(memory.reports.lock().unwrap()[0].servers[0].errors, 2);

    let (status, answer) =
        post("node-token", br#"{"node":"n","servers":[{"namespace":"a","name":"b","password":"x"}]}"#.to_vec()).await;
    assert_eq!(status, 400);
    assert!(answer.contains("unknown field `password`"), "{answer}");
    assert_eq!(memory.reports.lock().unwrap().len(), 1, "nothing of a bad report is merged");
    let (status, _) =
        tokio::time::timeout(Duration::from_secs(20), post("node-token", vec![b' '; 2 * 1024 * 1024])).await.unwrap();
    assert_eq!(status, 413);
}

#[tokio::test]
async fn the_node_agents_usage_reporter_is_accepted_and_merged() {
    use mcp_ledger_agent::export::proto as otlp;
    use mcp_ledger_agent::node::usage::{Aggregator, OperatorTarget, send};
    use mcp_ledger_crds::record::attr;
    let (addr, ca, memory, _stop) = start().await;
    let dir = support::tempdir();
    std::fs::write(dir.join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.join("token"), "node-token\n").unwrap();
    let s = |v: &str| Some(otlp::AnyValue { value: Some(otlp::any_value::Value::StringValue(v.into())) });
    let kv = |k: &str, v: &str| otlp::KeyValue { key: k.into(), value: s(v) };
    let request = otlp::ExportLogsServiceRequest {
        resource_logs: vec![otlp::ResourceLogs {
            scope_logs: vec![otlp::ScopeLogs {
                log_records: vec![otlp::LogRecord {
                    time_unix_nano: 1_795_000_000_000_000_000,
                    attributes: vec![
                        kv(attr::SERVER_NAME, "github"),
                        kv(attr::SERVER_NAMESPACE, "tools"),
                        kv(attr::EVENT_TYPE, "mcp-request"),
                        kv(attr::USER_ID, "alice"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut aggregator = Aggregator::default();
    aggregator.observe(&request);
    let report = aggregator.take("node-1").expect("usage was seen");
    assert_eq!(report.servers.len(), 1, "{report:?}");
    let target = OperatorTarget {
        url: format!("https://127.0.0.1:{}", addr.port()),
        token_file: dir.join("token"),
        ca_file: dir.join("ca.crt"),
    };
    send(&target, &report).await.expect("the operator accepts the node agent's report");
    let received = memory.reports.lock().unwrap().clone();
    assert_eq!(received[0].node, "node-1");
    assert_eq!(received[0].servers[0].last_used_by.as_deref(), Some("alice"));

    std::fs::write(dir.join("token"), "alice-token").unwrap();
    let refused = send(&target, &report).await.expect_err("alice is not a node agent");
    assert!(refused.contains("403"), "{refused}");
    let (other_ca, _, _) = support::pki("other");
    std::fs::write(dir.join("ca.crt"), other_ca).unwrap();
    let untrusted = send(&target, &report).await.expect_err("a certificate from another CA is refused");
    assert!(untrusted.contains("sending to the operator"), "{untrusted}");
}
