use mcp_ledger_crds::redaction::{Action, HeaderMode, UnscannableAction};
use mcp_ledger_crds::server::{Approval, McpServerStatus, ToolFingerprint};
use serde_json::json;

use super::*;
use crate::inject::tests::server;

fn policy(name: &str, spec: serde_json::Value) -> McpRedactionPolicy {
    serde_json::from_value(json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpRedactionPolicy",
        "metadata": {"name": name, "namespace": "tools"}, "spec": spec
    }))
    .unwrap()
}

fn spec(v: serde_json::Value) -> McpRedactionPolicySpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_server_policy_adds_to_the_default_and_cannot_weaken_it() {
    let base = spec(json!({
        "headers": {"deny": ["X-Tenant"], "action": "mask"},
        "detectors": [{"name": "ip-address", "enabled": false}],
        "jsonPaths": [{"name": "password", "path": "$.params.arguments.password", "action": "drop"}],
        "defaultAction": "mask",
        "onUnscannable": "drop-record"
    }));
    let extra = spec(json!({
        "headers": {"mode": "allow-list", "allow": ["content-type"], "deny": ["x-internal"], "action": "drop"},
        "detectors": [{"name": "secrets", "enabled": false}, {"name": "ip-address", "enabled": true}, {"name": "email", "enabled": true, "action": "drop"}],
        "jsonPaths": [{"name": "password", "path": "$.result.password", "action": "mask"}],
        "customPatterns": [{"name": "ticket", "regex": "TCK-[0-9]{6}"}],
        "defaultAction": "hash",
        "redactIpAddresses": true,
        "hashKeySecretRef": {"name": "hmac", "key": "key"}
    }));
    let merged = merge_policies(&base, &extra);
    assert_eq!(merged.headers.mode, HeaderMode::AllowList);
    assert_eq!(merged.headers.allow, ["content-type"]);
    assert_eq!(merged.headers.deny, ["x-internal", "x-tenant"]);
    assert_eq!(merged.headers.action, Action::Drop);
    assert_eq!(merged.default_action, Action::Mask, "hash is weaker than the default's mask");
    assert!(merged.redact_ip_addresses);
    assert_eq!(merged.on_unscannable, UnscannableAction::DropRecord);
    let switches: Vec<(&str, bool)> = merged.detectors.iter().map(|d| (d.name.as_str(), d.enabled)).collect();
    assert_eq!(
        switches,
        [("ip-address", false), ("ip-address", true), ("email", true)],
        "turning off the secrets group is dropped; turning on what the default turned off is kept"
    );
    let paths: Vec<&str> = merged.json_paths.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(paths, ["password", "password-server"], "names stay unique");
    assert_eq!(merged.custom_patterns.len(), 1);
    assert_eq!(merged.hash_key_secret_ref.as_ref().unwrap().name, "hmac");
    assert!(Redactor::compile(&merged, Some(vec![7; 32])).is_ok());
}

#[test]
fn two_allow_lists_keep_only_headers_both_allow() {
    let a = spec(json!({"headers": {"mode": "allow-list", "allow": ["Content-Type", "X-Trace"]}}));
    let b = spec(json!({"headers": {"mode": "allow-list", "allow": ["x-trace", "x-other"]}}));
    assert_eq!(merge_policies(&a, &b).headers.allow, ["x-trace"]);
}

#[test]
fn every_server_of_the_namespace_gets_its_key_with_its_settings() {
    let mut github = server("github", json!("mcp"));
    github.spec.redaction_policy_ref = Some(mcp_ledger_crds::common::LocalObjectRef { name: "strict".into() });
    github.status = Some(McpServerStatus {
        approval: Some(Approval {
            state: mcp_ledger_crds::server::ApprovalState::Approved,
            tool_baseline: vec![ToolFingerprint { name: "search".into(), definition_hash: "ab".into() }],
            ..Default::default()
        }),
        ..Default::default()
    });
    let slack = server("slack", json!(8000));
    let mut leaving = server("leaving", json!("mcp"));
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    let policies = [policy("strict", json!({"customPatterns": [{"name": "ticket", "regex": "TCK-[0-9]{6}"}]}))];
    let default = spec(json!({"headers": {"deny": ["x-tenant"]}}));
    let rendered =
        render_namespace(&[github, slack, leaving], &policies, Some(&default), &RenderSettings::default(), &[]);
    assert!(rendered.problems.is_empty(), "{:?}", rendered.problems);
    assert_eq!(rendered.data.keys().collect::<Vec<_>>(), ["github.json", "slack.json"]);
    let config =
        AgentConfig::from_json(&rendered.data["github.json"]).expect("the agent accepts what the operator renders");
    assert_eq!(config.server.name, "github");
    assert_eq!(config.server.namespace.as_deref(), Some("tools"));
    assert_eq!(config.server.approved_tools.len(), 1);
    assert_eq!(config.redaction.policy.custom_patterns[0].name, "ticket");
    assert_eq!(config.redaction.policy.headers.deny, ["x-tenant"]);
    assert_eq!(config.exporters.json_lines.as_ref().unwrap().path, "-", "records leave the pod on stdout by default");
    assert!(config.exporters.otlp.is_none());
    let slack = AgentConfig::from_json(&rendered.data["slack.json"]).unwrap();
    assert!(slack.server.approved_tools.is_empty(), "not approved: no baseline");
    assert!(slack.redaction.policy.custom_patterns.is_empty());
}

#[test]
fn an_otlp_endpoint_replaces_stdout_unless_both_are_asked_for() {
    let settings = RenderSettings {
        otlp_endpoint: Some("http://mcp-ledger-node.mcp-ledger.svc:4317".into()),
        ..Default::default()
    };
    let rendered = render_namespace(&[server("github", json!("mcp"))], &[], None, &settings, &[]);
    let config = AgentConfig::from_json(&rendered.data["github.json"]).unwrap();
    assert_eq!(config.exporters.otlp.as_ref().unwrap().endpoint, "http://mcp-ledger-node.mcp-ledger.svc:4317");
    assert!(config.exporters.json_lines.is_none());
    let both = RenderSettings { stdout: true, ..settings };
    let rendered = render_namespace(&[server("github", json!("mcp"))], &[], None, &both, &[]);
    assert!(AgentConfig::from_json(&rendered.data["github.json"]).unwrap().exporters.json_lines.is_some());
}

#[test]
fn a_missing_or_broken_server_policy_falls_back_to_the_default_and_says_so() {
    let mut s = server("github", json!("mcp"));
    s.spec.redaction_policy_ref = Some(mcp_ledger_crds::common::LocalObjectRef { name: "strict".into() });
    let default = spec(json!({"detectors": [{"name": "email", "enabled": true}]}));
    let rendered = render_namespace(std::slice::from_ref(&s), &[], Some(&default), &RenderSettings::default(), &[]);
    assert_eq!(rendered.problems.len(), 1);
    assert!(
        rendered.problems[0]
            .1
            .starts_with("spec.redactionPolicyRef names McpRedactionPolicy tools/strict, which does not exist")
    );
    let config = AgentConfig::from_json(&rendered.data["github.json"]).unwrap();
    assert_eq!(config.redaction.policy, default, "the default still applies");

    let broken = [policy("strict", json!({"customPatterns": [{"name": "bad", "regex": "(unclosed"}]}))];
    let rendered = render_namespace(&[s], &broken, Some(&default), &RenderSettings::default(), &[]);
    assert_eq!(rendered.problems.len(), 1);
    assert!(
        rendered.problems[0].1.contains("does not compile together with the cluster default"),
        "{}",
        rendered.problems[0].1
    );
    assert!(rendered.problems[0].1.contains("bad"), "names the rule: {}", rendered.problems[0].1);
    assert_eq!(AgentConfig::from_json(&rendered.data["github.json"]).unwrap().redaction.policy, default);
}

#[test]
fn hashing_needs_a_key_of_the_servers_namespace_or_becomes_masking() {
    let mut s = server("github", json!("mcp"));
    s.spec.redaction_policy_ref = Some(mcp_ledger_crds::common::LocalObjectRef { name: "strict".into() });
    let own = [policy(
        "strict",
        json!({"jsonPaths": [{"name": "user", "path": "$.params.arguments.user", "action": "hash"}],
               "hashKeySecretRef": {"name": "hmac", "key": "key"}}),
    )];
    let rendered = render_namespace(std::slice::from_ref(&s), &own, None, &RenderSettings::default(), &[]);
    assert!(rendered.problems.is_empty(), "{:?}", rendered.problems);
    let config = AgentConfig::from_json(&rendered.data["github.json"]).unwrap();
    assert_eq!(config.redaction.hash_key_file.as_deref(), Some(crate::inject::HASH_KEY_FILE));
    assert_eq!(config.redaction.policy.json_paths[0].action, Action::Hash);

    // The cluster default hashes, but its Secret lives in the operator's namespace.
    let default = spec(json!({"defaultAction": "hash", "hashKeySecretRef": {"name": "hmac", "key": "key"}}));
    let plain = server("slack", json!("mcp"));
    let rendered = render_namespace(&[plain], &[], Some(&default), &RenderSettings::default(), &[]);
    assert_eq!(rendered.problems.len(), 1);
    assert!(rendered.problems[0].1.contains("hashed values are masked instead"), "{}", rendered.problems[0].1);
    let config = AgentConfig::from_json(&rendered.data["slack.json"]).unwrap();
    assert_eq!(config.redaction.policy.default_action, Action::Mask);
    assert!(config.redaction.hash_key_file.is_none());
    assert!(!uses_hash(&config.redaction.policy));
    assert!(Redactor::compile(&config.redaction.policy, None).is_ok(), "the agent can start without a key");
}

#[test]
fn access_policies_of_the_namespace_reach_every_agent_config() {
    let acl: McpAccessPolicy = serde_json::from_value(json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpAccessPolicy",
        "metadata": {"name": "acl", "namespace": "tools"},
        "spec": {"mode": "enforce", "servers": ["git*"], "rules": [
            {"name": "devs", "effect": "Allow", "subjects": [{"kind": "Group", "name": "devs"}], "tools": ["search"]}
        ]}
    }))
    .unwrap();
    let rendered = render_namespace(
        &[server("github", json!("mcp"))],
        &[],
        None,
        &RenderSettings::default(),
        std::slice::from_ref(&acl),
    );
    let config = AgentConfig::from_json(&rendered.data["github.json"]).unwrap();
    assert_eq!(config.access.len(), 1);
    assert_eq!(config.access[0].name, "tools/acl");
    assert_eq!(config.access[0].spec, acl.spec);
}
