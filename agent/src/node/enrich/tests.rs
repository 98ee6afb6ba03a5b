use serde_json::json;

use super::*;
use crate::export::proto::{LogRecord, Resource, ResourceLogs, ScopeLogs, find_str as get};

fn pod() -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "github-7f9c4d-abcde", "namespace": "tools", "uid": "uid-1",
            "labels": {"app": "github", "pod-template-hash": "7f9c4d", "team": "platform"},
            "annotations": {"mcpledger.dev/server": "github", "mcpledger.dev/approval": "Pending"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "github-7f9c4d", "uid": "rs", "controller": true}]
        },
        "spec": {"nodeName": "node-a", "containers": []}
    }))
    .unwrap()
}

fn cluster() -> Cluster {
    let facts = PodFacts::of(&pod());
    let mut c = Cluster::default();
    c.pods.insert(facts.uid.clone(), facts);
    c.namespaces.insert(
        "tools".into(),
        [("org".to_owned(), "acme".to_owned()), ("team".to_owned(), "ns-team".to_owned())].into(),
    );
    c
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: Some(proto::string(v)) }
}

fn request(resource: Vec<KeyValue>, records: Vec<Vec<KeyValue>>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: resource, dropped_attributes_count: 0 }),
            scope_logs: vec![ScopeLogs {
                log_records: records
                    .into_iter()
                    .map(|attributes| LogRecord { attributes, ..Default::default() })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn pod_facts_name_the_owning_deployment() {
    let facts = PodFacts::of(&pod());
    assert_eq!((facts.workload_kind.as_deref(), facts.workload_name.as_deref()), (Some("Deployment"), Some("github")));
    assert_eq!(facts.server.as_deref(), Some("github"));
    assert_eq!(facts.node, "node-a");
}

#[test]
fn records_get_k8s_attributes_server_and_team_org_from_labels() {
    let labels = IdentityLabels { team: Some("team".into()), org: Some("org".into()) };
    let mut req = request(
        vec![kv(resource::K8S_POD_UID, "uid-1"), kv("service.name", "mcp-ledger-agent")],
        vec![vec![kv(attr::USER_ID, "alice")], vec![kv(attr::TEAM_ID, "verified-team")]],
    );
    assert_eq!(enrich(&mut req, &cluster(), &labels), 1);
    let rl = &req.resource_logs[0];
    let r = &rl.resource.as_ref().unwrap().attributes;
    assert_eq!(get(r, resource::K8S_NAMESPACE_NAME), Some("tools"));
    assert_eq!(get(r, resource::K8S_POD_NAME), Some("github-7f9c4d-abcde"));
    assert_eq!(get(r, resource::K8S_NODE_NAME), Some("node-a"));
    assert_eq!(get(r, resource::K8S_DEPLOYMENT_NAME), Some("github"));
    assert_eq!(get(r, attr::SERVER_NAME), Some("github"));
    assert_eq!(get(r, SERVER_APPROVAL), Some("Pending"));
    let records = &rl.scope_logs[0].log_records;
    assert_eq!(get(&records[0].attributes, attr::TEAM_ID), Some("platform"), "the pod's label wins");
    assert_eq!(get(&records[0].attributes, attr::ORG_ID), Some("acme"), "else the namespace's");
    assert_eq!(get(&records[1].attributes, attr::TEAM_ID), Some("verified-team"), "a verified team is kept");
}

#[test]
fn pods_are_found_by_namespace_and_name_and_unknown_ones_are_left_alone() {
    let mut req = request(
        vec![kv(resource::K8S_NAMESPACE_NAME, "tools"), kv(resource::K8S_POD_NAME, "github-7f9c4d-abcde")],
        vec![vec![]],
    );
    assert_eq!(enrich(&mut req, &cluster(), &IdentityLabels::default()), 1);
    assert_eq!(get(&req.resource_logs[0].resource.as_ref().unwrap().attributes, resource::K8S_POD_UID), Some("uid-1"));
    assert!(
        get(&req.resource_logs[0].scope_logs[0].log_records[0].attributes, attr::TEAM_ID).is_none(),
        "no team label configured"
    );

    let mut unknown = request(vec![kv(resource::K8S_POD_UID, "other")], vec![vec![]]);
    let before = unknown.clone();
    assert_eq!(enrich(&mut unknown, &cluster(), &IdentityLabels::default()), 0);
    assert_eq!(unknown, before);
}
