//! Governance against a real MCP server (the Python SDK) and a real client: tool pinning
//! when the server rewrites a tool at run time (the rug pull) and adds one, server version
//! allow-lists, and McpAccessPolicy decisions for verified JWT callers.

mod common;

use common::*;
use mcp_ledger_crds::AuditRecord;
use mcp_ledger_crds::access::{AccessRule, Effect, EnforcementMode, McpAccessPolicySpec, Subject, SubjectKind};
use mcp_ledger_crds::config::{JwtConfig, NamedAccessPolicy};
use mcp_ledger_crds::record::{Decision, EventType, Level, ToolChange};
use mcp_ledger_crds::server::{ToolFingerprint, ToolPolicy};
use serde_json::Value;

const RUG_PULL: &[&str] = &["list", "call:echo", "call:rug_pull", "list", "call:echo", "call:exfiltrate", "call:add"];

fn ok(v: &Value) -> bool {
    v.get("ok").is_some()
}

fn error(v: &Value) -> &str {
    v.get("error").and_then(Value::as_str).unwrap_or_else(|| panic!("expected an error, got {v}"))
}

fn listed(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["tools"].as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

fn changes(records: &[AuditRecord]) -> Vec<(String, ToolChange, Level)> {
    records
        .iter()
        .filter(|r| r.event_type == EventType::ToolDefinitionChanged)
        .map(|r| {
            let c = r.governance.as_ref().unwrap().tool_change.clone().unwrap();
            (r.tool_name.as_deref().unwrap().to_owned(), c, r.level)
        })
        .collect()
}

fn denials(records: &[AuditRecord]) -> Vec<(Option<String>, Decision)> {
    records
        .iter()
        .filter(|r| r.event_type == EventType::PolicyDenied)
        .map(|r| (r.tool_name.as_deref().map(str::to_owned), r.governance.as_ref().unwrap().decision.clone().unwrap()))
        .collect()
}

/// The approved baseline: what an observing agent fingerprints from a fresh server's
/// tools/list (the way the operator learns it from the usage reports).
async fn baseline() -> Vec<ToolFingerprint> {
    let (_server, port) = python_server("streamable-http", &["--json-response", "--rug-pull-hook"]);
    let dir = scratch("governance-baseline");
    let agent = Agent::start(config(port, &dir)).await;
    let url = agent.url("/mcp");
    tokio::task::spawn_blocking(move || governance_client(&url, None, &["list"])).await.unwrap();
    let records = agent.stop().await;
    let answer = records
        .iter()
        .find(|r| r.method.as_deref() == Some("tools/list") && r.event_type == EventType::McpResponseSuccess)
        .expect("a tools/list answer record");
    let tools = answer.governance.as_ref().expect("the complete list's fingerprints").tools.clone();
    assert_eq!(tools.len(), 6, "{tools:?}");
    assert!(tools.iter().all(|t| t.definition_hash.len() == 64));
    tools
}

async fn rug_pull_run(policy: ToolPolicy, json: bool, baseline: &[ToolFingerprint]) -> (Vec<Value>, Vec<AuditRecord>) {
    let mut args = vec!["--rug-pull-hook"];
    if json {
        args.push("--json-response");
    }
    let (_server, port) = python_server("streamable-http", &args);
    let dir = scratch("governance-rug-pull");
    let mut cfg = config(port, &dir);
    cfg.server.tool_policy = policy;
    cfg.server.approved_tools = baseline.to_vec();
    let agent = Agent::start(cfg).await;
    let url = agent.url("/mcp");
    let out = tokio::task::spawn_blocking(move || governance_client(&url, None, RUG_PULL)).await.unwrap();
    (out, agent.stop().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rug_pull_is_recorded_and_blocked_as_the_tool_policy_says() {
    let baseline = baseline().await;
    let echo_hash = baseline.iter().find(|t| t.name == "echo").unwrap().definition_hash.clone();

    for (policy, json) in
        [(ToolPolicy::Observe, true), (ToolPolicy::Warn, false), (ToolPolicy::Block, true), (ToolPolicy::Block, false)]
    {
        let (out, records) = rug_pull_run(policy, json, &baseline).await;
        let case = format!("{policy:?} json={json}");
        // Before the change, everything works; unchanged tools keep working after it.
        assert_eq!(listed(&out[0]).len(), 6, "{case}");
        assert!(ok(&out[1]) && ok(&out[2]) && ok(&out[6]), "{case}: {out:?}");
        assert_eq!(out[6]["ok"], "42", "{case}: add answers untouched");

        let found = changes(&records);
        let names: Vec<(&str, &str)> = found.iter().map(|(t, c, _)| (t.as_str(), c.change.as_str())).collect();
        assert_eq!(names, vec![("echo", "changed"), ("exfiltrate", "added")], "{case}: one record per change");
        let (_, echo_change, level) = &found[0];
        assert_eq!(echo_change.approved_hash.as_deref(), Some(echo_hash.as_str()), "{case}");
        assert_eq!(echo_change.previous_hash.as_deref(), Some(echo_hash.as_str()), "{case}");
        assert_ne!(echo_change.hash.as_deref(), Some(echo_hash.as_str()), "{case}");
        assert_eq!(echo_change.changed_fields, vec!["description".to_owned()], "{case}");
        assert_eq!(echo_change.policy, format!("{policy:?}").to_lowercase(), "{case}");
        assert_eq!(*level, if policy == ToolPolicy::Observe { Level::Info } else { Level::Warn }, "{case}");

        // The toolId carries the definition hash of the tool as last listed.
        let echo_ids: Vec<&str> = records
            .iter()
            .filter(|r| r.event_type == EventType::McpRequest && r.tool_name.as_deref() == Some("echo"))
            .filter_map(|r| r.tool_id.as_deref())
            .collect();
        assert_eq!(echo_ids.first().copied(), Some(format!("test-server/echo@{echo_hash}").as_str()), "{case}");
        // A call after the changed list names the new definition.
        let new_hash = echo_change.hash.as_deref().unwrap();
        assert_eq!(
            echo_ids.last().copied(),
            Some(format!("test-server/echo@{new_hash}").as_str()),
            "{case}: {echo_ids:?}"
        );

        if policy == ToolPolicy::Block {
            assert_eq!(
                listed(&out[3]),
                vec!["add", "fail", "rug_pull", "slow_count", "whoami_config"],
                "{case}: changed and new tools are hidden"
            );
            assert!(error(&out[4]).contains("changed its definition since approval"), "{case}: {}", out[4]);
            assert!(error(&out[5]).contains("not in the approved tool set"), "{case}: {}", out[5]);
            let d = denials(&records);
            let calls: Vec<_> = d.iter().filter(|(_, d)| d.action == "call").collect();
            let lists: Vec<_> = d.iter().filter(|(_, d)| d.action == "list").collect();
            assert_eq!(calls.len(), 2, "{case}: {d:?}");
            assert!(calls.iter().all(|(_, d)| d.control == "tool-pinning" && d.enforced), "{case}");
            assert_eq!(lists.len(), 2, "{case}: echo and exfiltrate hidden once: {d:?}");
            // The refusal is recorded as the answer the client got.
            let refused = records
                .iter()
                .filter(|r| r.event_type == EventType::McpResponseError && r.tool_name.as_deref() == Some("exfiltrate"))
                .count();
            assert_eq!(refused, 1, "{case}");
        } else {
            assert_eq!(listed(&out[3]).len(), 7, "{case}: nothing hidden");
            assert!(listed(&out[3]).contains(&"exfiltrate".to_owned()));
            assert!(ok(&out[4]) && ok(&out[5]), "{case}: {out:?}");
            assert!(denials(&records).is_empty(), "{case}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_version_outside_the_allow_list_is_recorded_and_blocked_with_block() {
    for policy in [ToolPolicy::Warn, ToolPolicy::Block] {
        let (_server, port) = python_server("streamable-http", &["--json-response", "--server-version", "2.0.0"]);
        let dir = scratch("governance-version");
        let mut cfg = config(port, &dir);
        cfg.server.tool_policy = policy;
        cfg.server.allowed_versions = vec![">=1.4, <2".into()];
        let agent = Agent::start(cfg).await;
        let url = agent.url("/mcp");
        let out = tokio::task::spawn_blocking(move || governance_client(&url, None, &["call:add", "call:echo"]))
            .await
            .unwrap();
        let records = agent.stop().await;
        let d = denials(&records);
        let at_init: Vec<_> = d.iter().filter(|(_, d)| d.action == "initialize").collect();
        assert_eq!(at_init.len(), 1, "{policy:?}: one record when the version is seen: {d:?}");
        assert!(at_init[0].1.reason.contains("2.0.0"));
        if policy == ToolPolicy::Block {
            assert!(error(&out[0]).contains("not in allowedVersions"), "{out:?}");
            assert!(error(&out[1]).contains("not in allowedVersions"));
            assert_eq!(d.iter().filter(|(_, d)| d.action == "call" && d.enforced).count(), 2);
        } else {
            assert!(ok(&out[0]) && ok(&out[1]), "{out:?}");
            assert!(!at_init[0].1.enforced);
        }
    }
    // An allowed version: nothing recorded, nothing refused.
    let (_server, port) = python_server("streamable-http", &["--json-response"]);
    let dir = scratch("governance-version-ok");
    let mut cfg = config(port, &dir);
    cfg.server.tool_policy = ToolPolicy::Block;
    cfg.server.allowed_versions = vec!["1.4.2".into()];
    let agent = Agent::start(cfg).await;
    let url = agent.url("/mcp");
    let out = tokio::task::spawn_blocking(move || governance_client(&url, None, &["call:add"])).await.unwrap();
    assert!(ok(&out[0]));
    assert!(denials(&agent.stop().await).is_empty());
}

fn access_policy(mode: EnforcementMode) -> NamedAccessPolicy {
    let group = |g: &str| Subject { kind: SubjectKind::Group, name: g.into(), claim: None };
    let rule = |name: &str, effect, subjects, tools: &[&str]| AccessRule {
        name: name.into(),
        effect,
        subjects,
        servers: vec![],
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
    };
    NamedAccessPolicy {
        name: "tools/acl".into(),
        spec: McpAccessPolicySpec {
            mode,
            servers: vec!["test-*".into()],
            default_effect: Effect::Deny,
            rules: vec![
                rule("devs-basic", Effect::Allow, vec![group("devs")], &["echo", "add"]),
                rule("ops-all", Effect::Allow, vec![group("ops")], &["*"]),
                rule("no-config", Effect::Deny, vec![group("ops"), group("devs")], &["whoami_*"]),
            ],
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_policies_filter_lists_and_refuse_calls_per_verified_user() {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let dir = scratch("governance-access-keys");
    let signer = JwtSigner::new(&dir);
    let token = |user: &str, group: &str| {
        signer.sign(&format!(
            r#"{{"sub":"{user}","iss":"https://issuer.test","aud":"mcp","exp":{exp},"groups":["{group}"]}}"#
        ))
    };
    let (alice, bob) = (token("alice", "devs"), token("bob", "ops"));
    let steps = ["list", "call:add", "call:fail", "call:whoami_config"];

    for mode in [EnforcementMode::Enforce, EnforcementMode::Observe] {
        let (_server, port) = python_server("streamable-http", &[]);
        let dir = scratch("governance-access");
        let mut cfg = config(port, &dir);
        cfg.identity.jwt = Some(JwtConfig {
            issuer: "https://issuer.test".into(),
            audiences: vec!["mcp".into()],
            static_keys: vec![signer.public.clone()],
            user_claim: "sub".into(),
            groups_claim: Some("groups".into()),
            leeway_seconds: 5,
            ..Default::default()
        });
        cfg.access = vec![access_policy(mode)];
        let agent = Agent::start(cfg).await;
        let url = agent.url("/mcp");
        let (a, b) = (alice.clone(), bob.clone());
        let (out_alice, out_bob) = tokio::task::spawn_blocking(move || {
            (governance_client(&url, Some(&a), &steps), governance_client(&url, Some(&b), &steps))
        })
        .await
        .unwrap();
        let records = agent.stop().await;
        let d = denials(&records);
        let by = |user: &str, action: &str| -> Vec<(String, String, bool)> {
            let mut v: Vec<_> = records
                .iter()
                .filter(|r| r.event_type == EventType::PolicyDenied && r.user_id.as_deref() == Some(user))
                .map(|r| (r.tool_name.as_deref().unwrap().to_owned(), r.governance.clone().unwrap().decision.unwrap()))
                .filter(|(_, d)| d.action == action)
                .map(|(t, d)| (t, d.rule.unwrap(), d.enforced))
                .collect();
            v.sort();
            v
        };
        let enforced = mode == EnforcementMode::Enforce;
        assert!(d.iter().all(|(_, d)| d.control == "access" && d.policy.as_deref() == Some("tools/acl")));
        assert!(d.iter().all(|(_, d)| d.enforced == enforced), "{mode:?}: {d:?}");
        // alice (devs): add allowed; fail by default; whoami_config by the deny rule.
        assert_eq!(
            by("alice", "call"),
            vec![
                ("fail".into(), "defaultEffect".into(), enforced),
                ("whoami_config".into(), "no-config".into(), enforced)
            ]
        );
        assert_eq!(
            by("alice", "list").iter().map(|(t, r, _)| (t.as_str(), r.as_str())).collect::<Vec<_>>(),
            vec![("fail", "defaultEffect"), ("slow_count", "defaultEffect"), ("whoami_config", "no-config")]
        );
        // bob (ops): everything but whoami_config (deny wins over ops-all).
        assert_eq!(by("bob", "call"), vec![("whoami_config".into(), "no-config".into(), enforced)]);
        assert_eq!(by("bob", "list").len(), 1);
        assert!(ok(&out_alice[1]) && ok(&out_bob[1]), "add is allowed for both");
        if enforced {
            assert_eq!(listed(&out_alice[0]), vec!["add", "echo"]);
            assert_eq!(listed(&out_bob[0]), vec!["add", "echo", "fail", "slow_count"]);
            assert!(error(&out_alice[2]).contains("McpAccessPolicy tools/acl rule defaultEffect"), "{out_alice:?}");
            assert!(error(&out_alice[3]).contains("rule no-config"));
            assert!(error(&out_bob[3]).contains("bob may not call tool whoami_config"));
            // fail is allowed for bob: its own (tool) error comes from the server.
            assert!(error(&out_bob[2]).contains("fail") && !error(&out_bob[2]).contains("mcp-ledger"), "{out_bob:?}");
        } else {
            assert_eq!(listed(&out_alice[0]).len(), 5, "observe hides nothing");
            assert!(ok(&out_alice[3]), "observe refuses nothing: {out_alice:?}");
            assert!(ok(&out_bob[3]));
        }
    }
}
