//! The files in `examples/` are what the README tells users to apply: every mcp-ledger
//! object parses into its type (unknown fields refused), policies compile, the Kubernetes
//! objects validate against the 1.30 schemas, and the example Deployment's pods are injected
//! by the example McpServer.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::core::Selector;
use mcp_ledger_crds::{McpAccessPolicy, McpRedactionPolicy, McpServer, McpServerReview};
use mcp_ledger_operator::admission::check_access_policy;
use mcp_ledger_operator::inject::{self, InjectSettings, Outcome};
use serde_yaml::Value;

#[test]
fn every_example_is_valid_and_the_example_server_gets_the_agent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 4, "examples/ holds a server, a review, a redaction policy and an access policy");
    let (mut servers, mut deployments, mut builtin) = (Vec::new(), Vec::new(), String::new());
    let mut kinds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in text.split("\n---") {
            let value: Value = serde_yaml::from_str(doc).unwrap();
            let kind = value["kind"].as_str().unwrap_or_else(|| panic!("{}: a document without kind", file.display()));
            kinds.push(kind.to_owned());
            let name = file.display();
            match kind {
                "McpServer" => {
                    let s: McpServer = serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(!Selector::try_from(s.spec.selector.clone()).unwrap().selects_all());
                    servers.push(s);
                }
                "McpServerReview" => {
                    serde_yaml::from_value::<McpServerReview>(value).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                "McpRedactionPolicy" => {
                    let p: McpRedactionPolicy = serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
                    mcp_ledger_agent::redact::Redactor::compile(&p.spec, Some(vec![1; 32]))
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                "McpAccessPolicy" => {
                    let p: McpAccessPolicy = serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(check_access_policy(&p.spec), Vec::<String>::new(), "{name}");
                }
                _ => {
                    if kind == "Deployment" {
                        deployments.push(serde_yaml::from_value::<Deployment>(value).unwrap());
                    }
                    builtin.push_str(doc);
                    builtin.push_str("\n---\n");
                }
            }
        }
    }
    for kind in ["McpServer", "McpServerReview", "McpRedactionPolicy", "McpAccessPolicy", "Deployment", "Service"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} among the examples");
    }

    let file = std::env::temp_dir().join(format!("mcp-ledger-examples-{}.yaml", std::process::id()));
    std::fs::write(&file, builtin).unwrap();
    let validate = Command::new(root.join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "-k", "1.30.0", "--quiet", "--no-warn"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate is installed by `make peers`");
    let _ = std::fs::remove_file(&file);
    assert!(validate.status.success(), "{}", String::from_utf8_lossy(&validate.stdout));

    for d in deployments {
        let template = d.spec.unwrap().template;
        let pod = Pod { metadata: template.metadata.unwrap_or_default(), spec: template.spec, status: None };
        match inject::decide(&pod, &servers, &InjectSettings::default()) {
            Outcome::Inject { server, .. } => assert_eq!(server, "everything"),
            other => panic!("the example Deployment is not injected: {other:?}"),
        }
    }
}
