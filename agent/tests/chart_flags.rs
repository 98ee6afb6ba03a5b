//! The Helm chart's node agent DaemonSet passes only flags the agent binary knows (the
//! operator's chart test does the same for the operator).

mod common;

use std::process::Command;

#[test]
fn the_charts_node_agent_flags_exist() {
    let root = common::repo_root();
    let helm = root.join("target/tools/helm");
    assert!(helm.exists(), "{} is missing: run `make peers`", helm.display());
    let out = Command::new(helm)
        .args(["template", "rel"])
        .arg(root.join("charts/mcp-ledger"))
        .arg("-f")
        .arg(root.join("charts/mcp-ledger/ci/node-agent-values.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let daemonset = rendered.split("\n---").find(|d| d.contains("kind: DaemonSet")).expect("a DaemonSet");
    let doc: serde_yaml::Value = serde_yaml::from_str(daemonset).unwrap();
    let args = doc["spec"]["template"]["spec"]["containers"][0]["args"].as_sequence().unwrap().clone();
    let help = Command::new(env!("CARGO_BIN_EXE_mcp-ledger-agent")).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(args.len() >= 10);
    assert!(args.iter().any(|a| a.as_str() == Some("--jsonl=-")), "nodeAgent.stdout=jsonl is passed: {args:?}");
    for arg in args {
        let flag = arg.as_str().unwrap().split('=').next().unwrap().to_owned();
        assert!(help.contains(&format!("{flag} ")), "the chart passes {flag}, which mcp-ledger-agent does not know");
    }
}

#[test]
fn the_node_agent_needs_a_collector_or_stdout() {
    let root = common::repo_root();
    let out = Command::new(root.join("target/tools/helm"))
        .args(["template", "rel"])
        .arg(root.join("charts/mcp-ledger"))
        .args(["--set", "nodeAgent.enabled=true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nodeAgent.collectorEndpoint or nodeAgent.stdout is required"), "{err}");
    let out = Command::new(root.join("target/tools/helm"))
        .args(["template", "rel"])
        .arg(root.join("charts/mcp-ledger"))
        .args(["--set", "nodeAgent.enabled=true", "--set", "nodeAgent.stdout=csv"])
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(rendered.contains("- --csv=-") && !rendered.contains("--otlp-endpoint"), "{rendered}");
}
