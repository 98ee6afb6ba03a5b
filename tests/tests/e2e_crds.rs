//! Cluster test: the generated CRDs install, become Established, and the API server
//! refuses bad objects with messages that name the field. Runs under `make e2e`.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use mcp_ledger_tests::MANAGER;

/// Server-side applies with strict field validation (as `kubectl apply` does) as a dry run
/// and returns the API server's refusal message.
async fn refusal(api: &Api<DynamicObject>, obj: &DynamicObject) -> String {
    let name = obj.metadata.name.clone().unwrap();
    let params = PatchParams { dry_run: true, ..PatchParams::apply(MANAGER).validation_strict() };
    match api.patch(&name, &params, &Patch::Apply(obj)).await {
        Ok(_) => panic!("the API server accepted {name}, which should be refused"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn crds_install_and_refuse_bad_objects() {
    let Some(client) = mcp_ledger_tests::e2e_client("crds_install_and_refuse_bad_objects").await else {
        return;
    };
    mcp_ledger_tests::install_crds(&client).await;

    let ns = mcp_ledger_tests::unique_namespace("mcpl-e2e-crds");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    mcp_ledger_tests::create_namespace(&client, &ns).await;

    let servers = mcp_ledger_tests::crd_api(&client, &ns, "McpServer", "mcpservers");
    let reviews = mcp_ledger_tests::crd_api(&client, &ns, "McpServerReview", "mcpserverreviews");
    let good =
        json!({"selector": {"matchLabels": {"app": "github-mcp"}}, "port": "mcp", "owner": "platform@example.com"});

    // A good server is accepted and defaulted.
    let created = servers
        .create(&PostParams::default(), &mcp_ledger_tests::object("McpServer", "github", good.clone()))
        .await
        .expect("a good McpServer is accepted");
    assert_eq!(created.data["spec"]["path"], "/mcp", "path is defaulted");
    assert_eq!(created.data["spec"]["transport"], "streamable-http", "transport is defaulted");
    assert_eq!(created.data["spec"]["toolPolicy"], "observe", "toolPolicy is defaulted");

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown-field",
            {
                let mut s = good.clone();
                s["addedBy"] = json!("mallory");
                s
            },
            "spec.addedBy",
        ),
        (
            "port-too-big",
            {
                let mut s = good.clone();
                s["port"] = json!(70000);
                s
            },
            "spec.port",
        ),
        (
            "port-bad-name",
            {
                let mut s = good.clone();
                s["port"] = json!("Bad_Name");
                s
            },
            "spec.port",
        ),
        (
            "empty-selector",
            {
                let mut s = good.clone();
                s["selector"] = json!({});
                s
            },
            "spec.selector",
        ),
        (
            "bad-transport",
            {
                let mut s = good.clone();
                s["transport"] = json!("grpc");
                s
            },
            "spec.transport",
        ),
    ];
    for (name, spec, field) in cases {
        let message = refusal(&servers, &mcp_ledger_tests::object("McpServer", name, spec)).await;
        assert!(message.contains(field), "{name}: the refusal should name {field}: {message}");
    }

    let message = refusal(
        &reviews,
        &mcp_ledger_tests::object(
            "McpServerReview",
            "reject-no-reason",
            json!({"serverRef": {"name": "github"}, "decision": "Reject"}),
        ),
    )
    .await;
    assert!(message.contains("spec.reason is required"), "{message}");
    reviews
        .create(
            &PostParams::default(),
            &mcp_ledger_tests::object(
                "McpServerReview",
                "approve",
                json!({"serverRef": {"name": "github"}, "decision": "Approve"}),
            ),
        )
        .await
        .expect("an Approve review is accepted");
    let edit = PatchParams::apply(MANAGER).force();
    let err = reviews
        .patch(
            "approve",
            &edit,
            &Patch::Apply(&mcp_ledger_tests::object(
                "McpServerReview",
                "approve",
                json!({"serverRef": {"name": "github"}, "decision": "Reject", "reason": "x"}),
            )),
        )
        .await
        .expect_err("a review cannot be edited");
    assert!(err.to_string().contains("cannot be changed"), "{err}");

    // addedBy is immutable in status once recorded.
    let status = PatchParams::apply(MANAGER).force();
    servers
        .patch_status(
            "github",
            &status,
            &Patch::Apply(
                json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServer", "status": {"addedBy": "alice"}}),
            ),
        )
        .await
        .expect("the first addedBy is accepted");
    let err = servers
        .patch_status(
            "github",
            &status,
            &Patch::Apply(
                json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServer", "status": {"addedBy": "mallory"}}),
            ),
        )
        .await
        .expect_err("addedBy cannot change");
    assert!(err.to_string().contains("status.addedBy cannot be changed"), "{err}");

    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}

/// The files of `examples/` (what the README walks a user through) are accepted by the API
/// server in a server-side dry run: the Namespace as it is, the rest in a test namespace.
#[tokio::test]
async fn the_examples_are_accepted_by_the_api_server() {
    let Some(client) = mcp_ledger_tests::e2e_client("the_examples_are_accepted_by_the_api_server").await else {
        return;
    };
    mcp_ledger_tests::install_crds(&client).await;
    let ns = mcp_ledger_tests::unique_namespace("mcpl-e2e-examples");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    mcp_ledger_tests::create_namespace(&client, &ns).await;
    let discovery = kube::Discovery::new(client.clone()).run().await.expect("API discovery");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (mut accepted, mut failures) = (Vec::new(), Vec::new());
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            let what = format!("{}: {} {}", file.display(), value["kind"], value["metadata"]["name"]);
            match mcp_ledger_tests::dry_run_apply(&client, &discovery, &ns, &value).await {
                Some(Ok(())) => accepted.push(what),
                Some(Err(e)) => failures.push(format!("{what}: {e}")),
                None => failures.push(format!("{what}: kind not served by the cluster")),
            }
        }
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    assert!(failures.is_empty(), "refused examples:\n{}", failures.join("\n"));
    // Namespace, Deployment, Service, McpServer, two policies, a review.
    assert!(accepted.len() >= 7, "only {} example objects: {accepted:?}", accepted.len());
}
