//! Cluster test of the usage path, under `make e2e`: a node agent on this machine, holding
//! a real ServiceAccount token, reports the usage it saw in a sidecar's record to the
//! operator's inventory API, which asks the real API server who the token belongs to
//! (TokenReview) and merges the report into the McpServer's status; a token of another
//! account is refused.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, PostParams};
use mcp_ledger_agent::export::proto::{
    self, ExportLogsServiceRequest, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs,
};
use mcp_ledger_crds::record::attr;
use mcp_ledger_tests::{binary, crd_api, e2e_client, free_port, install_crds, object, post_otlp, unique_namespace};
use prost::Message as _;
use serde_json::json;

/// A token of a new ServiceAccount `name` in `ns`.
async fn account_token(client: &Client, ns: &str, name: &str) -> String {
    let pp = PostParams::default();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    accounts.create(&pp, &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()).await.unwrap();
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 600}})).unwrap();
    accounts.create_token_request(name, &pp, &request).await.unwrap().status.expect("a token").token
}

/// A sidecar's record of one tools/call request to `ns/server` by `user`, made now.
fn request_record(ns: &str, server: &str, user: &str) -> Vec<u8> {
    let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: Some(proto::string(v)) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let record = LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        body: Some(proto::string("e2e usage")),
        attributes: vec![
            kv(attr::SERVER_NAME, server),
            kv(attr::SERVER_NAMESPACE, ns),
            kv(attr::EVENT_TYPE, "mcp-request"),
            kv(attr::USER_ID, user),
        ],
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("k8s.namespace.name", ns)], dropped_attributes_count: 0 }),
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn node_agent(dir: &std::path::Path, name: &str, listen: u16, api_port: u16, token: &str, ca: &str) -> Child {
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, token).unwrap();
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca).unwrap();
    Command::new(binary("MCP_LEDGER_AGENT_BIN", "mcp-ledger-agent"))
        .args([
            "--mode=node",
            &format!("--otlp-listen=127.0.0.1:{listen}"),
            &format!("--admin=127.0.0.1:{}", free_port()),
            &format!("--jsonl={}", dir.join(format!("{name}.jsonl")).display()),
            &format!("--buffer-dir={}", dir.join(format!("{name}-buffer")).display()),
            &format!("--operator-url=https://127.0.0.1:{api_port}"),
            &format!("--operator-token-file={}", token_file.display()),
            &format!("--operator-ca-file={}", ca_file.display()),
            "--usage-interval-seconds=1",
            "--enrich=false",
            "--log=warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the node agent starts")
}

#[tokio::test]
async fn node_agents_report_usage_that_the_operator_merges_into_status() {
    let Some(client) = e2e_client("node_agents_report_usage_that_the_operator_merges_into_status").await else {
        return;
    };
    install_crds(&client).await;
    let ns = unique_namespace("mcpl-e2e-usage");
    let operator_ns = unique_namespace("mcpl-e2e-usage-op");
    for name in [&ns, &operator_ns] {
        mcp_ledger_tests::create_namespace(&client, name).await;
    }
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cleanup = mcp_ledger_tests::Cleanup::new(vec![ns.clone(), operator_ns.clone()], vec![dir.clone()]);

    let servers = crd_api(&client, &ns, "McpServer", "mcpservers");
    let spec = json!({"selector": {"matchLabels": {"app": "usage"}}, "port": 8080});
    servers.create(&PostParams::default(), &object("McpServer", "usage-srv", spec)).await.unwrap();
    let node_token = account_token(&client, &operator_ns, "node-agent").await;
    let other_token = account_token(&client, &operator_ns, "someone-else").await;
    let node_user = format!("system:serviceaccount:{operator_ns}:node-agent");

    // The operator: the inventory API over TLS, usage only from the node agents' account.
    let ca = mcp_ledger_tests::write_tls(&dir, "127.0.0.1");
    let api_port = free_port();
    cleanup.children.push(
        Command::new(binary("MCP_LEDGER_OPERATOR_BIN", "mcp-ledger-operator"))
            .args([
                &format!("--namespace={operator_ns}"),
                &format!("--usage-user={node_user}"),
                &format!("--webhook-listen=127.0.0.1:{}", free_port()),
                &format!("--tls-cert={}", dir.join("tls.crt").display()),
                &format!("--tls-key={}", dir.join("tls.key").display()),
                &format!("--api-listen=127.0.0.1:{api_port}"),
                "--admin-listen=127.0.0.1:0",
                "--leader-election=false",
                "--log=warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the operator starts (make e2e builds it)"),
    );

    // Two node agents: one with the node agents' token, one with another account's.
    let (good, other) = (free_port(), free_port());
    cleanup.children.push(node_agent(&dir, "node", good, api_port, &node_token, &ca));
    cleanup.children.push(node_agent(&dir, "other", other, api_port, &other_token, &ca));
    for (port, user) in [(good, "alice@example.com"), (other, "mallory@example.com")] {
        let body = request_record(&ns, "usage-srv", user);
        let mut status = String::new();
        for _ in 0..60 {
            status = post_otlp(port, &body);
            if status.contains(" 200 ") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(status.contains(" 200 "), "the node agent stored the record: {status}");
    }

    // The report from the node agents' account lands in status; the other one never does.
    let mut last = json!(null);
    for _ in 0..60 {
        last = servers.get("usage-srv").await.unwrap().data["status"].clone();
        if last["lastUsedBy"] == "alice@example.com" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(last["lastUsedBy"], "alice@example.com", "status after the report: {last}");
    let at = last["lastUsedAt"].as_str().expect("lastUsedAt is set");
    let at: jiff::Timestamp = at.parse().unwrap_or_else(|e| panic!("lastUsedAt {at}: {e}"));
    assert!(jiff::Timestamp::now().duration_since(at).as_secs() < 120, "lastUsedAt is the record's time: {at}");
    // Several report rounds of the other agent have gone by: none was merged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = servers.get("usage-srv").await.unwrap().data["status"].clone();
    assert_eq!(status["lastUsedBy"], "alice@example.com", "a report from another account was merged: {status}");
    drop(cleanup);
}
