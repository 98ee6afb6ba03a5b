//! Reconciler tests against an API server test double: tower-test's mock service stands in
//! for the API server (no real one can run here) and each scenario states the exact
//! requests the reconciler must make, in order, and the answers it gets.

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::*;

#[test]
fn retries_back_off_from_five_seconds_to_five_minutes() {
    let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(retry_delay(u32::MAX).as_secs(), 300);
}

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn context() -> (Arc<Context>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorder = Recorder::new(client.clone(), Reporter { controller: "mcp-ledger-operator".into(), instance: None });
    let settings = Settings {
        namespace: "mcp-ledger".into(),
        render: RenderSettings::default(),
        history_limit: 10,
        resync: Duration::from_secs(300),
    };
    (Context::new(client, recorder, Metrics::new(), settings), handle)
}

/// Expects the next request to be `method` on a path starting with `path`; answers
/// `status` with `body`; returns the request body.
async fn expect(handle: &mut ApiHandle, method: Method, path: &str, status: u16, body: Value) -> Value {
    let (request, send) = handle.next_request().await.unwrap_or_else(|| panic!("no request; expected {method} {path}"));
    let uri = request.uri().to_string();
    assert_eq!(request.method(), method, "unexpected request: {} {uri}", request.method());
    assert!(uri.starts_with(path), "expected {method} {path}, got {uri}");
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let sent = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    send.send_response(
        Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
    );
    sent
}

/// The reads of rendering a namespace's agent ConfigMap: its servers, its policies, the
/// cluster default policy (absent) and its access policies.
async fn expect_render_reads(handle: &mut ApiHandle, servers: Vec<Value>) {
    let base = "/apis/mcpledger.dev/v1alpha1/namespaces";
    expect(handle, Method::GET, &format!("{base}/tools/mcpservers"), 200, list("McpServerList", servers)).await;
    let empty = list("McpRedactionPolicyList", vec![]);
    expect(handle, Method::GET, &format!("{base}/tools/mcpredactionpolicies"), 200, empty).await;
    let default = format!("{base}/mcp-ledger/mcpredactionpolicies/default");
    expect(handle, Method::GET, &default, 404, not_found()).await;
    let access = list("McpAccessPolicyList", vec![]);
    expect(handle, Method::GET, &format!("{base}/tools/mcpaccesspolicies"), 200, access).await;
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn server() -> Value {
    json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServer",
        "metadata": {"name": "github", "namespace": "tools", "uid": "0b5e", "generation": 2,
                     "creationTimestamp": "2026-11-24T10:00:00Z", "resourceVersion": "10",
                     "finalizers": [names::FINALIZER],
                     "annotations": {names::ADDED_BY: "alice@example.com"}},
        "spec": {"selector": {"matchLabels": {"app": "github"}}, "port": "mcp"}
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "11"}, "items": items})
}

fn injected_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "github-1", "namespace": "tools", "labels": {"app": "github"},
                        "annotations": {names::INJECTED_ANNOTATION: "true"}},
           "spec": {"containers": [{"name": "server"}]}, "status": {"phase": "Running"}})
}

fn approve() -> Value {
    json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServerReview",
           "metadata": {"name": "ok", "namespace": "tools", "creationTimestamp": "2026-11-24T11:00:00Z",
                        "annotations": {names::REVIEWED_BY: "security@example.com"}},
           "spec": {"serverRef": {"name": "github"}, "decision": "Approve"}})
}

#[tokio::test]
async fn a_server_is_reconciled_into_status_events_and_the_agent_config_map() {
    let (ctx, mut api) = context();
    let object: McpServer = serde_json::from_value(server()).unwrap();
    let scenario = tokio::spawn(async move {
        expect(
            &mut api,
            Method::GET,
            "/api/v1/namespaces/tools/pods?&labelSelector=app%3Dgithub",
            200,
            list("PodList", vec![injected_pod()]),
        )
        .await;
        expect(
            &mut api,
            Method::GET,
            "/apis/mcpledger.dev/v1alpha1/namespaces/tools/mcpserverreviews",
            200,
            list("McpServerReviewList", vec![approve()]),
        )
        .await;
        let status = expect(&mut api, Method::PATCH, "/apis/mcpledger.dev/v1alpha1/namespaces/tools/mcpservers/github/status?&force=true&fieldManager=mcp-ledger-operator", 200, server()).await;
        let event =
            expect(&mut api, Method::POST, "/apis/events.k8s.io/v1/namespaces/tools/events", 201, json!({})).await;
        expect_render_reads(&mut api, vec![server()]).await;
        let cm = expect(
            &mut api,
            Method::PATCH,
            "/api/v1/namespaces/tools/configmaps/mcp-ledger-agent?&force=true&fieldManager=mcp-ledger-operator",
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mcp-ledger-agent"}}),
        )
        .await;
        (status, event, cm)
    });
    let action = reconcile_server(Arc::new(object), ctx.clone()).await.expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let (status, event, cm) = tokio::time::timeout(Duration::from_secs(5), scenario).await.unwrap().unwrap();

    assert_eq!(status["kind"], "McpServer");
    assert_eq!(status["metadata"]["resourceVersion"], "10", "the status write is conditional");
    let status = &status["status"];
    assert_eq!(status["addedBy"], "alice@example.com");
    assert_eq!(status["approval"]["state"], "Approved");
    assert_eq!(status["approval"]["reviewedBy"], "security@example.com");
    assert_eq!(status["pods"], json!([{"name": "github-1", "injected": true}]));
    assert_eq!(status["injectedPods"], 1);
    assert_eq!(status["observedGeneration"], 2);
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");

    assert_eq!(event["reason"], "Approved");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["name"], "github");
    assert_eq!(event["note"], "approved by security@example.com in McpServerReview ok");

    assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], "0b5e");
    assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/managed-by"], "mcp-ledger-operator");
    let config: mcp_ledger_crds::AgentConfig =
        serde_json::from_str(cm["data"]["github.json"].as_str().unwrap()).unwrap();
    assert_eq!(config.server.name, "github");
}

#[tokio::test]
async fn a_deleted_server_is_written_to_the_history_before_its_finalizer_goes() {
    let (ctx, mut api) = context();
    let mut value = server();
    value["metadata"]["deletionTimestamp"] = json!("2026-11-24T12:00:00Z");
    value["metadata"]["annotations"][names::REMOVED_BY] = json!("carol");
    let object: McpServer = serde_json::from_value(value.clone()).unwrap();
    let scenario = tokio::spawn(async move {
        expect(&mut api, Method::GET, "/api/v1/namespaces/mcp-ledger/configmaps/mcp-ledger-history", 404, not_found())
            .await;
        let created = expect(&mut api, Method::POST, "/api/v1/namespaces/mcp-ledger/configmaps?", 409, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"})).await;
        // The conflict is retried: read again, then replace with the resourceVersion read.
        let existing = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "mcp-ledger-history", "namespace": "mcp-ledger", "resourceVersion": "7"},
            "data": {"history.json": created["data"]["history.json"].as_str().unwrap().replace("\"0b5e\"", "\"older\"")}});
        expect(
            &mut api,
            Method::GET,
            "/api/v1/namespaces/mcp-ledger/configmaps/mcp-ledger-history",
            200,
            existing.clone(),
        )
        .await;
        let replaced =
            expect(&mut api, Method::PUT, "/api/v1/namespaces/mcp-ledger/configmaps/mcp-ledger-history", 200, existing)
                .await;
        let event =
            expect(&mut api, Method::POST, "/apis/events.k8s.io/v1/namespaces/tools/events", 201, json!({})).await;
        expect_render_reads(&mut api, vec![value.clone()]).await;
        // No server left in the namespace: the agent ConfigMap goes.
        expect(&mut api, Method::DELETE, "/api/v1/namespaces/tools/configmaps/mcp-ledger-agent", 404, not_found())
            .await;
        // Then the finalizer helper removes the finalizer with a JSON patch.
        let patch = expect(
            &mut api,
            Method::PATCH,
            "/apis/mcpledger.dev/v1alpha1/namespaces/tools/mcpservers/github",
            200,
            value,
        )
        .await;
        (replaced, event, patch)
    });
    reconcile_server(Arc::new(object), ctx).await.expect("cleanup succeeds");
    let (replaced, event, patch) = tokio::time::timeout(Duration::from_secs(5), scenario).await.unwrap().unwrap();
    let history = inventory::parse_history(replaced["data"]["history.json"].as_str());
    let removed: Vec<(&str, &str)> = history.iter().map(|r| (r.uid.as_str(), r.removed_by.as_str())).collect();
    assert_eq!(removed, [("older", "carol"), ("0b5e", "carol")]);
    assert_eq!(replaced["metadata"]["resourceVersion"], "7", "optimistic concurrency on the history");
    assert_eq!(event["reason"], "Removed");
    assert!(patch.to_string().contains("finalizers"), "{patch}");
}

#[tokio::test]
async fn a_server_deleted_with_its_namespace_lets_the_namespace_go() {
    // Found on a real API server: the namespace's deletion refuses every write there, and
    // the cleanup's ConfigMap render failed on that, so the finalizer stayed for good.
    let (ctx, mut api) = context();
    let mut value = server();
    value["metadata"]["deletionTimestamp"] = json!("2026-11-24T12:00:00Z");
    let object: McpServer = serde_json::from_value(value.clone()).unwrap();
    let mut sibling = server();
    sibling["metadata"]["name"] = json!("gitlab");
    sibling["metadata"]["uid"] = json!("9c1d");
    let terminating = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": "configmaps \"mcp-ledger-agent\" is forbidden: unable to create new content in namespace tools because it is being terminated",
        "details": {"name": "mcp-ledger-agent", "kind": "configmaps", "causes": [
            {"reason": "NamespaceTerminating", "message": "namespace tools is being terminated", "field": "metadata.namespace"}]}});
    let scenario = tokio::spawn(async move {
        let history = "/api/v1/namespaces/mcp-ledger/configmaps/mcp-ledger-history";
        expect(&mut api, Method::GET, history, 404, not_found()).await;
        let created = expect(&mut api, Method::POST, "/api/v1/namespaces/mcp-ledger/configmaps?", 201, json!({})).await;
        let events = "/apis/events.k8s.io/v1/namespaces/tools/events";
        expect(&mut api, Method::POST, events, 403, terminating.clone()).await;
        // A sibling not yet marked for deletion: the ConfigMap would be applied, and is refused.
        expect_render_reads(&mut api, vec![value.clone(), sibling]).await;
        let configmap = "/api/v1/namespaces/tools/configmaps/mcp-ledger-agent";
        expect(&mut api, Method::PATCH, configmap, 403, terminating).await;
        let servers = "/apis/mcpledger.dev/v1alpha1/namespaces/tools/mcpservers/github";
        let patch = expect(&mut api, Method::PATCH, servers, 200, value).await;
        (created, patch)
    });
    reconcile_server(Arc::new(object), ctx).await.expect("cleanup succeeds in a namespace being deleted");
    let (created, patch) = tokio::time::timeout(Duration::from_secs(5), scenario).await.unwrap().unwrap();
    let history = inventory::parse_history(created["data"]["history.json"].as_str());
    assert_eq!(history.iter().map(|r| r.uid.as_str()).collect::<Vec<_>>(), ["0b5e"]);
    assert!(patch.to_string().contains("finalizers"), "the finalizer goes: {patch}");
}

#[test]
fn only_the_namespace_lifecycle_refusal_counts_as_terminating() {
    let status = |code: u16, cause: &str| -> kube::core::Status {
        serde_json::from_value(json!({"status": "Failure", "code": code, "reason": "Forbidden", "message": "m",
            "details": {"causes": [{"reason": cause}]}}))
        .unwrap()
    };
    assert!(namespace_terminating(&status(403, "NamespaceTerminating")));
    assert!(!namespace_terminating(&status(403, "FieldValueForbidden")), "an RBAC or policy refusal stays an error");
    assert!(!namespace_terminating(&status(409, "NamespaceTerminating")));
}

#[tokio::test]
async fn an_api_server_that_fails_is_an_error_with_a_bounded_label_and_a_backoff() {
    let (ctx, mut api) = context();
    let object: McpServer = serde_json::from_value(server()).unwrap();
    let scenario = tokio::spawn(async move {
        expect(&mut api, Method::GET, "/api/v1/namespaces/tools/pods", 503, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503, "message": "etcdserver: leader changed"})).await;
    });
    let object = Arc::new(object);
    let error = reconcile_server(object.clone(), ctx.clone()).await.expect_err("the list fails");
    scenario.await.unwrap();
    assert_eq!(error.metric_label(), "finalizer");
    let action = error_policy::<McpServer>("mcpserver")(object.clone(), &error, ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let action = error_policy::<McpServer>("mcpserver")(object, &error, ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(10)), "the second failure waits longer");
    assert!(
        ctx.metrics
            .render()
            .contains(r#"mcp_ledger_operator_reconcile_errors_total{controller="mcpserver",kind="finalizer"} 2"#)
    );
}

#[tokio::test]
async fn a_review_of_an_unknown_server_says_so() {
    let (ctx, mut api) = context();
    let mut review = approve();
    review["spec"]["serverRef"]["name"] = json!("gitlab");
    let object: McpServerReview = serde_json::from_value(review.clone()).unwrap();
    let scenario = tokio::spawn(async move {
        expect(
            &mut api,
            Method::GET,
            "/apis/mcpledger.dev/v1alpha1/namespaces/tools/mcpservers/gitlab",
            404,
            not_found(),
        )
        .await;
        expect(
            &mut api,
            Method::GET,
            "/apis/mcpledger.dev/v1alpha1/namespaces/tools/mcpserverreviews",
            200,
            list("McpServerReviewList", vec![review.clone()]),
        )
        .await;
        let status = expect(
            &mut api,
            Method::PATCH,
            "/apis/mcpledger.dev/v1alpha1/namespaces/tools/mcpserverreviews/ok/status",
            200,
            review,
        )
        .await;
        let event =
            expect(&mut api, Method::POST, "/apis/events.k8s.io/v1/namespaces/tools/events", 201, json!({})).await;
        (status, event)
    });
    reconcile_review(Arc::new(object), ctx).await.unwrap();
    let (status, event) = tokio::time::timeout(Duration::from_secs(5), scenario).await.unwrap().unwrap();
    assert_eq!(status["status"]["phase"], "ServerNotFound");
    assert_eq!(status["status"]["reviewedBy"], "security@example.com");
    assert_eq!(event["type"], "Warning");
    assert!(event["note"].as_str().unwrap().starts_with("no McpServer tools/gitlab exists"));
}
