//! The Helm chart, rendered by a real `helm` (scripts/install-helm.sh) for the default
//! values and every file in charts/mcp-ledger/ci/: `helm lint` passes, every manifest
//! validates against the Kubernetes 1.30 OpenAPI schemas (kubernetes-validate, strict), and
//! the chart agrees with the code: the operator flags it passes exist, the webhook paths
//! are the ones the operator serves, the certificate matches its key and the CA bundle,
//! the default redaction policy compiles.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use mcp_ledger_crds::McpRedactionPolicy;
use mcp_ledger_operator::admission::path;
use mcp_ledger_operator::webhook::CertStore;
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> PathBuf {
    let helm = root().join("target/tools/helm");
    assert!(helm.exists(), "{} is missing: run `make peers` (scripts/install-helm.sh)", helm.display());
    helm
}

fn chart() -> PathBuf {
    root().join("charts/mcp-ledger")
}

/// Every values file to test: None is the defaults.
fn value_sets() -> Vec<Option<PathBuf>> {
    let mut sets = vec![None];
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/mcp-ledger/ci exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "ci/ holds the non-default value sets");
    sets.extend(files.into_iter().map(Some));
    sets
}

fn render(values: &Option<PathBuf>, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "rel"]).arg(chart()).args(["--namespace", "mcp-ledger"]).args(extra);
    if let Some(v) = values {
        cmd.arg("-f").arg(v);
    }
    cmd.output().expect("helm runs")
}

fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|v| v.get("kind").is_some())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

#[test]
fn the_chart_lints_and_renders_valid_manifests_for_every_value_set() {
    for values in value_sets() {
        let name = values.as_ref().map(|p| p.display().to_string()).unwrap_or("defaults".into());
        let mut lint = Command::new(helm());
        lint.arg("lint").arg(chart());
        if let Some(v) = &values {
            lint.arg("-f").arg(v);
        }
        let out = lint.output().unwrap();
        assert!(out.status.success(), "helm lint {name}: {}", String::from_utf8_lossy(&out.stdout));

        let out = render(&values, &[]);
        assert!(out.status.success(), "helm template {name}: {}", String::from_utf8_lossy(&out.stderr));
        let file = std::env::temp_dir().join(format!("mcp-ledger-chart-{}.yaml", std::process::id()));
        std::fs::write(&file, &out.stdout).unwrap();
        let validate = Command::new(root().join(".venv/bin/kubernetes-validate"))
            .args(["--strict", "-k", "1.30.0", "--quiet", "--no-warn"])
            .arg(&file)
            .output()
            .expect("kubernetes-validate is installed by `make peers`");
        let _ = std::fs::remove_file(&file);
        assert!(
            validate.status.success(),
            "{name}: manifests do not validate against Kubernetes 1.30:\n{}{}",
            String::from_utf8_lossy(&validate.stdout),
            String::from_utf8_lossy(&validate.stderr)
        );
    }
}

#[test]
fn the_chart_agrees_with_the_operator() {
    let help = Command::new(env!("CARGO_BIN_EXE_mcp-ledger-operator")).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let served = [path::SERVERS, path::REVIEWS, path::PODS, path::REDACTION_POLICIES, path::ACCESS_POLICIES];
    for values in value_sets() {
        let name = values.as_ref().map(|p| p.display().to_string()).unwrap_or("defaults".into());
        let docs = documents(&String::from_utf8(render(&values, &[]).stdout).unwrap());
        let deployment = of_kind(&docs, "Deployment")[0];
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        for arg in container["args"].as_sequence().unwrap() {
            let flag = arg.as_str().unwrap().split('=').next().unwrap();
            assert!(
                help.contains(&format!("{flag} ")),
                "{name}: the chart passes {flag}, which the operator does not know"
            );
        }
        let service = *of_kind(&docs, "Service")
            .iter()
            .find(|s| s["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-operator")))
            .expect("the operator's Service");
        let service_name = service["metadata"]["name"].as_str().unwrap();
        let mut paths = Vec::new();
        for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
            for hook in of_kind(&docs, kind)[0]["webhooks"].as_sequence().unwrap() {
                let svc = &hook["clientConfig"]["service"];
                assert_eq!(svc["name"].as_str(), Some(service_name), "{name}: webhooks call the operator's Service");
                assert_eq!(svc["port"].as_i64(), Some(443));
                paths.push(svc["path"].as_str().unwrap().to_owned());
            }
        }
        paths.sort();
        let mut expected: Vec<String> = served.iter().map(|p| (*p).to_owned()).collect();
        expected.sort();
        assert_eq!(paths, expected, "{name}: one webhook per path the operator serves");
        let webhook_port =
            service["spec"]["ports"].as_sequence().unwrap().iter().find(|p| p["port"].as_i64() == Some(443)).unwrap();
        assert_eq!(webhook_port["targetPort"].as_str(), Some("webhook"));

        for policy in of_kind(&docs, "McpRedactionPolicy") {
            let policy: McpRedactionPolicy = serde_yaml::from_value(policy.clone()).expect("the default policy parses");
            assert_eq!(policy.metadata.name.as_deref(), Some(mcp_ledger_crds::redaction::CLUSTER_DEFAULT_POLICY));
            mcp_ledger_agent::redact::Redactor::compile(&policy.spec, None).expect("the default policy compiles");
        }
    }
}

#[test]
fn a_helm_made_certificate_matches_its_key_and_the_ca_bundle() {
    let docs = documents(&String::from_utf8(render(&None, &[]).stdout).unwrap());
    let secret = of_kind(&docs, "Secret")[0];
    let b64 = |k: &str| secret["data"][k].as_str().unwrap().to_owned();
    let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    let dir = std::env::temp_dir().join(format!("mcp-ledger-chart-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), decode(&b64("tls.crt"))).unwrap();
    std::fs::write(dir.join("tls.key"), decode(&b64("tls.key"))).unwrap();
    CertStore::load(dir.join("tls.crt"), dir.join("tls.key")).expect("the operator can serve the chart's certificate");
    let _ = std::fs::remove_dir_all(&dir);
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        for hook in of_kind(&docs, kind)[0]["webhooks"].as_sequence().unwrap() {
            assert_eq!(hook["clientConfig"]["caBundle"].as_str(), Some(b64("ca.crt").as_str()));
        }
    }
    // With cert-manager the chart asks for a Certificate and lets cert-manager inject the CA.
    let cm = documents(
        &String::from_utf8(render(&None, &["--set", "webhook.certificate.source=cert-manager"]).stdout).unwrap(),
    );
    assert!(of_kind(&cm, "Secret").is_empty());
    assert_eq!(of_kind(&cm, "Certificate").len(), 1);
    let hooks = of_kind(&cm, "MutatingWebhookConfiguration")[0];
    assert_eq!(
        hooks["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str(),
        Some("mcp-ledger/rel-mcp-ledger-operator")
    );
    assert!(hooks["webhooks"][0]["clientConfig"].get("caBundle").is_none());
}

#[test]
fn the_values_schema_refuses_wrong_types_with_the_field_named() {
    for (set, field) in [
        ("operator.replicas=two", "replicas"),
        ("webhook.failurePolicy=Sometimes", "failurePolicy"),
        ("injection.rejectedPods=maybe", "rejectedPods"),
        ("injection.proxyPort=70000", "proxyPort"),
        ("operator.unknownKnob=1", "unknownKnob"),
    ] {
        let out = render(&None, &["--set", set]);
        assert!(!out.status.success(), "helm accepted --set {set}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "--set {set}: the error names {field}: {stderr}");
    }
}
