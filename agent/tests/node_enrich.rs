//! Enrichment by the node agent (`mcp-ledger-agent --mode node --enrich=true`, the real
//! binary) from its watches: pods and namespaces are served by the Kubernetes API double
//! (`common/apiserver.rs`; no kube-apiserver runs here, `make e2e` has the real one), records
//! arrive from a sender standing in for the sidecars, and the real OTLP receiver (official
//! generated types + grpcio) shows what the collector got: `k8s.*` attributes, the owner
//! Deployment, the McpServer and its approval, team/org from pod or namespace labels —
//! and that changes seen by the watch (a new pod, relabelled namespace, deleted pod) apply.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::apiserver::{ApiServer, pod};
use common::{Peer, free_port, python, repo_root, scratch, wait_for_port};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_ledger_agent::export::proto::{
    self, ExportLogsServiceRequest, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs,
};
use prost::Message as _;
use serde_json::Value;

/// What the receiver got for one record: its resource's attributes and its own.
#[derive(Debug, Default, Clone)]
struct Seen {
    resource: BTreeMap<String, String>,
    record: BTreeMap<String, String>,
}

fn attrs(list: Option<&Value>) -> BTreeMap<String, String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), kv["value"]["stringValue"].as_str()?.to_owned())))
        .collect()
}

/// Records by body text, from the receiver's OTLP/JSON lines.
fn received(path: &std::path::Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let Ok(request) = serde_json::from_str::<Value>(line) else { continue };
        for rl in request["resourceLogs"].as_array().into_iter().flatten() {
            let resource = attrs(rl.pointer("/resource/attributes"));
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for record in sl["logRecords"].as_array().into_iter().flatten() {
                    let body = record["body"]["stringValue"].as_str().unwrap_or_default().to_owned();
                    out.insert(body, Seen { resource: resource.clone(), record: attrs(record.get("attributes")) });
                }
            }
        }
    }
    out
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(proto::string(value)) }
}

/// One resource (a sidecar's pod, as its downward-API attributes name it) with one record.
fn resource(resource_attrs: &[(&str, &str)], body: &str, record_attrs: &[(&str, &str)]) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: resource_attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                body: Some(proto::string(body)),
                attributes: record_attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn send(url: &str, resource_logs: Vec<ResourceLogs>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = ExportLogsServiceRequest { resource_logs }.encode_to_vec();
    let req = hyper::Request::post(url)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.expect("the node agent answers");
    assert_eq!(resp.status(), 200, "the node agent stored the request");
    let _ = resp.into_body().collect().await;
}

/// Waits until the receiver has a record with body `body`, and returns what it saw.
fn wait_record(path: &std::path::Path, body: &str) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(seen) = received(path).remove(body) {
            return seen;
        }
        assert!(Instant::now() < deadline, "no record {body:?} reached the receiver in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get<'a>(map: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    map.get(key).map(String::as_str)
}

/// Starts the real OTLP receiver and the node agent (enriching from `api`, with `args`);
/// returns the agent's OTLP port, the receiver's output file and both processes.
fn start(api: &ApiServer, dir: &std::path::Path, args: &[&str]) -> (u16, std::path::PathBuf, [Peer; 2]) {
    let (listen, admin, collector) = (free_port(), free_port(), free_port());
    let out = dir.join("received.ndjson");
    let receiver = Peer(
        Command::new(python())
            .arg(repo_root().join("tests/peers/otlp_grpc_receiver.py"))
            .args(["--port", &collector.to_string()])
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .expect("the OTLP receiver starts"),
    );
    wait_for_port(collector);
    let node = Peer(
        Command::new(env!("CARGO_BIN_EXE_mcp-ledger-agent"))
            .args([
                "--mode=node",
                &format!("--otlp-listen=127.0.0.1:{listen}"),
                &format!("--admin=127.0.0.1:{admin}"),
                &format!("--otlp-endpoint=http://127.0.0.1:{collector}"),
                &format!("--buffer-dir={}", dir.join("buffer").display()),
                "--enrich=true",
                "--policy-namespace=mcp-ledger",
                "--log=warn",
            ])
            .args(args)
            .env("KUBECONFIG", api.kubeconfig(dir))
            .env("NODE_NAME", "node-a")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the node agent starts"),
    );
    wait_for_port(listen);
    (listen, out, [receiver, node])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_enriched_from_the_watched_pods_and_namespaces_of_the_node() {
    let api = ApiServer::start().await;
    api.apply_namespace("tools", &[("team", "platform"), ("org", "acme")]);
    api.apply_namespace("other", &[("team", "ns-team")]);
    api.apply_pod(pod("tools", "github-7f9c4d-aaaaa", "uid-github", "node-a", "github", Some("github"), &[]));
    api.apply_pod(pod("tools", "slack-7f9c4d-bbbbb", "uid-slack", "node-b", "slack", Some("slack"), &[]));
    let mut notes =
        pod("other", "notes-7f9c4d-ccccc", "uid-notes", "node-a", "notes", Some("notes"), &[("team", "pod-team")]);
    notes["metadata"]["annotations"]["mcpledger.dev/approval"] = "Pending".into();
    api.apply_pod(notes);

    let dir = scratch("node-enrich");
    let (listen, out, _peers) =
        start(&api, &dir, &["--pod-logs-dir=no-such-dir", "--team-label=team", "--org-label=org"]);
    // The watches open once their lists are applied.
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.open_watches(true) == 0 || api.open_watches(false) == 0 {
        assert!(Instant::now() < deadline, "the node agent opened no watches; requests: {:?}", api.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pod_requests: Vec<String> = api.requests().into_iter().filter(|r| r.contains("/api/v1/pods")).collect();
    assert!(
        pod_requests.iter().all(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "every pod request is scoped to the node: {pod_requests:?}"
    );

    let url = format!("http://127.0.0.1:{listen}/v1/logs");
    send(
        &url,
        vec![
            resource(&[("k8s.pod.uid", "uid-github")], "by-uid", &[]),
            resource(&[("k8s.namespace.name", "tools"), ("k8s.pod.name", "github-7f9c4d-aaaaa")], "by-name", &[]),
            resource(&[("k8s.pod.uid", "uid-github")], "verified", &[("mcpledger.team.id", "from-jwt")]),
            resource(&[("k8s.pod.uid", "uid-slack")], "other-node", &[]),
            resource(&[("k8s.pod.uid", "uid-notes")], "pod-label", &[]),
        ],
    )
    .await;

    for body in ["by-uid", "by-name"] {
        let seen = wait_record(&out, body);
        let r = &seen.resource;
        assert_eq!(get(r, "k8s.namespace.name"), Some("tools"), "{body}: {seen:?}");
        assert_eq!(get(r, "k8s.pod.name"), Some("github-7f9c4d-aaaaa"), "{body}: {seen:?}");
        assert_eq!(get(r, "k8s.pod.uid"), Some("uid-github"), "{body}: {seen:?}");
        assert_eq!(get(r, "k8s.node.name"), Some("node-a"), "{body}: {seen:?}");
        assert_eq!(get(r, "k8s.deployment.name"), Some("github"), "{body}: {seen:?}");
        assert_eq!(get(r, "mcpledger.server.name"), Some("github"), "{body}: {seen:?}");
        assert_eq!(get(r, "mcpledger.server.approval"), Some("Approved"), "{body}: {seen:?}");
        assert_eq!(get(&seen.record, "mcpledger.team.id"), Some("platform"), "{body}: namespace label");
        assert_eq!(get(&seen.record, "mcpledger.org.id"), Some("acme"), "{body}: namespace label");
    }
    let verified = wait_record(&out, "verified");
    assert_eq!(get(&verified.record, "mcpledger.team.id"), Some("from-jwt"), "a verified team is never replaced");
    assert_eq!(get(&verified.record, "mcpledger.org.id"), Some("acme"));
    let other = wait_record(&out, "other-node");
    assert_eq!(get(&other.resource, "mcpledger.server.name"), None, "a pod of another node is not known: {other:?}");
    assert_eq!(other.resource.len(), 1, "{other:?}");
    assert_eq!(get(&other.record, "mcpledger.team.id"), None);
    let notes = wait_record(&out, "pod-label");
    assert_eq!(get(&notes.record, "mcpledger.team.id"), Some("pod-team"), "the pod's label wins over the namespace's");
    assert_eq!(get(&notes.resource, "mcpledger.server.approval"), Some("Pending"));

    // Changes arrive through the open watches: a new pod, a relabelled namespace, a deleted pod.
    api.apply_pod(pod("tools", "search-7f9c4d-ddddd", "uid-search", "node-a", "search", Some("search"), &[]));
    api.apply_namespace("tools", &[("team", "platform"), ("org", "acme-2")]);
    api.delete_pod("tools", "github-7f9c4d-aaaaa");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = 0;
    loop {
        probe += 1;
        let (new_pod, gone) = (format!("new-pod-{probe}"), format!("deleted-pod-{probe}"));
        send(
            &url,
            vec![
                resource(&[("k8s.pod.uid", "uid-search")], &new_pod, &[]),
                resource(&[("k8s.pod.uid", "uid-github")], &gone, &[]),
            ],
        )
        .await;
        let (new_pod, gone) = (wait_record(&out, &new_pod), wait_record(&out, &gone));
        let applied = get(&new_pod.resource, "mcpledger.server.name") == Some("search")
            && get(&new_pod.record, "mcpledger.org.id") == Some("acme-2")
            && get(&gone.resource, "mcpledger.server.name").is_none();
        if applied {
            assert_eq!(get(&new_pod.resource, "k8s.deployment.name"), Some("search"));
            break;
        }
        assert!(Instant::now() < deadline, "watch events not applied in 30 s: {new_pod:?} {gone:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(api.open_watches(true), 1, "one pod watch, scoped to the node");
}

/// The bodies of the receiver's records that contain `needle`.
fn bodies_with(path: &std::path::Path, needle: &str) -> Vec<(String, Seen)> {
    received(path).into_iter().filter(|(body, _)| body.contains(needle)).collect()
}

fn wait_body(path: &std::path::Path, needle: &str) -> (String, Seen) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = bodies_with(path, needle).into_iter().next() {
            return found;
        }
        assert!(Instant::now() < deadline, "no record with {needle:?} reached the receiver in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn append_cri(file: &std::path::Path, line: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file).unwrap();
    writeln!(f, "2026-11-24T10:00:00.000000001Z stdout F {line}").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_are_redacted_with_their_servers_policy_from_the_watched_policies() {
    let api = ApiServer::start().await;
    api.apply_namespace("tools", &[]);
    api.apply_pod(pod("tools", "github-7f9c4d-aaaaa", "uid-github", "node-a", "github", Some("github"), &[]));
    api.apply_pod(pod("tools", "notes-7f9c4d-bbbbb", "uid-notes", "node-a", "notes", Some("notes"), &[]));
    api.apply_mcp_server("tools", "github", Some("github-extra"));
    api.apply_mcp_server("tools", "notes", None);
    let rule = |name: &str, regex: &str| serde_json::json!({"customPatterns": [{"name": name, "regex": regex, "action": "mask"}]});
    api.apply_redaction_policy("mcp-ledger", "default", rule("ticket", r"TICKET-\d{4}"));
    api.apply_redaction_policy("tools", "github-extra", rule("build", r"BUILD-\d{4}"));

    let dir = scratch("node-logs-policy");
    let logs = dir.join("pods");
    let github_log = logs.join("tools_github-7f9c4d-aaaaa_uid-github/server/0.log");
    let notes_log = logs.join("tools_notes-7f9c4d-bbbbb_uid-notes/server/0.log");
    for f in [&github_log, &notes_log] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    }
    append_cri(&github_log, "probe-1 deploy BUILD-1234 for TICKET-5678 by ops@example.com");
    append_cri(&notes_log, "probe-2 deploy BUILD-1234 for TICKET-5678");

    let (_, out, _peers) = start(&api, &dir, &[&format!("--pod-logs-dir={}", logs.display())]);

    // github: the cluster default's rule, its own policy's rule and the built-in detectors.
    let (github, seen) = wait_body(&out, "probe-1");
    assert!(!github.contains("TICKET-5678"), "the cluster default applies: {github}");
    assert!(!github.contains("BUILD-1234"), "github's own policy applies: {github}");
    assert!(!github.contains("ops@example.com"), "the built-in detectors apply: {github}");
    assert_eq!(get(&seen.resource, "mcpledger.server.name"), Some("github"));
    assert_eq!(get(&seen.resource, "k8s.container.name"), Some("server"));
    let kinds = get(&seen.record, "mcpledger.redaction.kinds").unwrap_or_default();
    assert!(kinds.contains("build") && kinds.contains("ticket"), "the summary names the rules: {kinds}");
    // notes has no policy of its own: the default only.
    let (notes, _) = wait_body(&out, "probe-2");
    assert!(!notes.contains("TICKET-5678"), "{notes}");
    assert!(notes.contains("BUILD-1234"), "github's rule is not notes': {notes}");
    assert_eq!(api.open_policy_watches(), 2, "one watch of McpServers, one of McpRedactionPolicies");

    // Deleting github's own policy reaches the node agent through the watch.
    api.delete_redaction_policy("tools", "github-extra");
    let deadline = Instant::now() + Duration::from_secs(30);
    for probe in 3.. {
        let marker = format!("probe-{probe}");
        append_cri(&github_log, &format!("{marker} BUILD-9999"));
        let (line, _) = wait_body(&out, &marker);
        if line.contains("BUILD-9999") {
            break;
        }
        assert!(Instant::now() < deadline, "the deleted policy still applies after 30 s: {line}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
