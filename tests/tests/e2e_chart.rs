//! Cluster test of the Helm chart, under `make e2e`: `helm install` of the chart into the
//! cluster that KUBECONFIG points to (with the pinned helm from `make peers`), then the
//! CRDs are Established, the webhook configurations carry the CA bundle of the certificate
//! Secret, the operator Deployment and the default redaction policy exist; `helm uninstall`
//! cleans up. The images need not be pullable for this: the webhooks are installed with
//! failurePolicy Ignore so an operator that cannot start does not block the cluster.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams};
use serde::Deserialize as _;

fn helm(args: &[&str]) -> std::process::Output {
    let helm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/helm");
    assert!(helm.exists(), "{} is missing: run `make peers`", helm.display());
    Command::new(helm).args(args).output().expect("helm runs")
}

#[tokio::test]
async fn the_chart_installs_with_crds_established_and_webhooks_configured() {
    let Some(client) =
        mcp_ledger_tests::e2e_client("the_chart_installs_with_crds_established_and_webhooks_configured").await
    else {
        return;
    };
    let ns = mcp_ledger_tests::unique_namespace("mcpl-e2e-chart");
    mcp_ledger_tests::create_namespace(&client, &ns).await;
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/mcp-ledger");
    let release = "e2e";
    let out = helm(&[
        "install",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        &ns,
        "--set",
        "webhook.failurePolicy=Ignore",
        "--set",
        "operator.replicas=1",
    ]);
    let installed = out.status.success();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (check_client, check_ns) = (client.clone(), ns.clone());
    let check = async move {
        let (client, ns) = (check_client, check_ns);
        assert!(installed, "helm install: {stderr}");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for (_, crd) in mcp_ledger_crds::crds() {
            let name = crd.metadata.name.unwrap();
            let got = crds.get(&name).await.unwrap_or_else(|e| panic!("CRD {name} after helm install: {e}"));
            let established = got
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            assert!(established, "CRD {name} is not Established");
        }
        let full = format!("{release}-mcp-ledger");
        let secret = Api::<Secret>::namespaced(client.clone(), &ns).get(&format!("{full}-webhook-tls")).await.unwrap();
        let ca = secret.data.unwrap()["ca.crt"].clone();
        let hooks = Api::<MutatingWebhookConfiguration>::all(client.clone()).get(&full).await.unwrap();
        for hook in hooks.webhooks.unwrap() {
            assert_eq!(hook.client_config.ca_bundle.as_ref(), Some(&ca), "webhook {} has the CA bundle", hook.name);
        }
        Api::<Deployment>::namespaced(client.clone(), &ns).get(&format!("{full}-operator")).await.unwrap();
        let policies = mcp_ledger_tests::crd_api(&client, &ns, "McpRedactionPolicy", "mcpredactionpolicies");
        policies.get("default").await.expect("the default redaction policy is installed");
    };
    let result = tokio::spawn(check).await;
    let _ = helm(&["uninstall", release, "--namespace", &ns]);
    let _ = Api::<Namespace>::all(client).delete(&ns, &DeleteParams::default()).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Every value set the chart tests render (the defaults and each file in `ci/`) gives
/// manifests the API server accepts in a server-side dry run: the real schemas, defaulting
/// and validation of the cluster's own version. Kinds of CRDs the cluster does not serve
/// (cert-manager, Prometheus Operator) are named and skipped.
#[tokio::test]
async fn every_value_set_renders_manifests_the_api_server_accepts() {
    let Some(client) = mcp_ledger_tests::e2e_client("every_value_set_renders_manifests_the_api_server_accepts").await
    else {
        return;
    };
    // The chart's own kinds are served (the default McpRedactionPolicy is checked too).
    mcp_ledger_tests::install_crds(&client).await;
    let ns = mcp_ledger_tests::unique_namespace("mcpl-e2e-render");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    mcp_ledger_tests::create_namespace(&client, &ns).await;
    let discovery = kube::Discovery::new(client.clone()).run().await.expect("API discovery");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/mcp-ledger");
    let mut value_sets: Vec<Option<std::path::PathBuf>> = vec![None];
    for entry in std::fs::read_dir(chart.join("ci")).unwrap() {
        value_sets.push(Some(entry.unwrap().path()));
    }
    let (mut accepted, mut failures, mut skipped) = (0, Vec::new(), std::collections::BTreeSet::new());
    for values in &value_sets {
        let label = values.as_ref().map_or("defaults".to_owned(), |p| p.display().to_string());
        let mut args = vec!["template", "e2e", chart.to_str().unwrap(), "--namespace", &ns];
        if let Some(p) = values {
            args.extend(["--values", p.to_str().unwrap()]);
        }
        let out = helm(&args);
        assert!(out.status.success(), "helm template ({label}): {}", String::from_utf8_lossy(&out.stderr));
        for doc in serde_yaml::Deserializer::from_slice(&out.stdout) {
            let value = serde_json::Value::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            match mcp_ledger_tests::dry_run_apply(&client, &discovery, &ns, &value).await {
                Some(Ok(())) => accepted += 1,
                Some(Err(e)) => failures.push(format!("{label}: {e}")),
                None => {
                    let kind = format!(
                        "{}/{}",
                        value["apiVersion"].as_str().unwrap_or(""),
                        value["kind"].as_str().unwrap_or("")
                    );
                    assert!(!kind.starts_with("mcpledger.dev/"), "the chart's own kinds are served: {kind}");
                    skipped.insert(kind);
                }
            }
        }
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    eprintln!("{accepted} manifests accepted in a dry run; kinds not served by this cluster, skipped: {skipped:?}");
    assert!(failures.is_empty(), "the API server refused rendered manifests:\n{}", failures.join("\n"));
    assert!(accepted >= 20, "only {accepted} manifests were checked");
}
