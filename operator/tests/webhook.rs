//! The admission webhook over real TLS: the operator's HTTPS server with a generated
//! certificate, and Python's `ssl` module (OpenSSL) as the client, verifying the chain as
//! the API server does. AdmissionReview v1 bodies go in; the JSON patch that comes back is
//! applied to the object as the API server would.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use mcp_ledger_crds::McpServer;
use mcp_ledger_operator::admission::{Effect, path};
use mcp_ledger_operator::inject::InjectSettings;
use mcp_ledger_operator::metrics::Metrics;
use mcp_ledger_operator::names;
use mcp_ledger_operator::webhook::{self, CertStore, Lookup, Webhook};
use serde_json::{Value, json};

struct Fixed(Vec<McpServer>);

impl Lookup for Fixed {
    fn servers(&self, namespace: &str) -> Vec<McpServer> {
        self.0.iter().filter(|s| s.metadata.namespace.as_deref() == Some(namespace)).cloned().collect()
    }
    fn redaction_policies(&self, _: &str) -> Vec<String> {
        vec!["strict".to_owned()]
    }
    fn redaction_policy(&self, _: &str, name: &str) -> Option<mcp_ledger_crds::McpRedactionPolicySpec> {
        // "strict" hashes with a key from the Secret hmac/key.
        (name == "strict").then(|| {
            serde_json::from_value(json!({"defaultAction": "hash", "hashKeySecretRef": {"name": "hmac", "key": "key"}}))
                .unwrap()
        })
    }
}

struct Running {
    addr: SocketAddr,
    dir: PathBuf,
    metrics: Metrics,
    effects: Arc<Mutex<Vec<Effect>>>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start(servers: Vec<McpServer>) -> Running {
    let dir = &support::tempdir();
    let (ca, cert, key) = support::pki("first");
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.join("tls.key"), &key).unwrap();
    let store = CertStore::load(dir.join("tls.crt"), dir.join("tls.key")).unwrap();
    let metrics = Metrics::new();
    let effects = Arc::new(Mutex::new(Vec::new()));
    let sink = effects.clone();
    let app = Arc::new(Webhook {
        lookup: Arc::new(Fixed(servers)),
        inject: InjectSettings::default(),
        operator_user: "system:serviceaccount:mcp-ledger:mcp-ledger-operator".to_owned(),
        metrics: metrics.clone(),
        effects: Arc::new(move |e| {
            sink.lock().unwrap().push(e);
            async {}.boxed()
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(webhook::serve(listener, webhook::tls_config(store.clone()), webhook::handler(app), rx.clone()));
    tokio::spawn(store.clone().watch(Duration::from_millis(100), metrics.clone(), rx));
    Running { addr, dir: dir.to_owned(), metrics, effects, _stop: tx }
}

fn server() -> McpServer {
    serde_json::from_value(json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServer",
        "metadata": {"name": "github", "namespace": "tools"},
        "spec": {"selector": {"matchLabels": {"app": "github"}}, "port": "mcp"}
    }))
    .unwrap()
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "github-5d8f-", "namespace": "tools", "labels": {"app": "github"}},
        "spec": {"containers": [{"name": "server", "image": "example.invalid/github-mcp:1",
                                 "ports": [{"name": "mcp", "containerPort": 8000, "protocol": "TCP"}]}]}
    })
}

fn review(kind: (&str, &str, &str), operation: &str, user: &str, object: Option<Value>, old: Option<Value>) -> Vec<u8> {
    let (group, kind, resource) = kind;
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "8d4e1f0a-2b3c-4d5e-8f90-a1b2c3d4e5f6",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": object.as_ref().or(old.as_ref()).and_then(|o| o["metadata"]["name"].as_str()).unwrap_or(""),
            "namespace": "tools", "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap()
}

fn apply_patch(response: &Value, object: &Value) -> Value {
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    let patch = base64_decode(response["response"]["patch"].as_str().expect("a patch"));
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

/// The patch field is base64 (standard alphabet) in JSON, as `[]byte` is in Go.
fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).expect("the patch is base64")
}

fn ca_of(running: &Running) -> String {
    std::fs::read_to_string(running.dir.join("ca.pem")).unwrap()
}

#[tokio::test]
async fn a_pod_review_over_tls_comes_back_as_a_patch_that_injects_the_agent() {
    let running = start(vec![server()]).await;
    let object = pod();
    let (status, body) = support::post(
        running.addr,
        path::PODS,
        &ca_of(&running),
        review(("", "Pod", "pods"), "CREATE", "rs", Some(object.clone()), None),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    assert_eq!(response["response"]["uid"], "8d4e1f0a-2b3c-4d5e-8f90-a1b2c3d4e5f6");
    assert_eq!(response["response"]["allowed"], true);
    let patched = apply_patch(&response, &object);
    assert_eq!(patched["spec"]["containers"][0]["ports"][0]["name"], "mcpl-app");
    let agent = &patched["spec"]["initContainers"][0];
    assert_eq!(agent["name"], names::AGENT_CONTAINER);
    assert_eq!(agent["ports"][0]["name"], "mcp");
    assert_eq!(agent["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(patched["metadata"]["annotations"][names::INJECTED_ANNOTATION], "true");
    let metrics = running.metrics.render();
    assert!(metrics.contains(r#"mcp_ledger_operator_injections_total{outcome="injected"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"mcp_ledger_operator_webhook_requests_total{outcome="injected",webhook="pods"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn server_create_and_delete_record_who_over_tls() {
    let running = start(vec![]).await;
    let object = serde_json::to_value(server()).unwrap();
    let kind = ("mcpledger.dev", "McpServer", "mcpservers");
    let (status, body) = support::post(
        running.addr,
        path::SERVERS,
        &ca_of(&running),
        review(kind, "CREATE", "alice@example.com", Some(object.clone()), None),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let patched = apply_patch(&serde_json::from_str(&body).unwrap(), &object);
    assert_eq!(patched["metadata"]["annotations"][names::ADDED_BY], "alice@example.com");

    let (status, body) = support::post(
        running.addr,
        path::SERVERS,
        &ca_of(&running),
        review(kind, "DELETE", "carol", None, Some(patched)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        running.effects.lock().unwrap().as_slice(),
        [Effect::RecordRemoval { namespace: "tools".into(), server: "github".into(), user: "carol".into() }]
    );
}

#[tokio::test]
async fn malformed_reviews_get_a_400_that_says_why() {
    let running = start(vec![]).await;
    let (status, body) = support::post(running.addr, path::PODS, &ca_of(&running), b"{\"apiVersion\":".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("the body is not an AdmissionReview"), "{body}");
    let (status, body) = support::post(running.addr, "/mutate/nothing", &ca_of(&running), b"{}".to_vec()).await;
    assert_eq!(status, 404, "{body}");
    let metrics = running.metrics.render();
    assert!(
        metrics.contains(r#"mcp_ledger_operator_webhook_requests_total{outcome="invalid",webhook="pods"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_certificate_rotated_mid_run_is_served_without_a_restart() {
    let running = start(vec![server()]).await;
    let old_ca = ca_of(&running);
    let body = || review(("", "Pod", "pods"), "CREATE", "rs", Some(pod()), None);
    assert_eq!(support::post(running.addr, path::PODS, &old_ca, body()).await.0, 200);

    // A half-written rotation (new certificate, key not yet replaced) is not taken.
    let (new_ca, cert, key) = support::pki("rotated");
    std::fs::write(running.dir.join("tls.crt"), &cert).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        support::post(running.addr, path::PODS, &old_ca, body()).await.0,
        200,
        "the previous pair is still served"
    );
    assert!(running.metrics.render().contains(r#"mcp_ledger_operator_certificate_reloads_total{result="error"}"#));

    // The key arrives: the watcher swaps the pair in; new connections see the new chain.
    std::fs::write(running.dir.join("tls.key"), &key).unwrap();
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if support::post(running.addr, path::PODS, &new_ca, body()).await.0 == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "the rotated certificate was never served");
    let (status, error) = support::post(running.addr, path::PODS, &old_ca, body()).await;
    assert_eq!(status, 0, "a client that trusts only the old CA must fail the handshake: {error}");
    assert!(error.contains("CERTIFICATE_VERIFY_FAILED"), "{error}");
    assert!(running.metrics.render().contains(r#"mcp_ledger_operator_certificate_reloads_total{result="ok"} 1"#));
}
