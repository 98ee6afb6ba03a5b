//! Cluster test of the node agent, under `make e2e`: runs `mcp-ledger-agent --mode node`
//! on this machine with the test's credentials, standing in for the node agent of a real
//! node of the cluster (`NODE_NAME` = the first Ready node), and checks what its watches of
//! the real API server give:
//! - a record a sidecar sends for a pod of that node is enriched with the pod's `k8s.*`
//!   attributes, its McpServer, and the team from the namespace's label;
//! - the pod's container log (a CRI file written by the test under `--pod-logs-dir`, as
//!   the kubelet would) is redacted with the cluster default policy plus the McpServer's
//!   own McpRedactionPolicy, read from the cluster.
//!
//! The node agent writes what it relays to a JSON lines file (`--jsonl`), which the test reads.

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use mcp_ledger_agent::export::proto::{
    self, ExportLogsServiceRequest, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs,
};
use mcp_ledger_tests::{crd_api, e2e_client, free_port, install_crds, object, post_otlp, unique_namespace};
use prost::Message as _;
use serde_json::{Value, json};

/// The JSON lines the node agent wrote so far.
fn relayed(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

async fn wait_line(path: &std::path::Path, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..120 {
        if let Some(line) = relayed(path).into_iter().find(&found) {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after 60 s waiting for {what}; relayed: {:?}", relayed(path));
}

#[tokio::test]
async fn the_node_agent_enriches_and_redacts_from_the_real_api_server() {
    let Some(client) = e2e_client("e2e_node").await else { return };
    install_crds(&client).await;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("listing nodes");
    let node = nodes
        .items
        .iter()
        .find(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .map(|n| n.name_any())
        .expect("a Ready node");
    let ns = unique_namespace("mcpl-e2e-node");
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cleanup = mcp_ledger_tests::Cleanup::new(vec![ns.clone()], vec![dir.clone()]);

    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"team": "e2e-team"}}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("namespace");
    let pp = PostParams::default();
    let policies = crd_api(&client, &ns, "McpRedactionPolicy", "mcpredactionpolicies");
    let rule = |name: &str, regex: &str| json!({"customPatterns": [{"name": name, "regex": regex, "action": "mask"}]});
    // The test's namespace plays the operator's namespace: its `default` is the cluster default.
    policies.create(&pp, &object("McpRedactionPolicy", "default", rule("ticket", r"TICKET-\d{4}"))).await.unwrap();
    policies.create(&pp, &object("McpRedactionPolicy", "logs-extra", rule("build", r"BUILD-\d{4}"))).await.unwrap();
    let servers = crd_api(&client, &ns, "McpServer", "mcpservers");
    let spec = json!({"selector": {"matchLabels": {"app": "logs"}}, "port": 8080, "redactionPolicyRef": {"name": "logs-extra"}});
    servers.create(&pp, &object("McpServer", "logs", spec)).await.unwrap();
    // A pod of the node, as the injector leaves it (the server annotation).
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "logs-0", "labels": {"app": "logs"}, "annotations": {"mcpledger.dev/server": "logs"}},
        "spec": {"nodeName": node, "containers": [{"name": "server", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap();
    let pod = Api::<Pod>::namespaced(client.clone(), &ns).create(&pp, &pod).await.expect("pod");
    let uid = pod.uid().unwrap();

    let logs = dir.join("pods");
    let log_dir = logs.join(format!("{ns}_logs-0_{uid}/server"));
    std::fs::create_dir_all(&log_dir).unwrap();
    std::fs::write(
        log_dir.join("0.log"),
        "2026-11-24T10:00:00.000000001Z stdout F e2e-line deploy BUILD-1234 for TICKET-5678 by ops@example.com\n",
    )
    .unwrap();
    let (listen, admin) = (free_port(), free_port());
    let jsonl = dir.join("relayed.jsonl");
    cleanup.children.push(
        Command::new(mcp_ledger_tests::binary("MCP_LEDGER_AGENT_BIN", "mcp-ledger-agent"))
            .args([
                "--mode=node",
                &format!("--otlp-listen=127.0.0.1:{listen}"),
                &format!("--admin=127.0.0.1:{admin}"),
                &format!("--jsonl={}", jsonl.display()),
                &format!("--buffer-dir={}", dir.join("buffer").display()),
                &format!("--pod-logs-dir={}", logs.display()),
                &format!("--policy-namespace={ns}"),
                "--enrich=true",
                "--team-label=team",
                "--log=warn",
            ])
            .env("NODE_NAME", &node)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the node agent starts"),
    );

    // The container log: the default's rule, the server's own rule and the built-in detectors.
    let line =
        wait_line(&jsonl, "the container log line", |l| l["body"].as_str().is_some_and(|b| b.contains("e2e-line")))
            .await;
    let body = line["body"].as_str().unwrap();
    assert!(
        !body.contains("TICKET-5678") && !body.contains("BUILD-1234") && !body.contains("ops@example.com"),
        "{line}"
    );
    assert_eq!(line["resource"]["mcpledger.server.name"], "logs", "{line}");
    assert_eq!(line["resource"]["k8s.node.name"], node.as_str(), "{line}");

    // A sidecar's record naming the pod by uid.
    let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: Some(proto::string(v)) };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("k8s.pod.uid", &uid)], dropped_attributes_count: 0 }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord { body: Some(proto::string("e2e-record")), ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut status = String::new();
    for _ in 0..60 {
        status = post_otlp(listen, &request.encode_to_vec());
        if status.contains(" 200 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(status.contains(" 200 "), "the node agent stored the record: {status}");
    let record = wait_line(&jsonl, "the sidecar's record", |l| l["body"] == "e2e-record").await;
    assert_eq!(record["resource"]["k8s.namespace.name"], ns.as_str(), "{record}");
    assert_eq!(record["resource"]["k8s.pod.name"], "logs-0", "{record}");
    assert_eq!(record["resource"]["k8s.node.name"], node.as_str(), "{record}");
    assert_eq!(record["resource"]["mcpledger.server.name"], "logs", "{record}");
    assert_eq!(record["attributes"]["mcpledger.team.id"], "e2e-team", "{record}");
    drop(cleanup);
}
