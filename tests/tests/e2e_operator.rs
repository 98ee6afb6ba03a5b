//! Cluster test of the operator, under `make e2e`: installs the CRDs, runs the operator
//! binary on this machine with the test's own credentials, registers its webhooks by URL
//! (`https://$MCP_LEDGER_E2E_WEBHOOK_HOST:<port>`, 127.0.0.1 by default: set it to an
//! address the API server can reach, for example the Docker bridge gateway for kind), and
//! checks the inventory end to end:
//! an McpServer gets `addedBy` = the test's user; the pods of a Deployment it selects carry
//! the agent sidecar; a pod without the named port is admitted without it, with an Event;
//! a Reject review shows in status with its reason; bad objects are refused with messages
//! that say what to fix; a deleted server leaves a removal record in the history.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Kills the operator and removes what the test registered, even when an assertion fails.
struct Cleanup {
    operator: Option<Child>,
    webhook_name: String,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Namespaces first, while the operator runs: the finalizers of their McpServers
        // need it. The webhooks go whatever happens, so no later test meets them.
        let name = self.webhook_name.clone();
        let namespaces = self.namespaces.clone();
        mcp_ledger_tests::cleanup_blocking(move |client| async move {
            let dp = DeleteParams::default();
            mcp_ledger_tests::delete_namespaces(&client, &namespaces).await;
            let _ = Api::<MutatingWebhookConfiguration>::all(client.clone()).delete(&name, &dp).await;
            let _ = Api::<ValidatingWebhookConfiguration>::all(client.clone()).delete(&name, &dp).await;
        });
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 500 ms for up to `secs`; panics with `what` when it never holds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..secs * 2 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

fn webhooks(name: &str, base: &str, ca: &str, injection_ns: &str) -> (Value, Value) {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let hook = |hook: &str, path: &str, group: &str, resources: &[&str], ops: &[&str]| {
        json!({
            "name": format!("{hook}.{name}.mcpledger.dev"),
            "clientConfig": {"url": format!("{base}{path}"), "caBundle": ca},
            "rules": [{"apiGroups": [group], "apiVersions": ["*"], "resources": resources, "operations": ops}],
            "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun", "failurePolicy": "Fail",
            "timeoutSeconds": 10,
        })
    };
    let mut pods = hook("pods", "/mutate/pods", "", &["pods"], &["CREATE"]);
    pods["namespaceSelector"] =
        json!({"matchLabels": {"mcpledger.dev/injection": "enabled", "kubernetes.io/metadata.name": injection_ns}});
    pods["reinvocationPolicy"] = json!("IfNeeded");
    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            hook("servers", "/mutate/mcpservers", "mcpledger.dev", &["mcpservers"], &["CREATE", "UPDATE", "DELETE"]),
            hook("reviews", "/mutate/mcpserverreviews", "mcpledger.dev", &["mcpserverreviews"], &["CREATE", "UPDATE"]),
            pods,
        ]
    });
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            hook("redaction", "/validate/mcpredactionpolicies", "mcpledger.dev", &["mcpredactionpolicies"], &["CREATE", "UPDATE"]),
            hook("access", "/validate/mcpaccesspolicies", "mcpledger.dev", &["mcpaccesspolicies"], &["CREATE", "UPDATE"]),
        ]
    });
    (mutating, validating)
}

fn deployment(name: &str, app: &str, port_name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "server", "image": "registry.k8s.io/pause:3.10",
                                         "ports": [{"name": port_name, "containerPort": 8000}]}]}
            }
        }
    }))
    .unwrap()
}

/// A token of a new ServiceAccount that may `list mcpservers` in `ns` only.
async fn inventory_reader_token(client: &Client, ns: &str) -> String {
    let pp = PostParams::default();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    accounts.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap()).await.unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "reader"}, "rules": [
                {"apiGroups": ["mcpledger.dev"], "resources": ["mcpservers"], "verbs": ["list"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 600}})).unwrap();
    accounts.create_token_request("reader", &pp, &request).await.unwrap().status.expect("a token").token
}

/// GET over HTTPS with Python's TLS client, trusting only `ca`: (status, body).
fn https_get(host: &str, port: u16, ca: &str, path: &str, token: &str) -> (u16, String) {
    const CLIENT: &str = r#"
import json, ssl, sys, urllib.request, urllib.error
url, cafile, token = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
try:
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=cafile), timeout=20) as r:
        print(json.dumps([r.status, r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode()]))
"#;
    let ca_file = std::env::temp_dir().join(format!("mcpl-e2e-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca).unwrap();
    let url = format!("https://{host}:{port}{path}");
    let out = Command::new("python3").args(["-c", CLIENT, &url, ca_file.to_str().unwrap(), token]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("GET {url}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (v[0].as_u64().unwrap() as u16, v[1].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn operator_keeps_the_inventory_and_injects_the_agent() {
    let Some(client) = mcp_ledger_tests::e2e_client("operator_keeps_the_inventory_and_injects_the_agent").await else {
        return;
    };
    mcp_ledger_tests::install_crds(&client).await;
    let me = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview (Kubernetes 1.28+) tells who the test runs as")
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .expect("the test's user has a name");
    eprintln!("e2e user: {me}");

    let operator_ns = mcp_ledger_tests::unique_namespace("mcpl-e2e-op");
    let ns = mcp_ledger_tests::unique_namespace("mcpl-e2e-tools");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    mcp_ledger_tests::create_namespace(&client, &operator_ns).await;
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": ns, "labels": {"mcpledger.dev/injection": "enabled"}}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut cleanup =
        Cleanup { operator: None, webhook_name: ns.clone(), namespaces: vec![ns.clone(), operator_ns.clone()] };

    // The operator, with a certificate for the address the API server calls.
    let host = std::env::var("MCP_LEDGER_E2E_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let api_port = TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("{ns}-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = mcp_ledger_tests::write_tls(&dir, &host);
    let bin = mcp_ledger_tests::binary("MCP_LEDGER_OPERATOR_BIN", "mcp-ledger-operator");
    let child = Command::new(&bin)
        .args([
            &format!("--namespace={operator_ns}"),
            &format!("--operator-user={me}"),
            &format!("--webhook-listen=0.0.0.0:{port}"),
            &format!("--tls-cert={}", dir.join("tls.crt").display()),
            &format!("--tls-key={}", dir.join("tls.key").display()),
            &format!("--api-listen=0.0.0.0:{api_port}"),
            "--admin-listen=127.0.0.1:0",
            "--leader-election=true",
            "--lease-seconds=6",
            "--resync-seconds=20",
            "--agent-image=mcp-ledger/agent:e2e",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the operator {bin}: {e} (make e2e builds it)"));
    cleanup.operator = Some(child);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mutating, validating) = webhooks(&ns, &format!("https://{host}:{port}"), &ca, &ns);
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(mutating).unwrap())
        .await
        .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(validating).unwrap())
        .await
        .unwrap();

    let servers = mcp_ledger_tests::crd_api(&client, &ns, "McpServer", "mcpservers");
    let reviews = mcp_ledger_tests::crd_api(&client, &ns, "McpServerReview", "mcpserverreviews");
    let policies = mcp_ledger_tests::crd_api(&client, &ns, "McpRedactionPolicy", "mcpredactionpolicies");

    // An McpServer: the webhook records the creator (retrying while the webhook registers).
    let spec = json!({"selector": {"matchLabels": {"app": "github"}}, "port": "mcp", "owner": "platform@example.com"});
    let created = eventually(30, "the McpServer webhook to answer", || async {
        servers
            .create(&PostParams::default(), &mcp_ledger_tests::object("McpServer", "github", spec.clone()))
            .await
            .ok()
    })
    .await;
    assert_eq!(created.annotations().get("mcpledger.dev/added-by"), Some(&me));
    let status = eventually(60, "status.addedBy", || async {
        let s = servers.get("github").await.ok()?;
        (s.data["status"]["addedBy"] == json!(me)).then(|| s.data["status"].clone())
    })
    .await;
    assert_eq!(status["approval"]["state"], "Pending");
    let agent_cm = eventually(30, "the agent ConfigMap", || async {
        Api::<ConfigMap>::namespaced(client.clone(), &ns).get("mcp-ledger-agent").await.ok()
    })
    .await;
    assert!(agent_cm.data.unwrap_or_default().contains_key("github.json"));

    // The inventory API: a ServiceAccount that may list McpServers in this namespace only.
    let reader = inventory_reader_token(&client, &ns).await;
    let path = format!("/v1/inventory?namespace={ns}");
    let items = eventually(30, "the inventory API to list github with its creator", || async {
        let (status, body) = https_get(&host, api_port, &ca, &path, &reader);
        assert_ne!(status, 403, "the reader may list in its namespace: {body}");
        let items: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && items["items"][0]["addedBy"] == json!(me)).then_some(items)
    })
    .await;
    assert_eq!(items["items"][0]["name"], "github");
    let (status, body) = https_get(&host, api_port, &ca, "/v1/inventory", &reader);
    assert_eq!(status, 403, "cluster-wide needs cluster-wide rights: {body}");
    let (status, _) = https_get(&host, api_port, &ca, "/v1/inventory", "not-a-token");
    assert_eq!(status, 401);

    // A Deployment whose pods it selects: they carry the agent as a native sidecar.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("github", "github", "mcp")).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = eventually(60, "a pod of the Deployment", || async {
        pods.list(&ListParams::default().labels("app=github")).await.ok()?.items.into_iter().next()
    })
    .await;
    let spec = pod.spec.clone().unwrap();
    let agent = spec.init_containers.unwrap_or_default().into_iter().find(|c| c.name == "mcp-ledger-agent");
    let agent = agent.expect("the pod carries the agent sidecar");
    assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
    assert_eq!(agent.ports.unwrap()[0].name.as_deref(), Some("mcp"));
    assert_eq!(spec.containers[0].ports.as_ref().unwrap()[0].name.as_deref(), Some("mcpl-app"));
    eventually(60, "status.pods to list the injected pod", || async {
        let s = servers.get("github").await.ok()?;
        (s.data["status"]["injectedPods"] == json!(1)).then_some(())
    })
    .await;

    // A pod whose port does not match is admitted without the agent, and the server says why.
    let other_spec = json!({"selector": {"matchLabels": {"app": "noport"}}, "port": "mcp"});
    servers.create(&PostParams::default(), &mcp_ledger_tests::object("McpServer", "noport", other_spec)).await.unwrap();
    deployments.create(&PostParams::default(), &deployment("noport", "noport", "http")).await.unwrap();
    let pod = eventually(60, "a pod of the noport Deployment", || async {
        pods.list(&ListParams::default().labels("app=noport")).await.ok()?.items.into_iter().next()
    })
    .await;
    assert!(pod.spec.unwrap().init_containers.unwrap_or_default().is_empty(), "no agent without the port");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let note = eventually(60, "an InjectionSkipped Event on McpServer noport", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("InjectionSkipped")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("noport")
            })
            .and_then(|e| e.note)
    })
    .await;
    assert!(note.contains("spec.port 'mcp' matches no container port"), "{note}");

    // A Reject review: status says Rejected with the reason; the review is Applied.
    let reject = json!({"serverRef": {"name": "github"}, "decision": "Reject", "reason": "reads private repositories"});
    let review = reviews
        .create(&PostParams::default(), &mcp_ledger_tests::object("McpServerReview", "security-1", reject))
        .await
        .unwrap();
    assert_eq!(review.annotations().get("mcpledger.dev/reviewed-by"), Some(&me));
    let approval = eventually(60, "approval Rejected", || async {
        let s = servers.get("github").await.ok()?;
        (s.data["status"]["approval"]["state"] == "Rejected").then(|| s.data["status"]["approval"].clone())
    })
    .await;
    assert_eq!(approval["reason"], "reads private repositories");
    assert_eq!(approval["reviewedBy"], json!(me));
    eventually(60, "review phase Applied", || async {
        (reviews.get("security-1").await.ok()?.data["status"]["phase"] == "Applied").then_some(())
    })
    .await;
    let orphan = json!({"serverRef": {"name": "gitlab"}, "decision": "Approve"});
    reviews
        .create(&PostParams::default(), &mcp_ledger_tests::object("McpServerReview", "orphan", orphan))
        .await
        .unwrap();
    eventually(60, "review of an unknown server: ServerNotFound", || async {
        (reviews.get("orphan").await.ok()?.data["status"]["phase"] == "ServerNotFound").then_some(())
    })
    .await;

    // Bad objects are refused with messages that say what to fix.
    let refused = |r: Result<DynamicObject, kube::Error>| match r {
        Ok(o) => panic!("{} was accepted but should be refused", o.name_any()),
        Err(e) => e.to_string(),
    };
    let missing_policy =
        json!({"selector": {"matchLabels": {"app": "x"}}, "port": "mcp", "redactionPolicyRef": {"name": "nope"}});
    let message = refused(
        servers.create(&PostParams::default(), &mcp_ledger_tests::object("McpServer", "bad-ref", missing_policy)).await,
    );
    assert!(message.contains("McpRedactionPolicy 'nope', which does not exist"), "{message}");
    let bad_policy = json!({"customPatterns": [{"name": "ticket", "regex": "TCK-(["}]});
    let message = refused(
        policies
            .create(&PostParams::default(), &mcp_ledger_tests::object("McpRedactionPolicy", "bad", bad_policy))
            .await,
    );
    assert!(message.contains("ticket"), "names the rule: {message}");
    let no_reason = json!({"serverRef": {"name": "github"}, "decision": "Reject"});
    let message = refused(
        reviews
            .create(&PostParams::default(), &mcp_ledger_tests::object("McpServerReview", "no-reason", no_reason))
            .await,
    );
    assert!(message.contains("spec.reason is required"), "{message}");

    // Deleting the server leaves a removal record in the history.
    servers.delete("github", &DeleteParams::default()).await.unwrap();
    eventually(60, "the McpServer to be gone", || async {
        servers.get_opt("github").await.ok()?.is_none().then_some(())
    })
    .await;
    let history = eventually(30, "the history ConfigMap", || async {
        Api::<ConfigMap>::namespaced(client.clone(), &operator_ns).get("mcp-ledger-history").await.ok()
    })
    .await;
    let records: Value = serde_json::from_str(&history.data.unwrap()["history.json"]).unwrap();
    // The operator watches every namespace: other tests' servers may be in the history too.
    let record = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "github" && r["namespace"] == json!(ns))
        .unwrap_or_else(|| panic!("a removal record for {ns}/github: {records}"));
    assert_eq!(record["removedBy"], json!(me));
    assert_eq!(record["addedBy"], json!(me));
    assert!(record["removedAt"].is_string());

    // Deleting the namespace with its servers: their finalizers let it go.
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    eventually(120, "the namespace with McpServers to be deleted", || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    let history = Api::<ConfigMap>::namespaced(client.clone(), &operator_ns).get("mcp-ledger-history").await.unwrap();
    let records: Value = serde_json::from_str(&history.data.unwrap()["history.json"]).unwrap();
    let noport = records.as_array().unwrap().iter().any(|r| r["name"] == "noport" && r["namespace"] == json!(ns));
    assert!(noport, "a removal record for {ns}/noport: {records}");
    drop(cleanup);
}
