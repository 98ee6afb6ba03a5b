use std::collections::BTreeMap;

use mcp_ledger_crds::redaction::{Action, CustomPattern, DetectorSwitch};

use super::*;

fn pattern(name: &str, regex: &str, action: Action) -> McpRedactionPolicySpec {
    McpRedactionPolicySpec {
        custom_patterns: vec![CustomPattern { name: name.into(), regex: regex.into(), keywords: vec![], action }],
        ..Default::default()
    }
}

/// What `redactor` leaves of `text`.
fn redact(redactor: &Redactor, text: &str) -> String {
    let mut summary = BTreeMap::new();
    redactor.string(text, &mut summary).unwrap_or_else(|| text.to_owned())
}

fn synced(default_namespace: &str) -> Policies {
    let mut p = Policies::new(default_namespace);
    p.relist_servers();
    p.servers_listed();
    p.relist_policies();
    p.policies_listed();
    p
}

#[test]
fn a_servers_own_policy_adds_to_the_cluster_default_for_that_server_only() {
    let mut p = synced("mcp-ledger");
    p.apply_policy("mcp-ledger", "default", pattern("ticket", r"TICKET-\d{4}", Action::Mask));
    p.apply_policy("tools", "github-extra", pattern("build", r"BUILD-\d{4}", Action::Drop));
    p.apply_server("tools", "github", Some("github-extra".into()));
    p.apply_server("tools", "slack", None);
    let line = "TICKET-1234 and BUILD-5678 for ops@example.com";
    let github = redact(&p.redactor("tools", "github"), line);
    assert!(!github.contains("TICKET-1234") && !github.contains("BUILD-5678"), "{github}");
    assert!(!github.contains("ops@example.com"), "the built-in detectors stay on: {github}");
    let slack = redact(&p.redactor("tools", "slack"), line);
    assert!(!slack.contains("TICKET-1234"), "the cluster default applies: {slack}");
    assert!(slack.contains("BUILD-5678"), "github's own rule is not slack's: {slack}");
    // A pod whose server is unknown gets the cluster default.
    let unknown = redact(&p.redactor("web", ""), line);
    assert!(!unknown.contains("TICKET-1234") && unknown.contains("BUILD-5678"), "{unknown}");
}

#[test]
fn changes_take_effect_and_identical_policies_share_one_compiled_redactor() {
    let mut p = synced("mcp-ledger");
    p.apply_server("tools", "a", None);
    p.apply_server("tools", "b", None);
    let (a, b) = (p.redactor("tools", "a"), p.redactor("tools", "b"));
    assert!(Arc::ptr_eq(&a, &b), "one compile for one effective policy");
    assert!(redact(&a, "SECRET-42").contains("SECRET-42"));
    p.apply_policy("tools", "extra", pattern("secret", r"SECRET-\d+", Action::Mask));
    p.apply_server("tools", "a", Some("extra".into()));
    assert!(!redact(&p.redactor("tools", "a"), "SECRET-42").contains("SECRET-42"), "the new reference applies");
    p.delete_policy("tools", "extra");
    assert!(redact(&p.redactor("tools", "a"), "SECRET-42").contains("SECRET-42"), "a deleted policy stops applying");
    let (_, problem) = p.effective("tools", "a");
    assert!(problem.unwrap().contains("does not exist"));
}

#[test]
fn a_server_policy_cannot_switch_off_a_detector_the_default_keeps() {
    let mut p = synced("mcp-ledger");
    let off = McpRedactionPolicySpec {
        detectors: vec![DetectorSwitch { name: "email".into(), enabled: false, action: None }],
        ..Default::default()
    };
    p.apply_policy("tools", "lax", off);
    p.apply_server("tools", "github", Some("lax".into()));
    assert!(!redact(&p.redactor("tools", "github"), "mail ops@example.com").contains("ops@example.com"));
}

#[test]
fn hash_becomes_mask_because_the_node_agent_holds_no_key() {
    let mut p = synced("mcp-ledger");
    p.apply_policy("mcp-ledger", "default", pattern("ticket", r"TICKET-\d{4}", Action::Hash));
    let (spec, problem) = p.effective("tools", "");
    assert_eq!(problem, None);
    assert_eq!(spec.custom_patterns[0].action, Action::Mask);
    let out = redact(&p.redactor("tools", ""), "TICKET-1234");
    assert!(!out.contains("TICKET-1234"), "{out}");
}

#[test]
fn a_policy_that_does_not_compile_leaves_the_default_and_says_why() {
    let mut p = synced("mcp-ledger");
    p.apply_policy("mcp-ledger", "default", pattern("ticket", r"TICKET-\d{4}", Action::Mask));
    p.apply_policy("tools", "broken", pattern("bad", r"(unclosed", Action::Mask));
    p.apply_server("tools", "github", Some("broken".into()));
    let (_, problem) = p.effective("tools", "github");
    assert!(problem.unwrap().contains("tools/broken does not compile"));
    assert!(
        !redact(&p.redactor("tools", "github"), "TICKET-1234").contains("TICKET-1234"),
        "the default still applies"
    );
}

#[test]
fn not_synced_until_both_lists_are_in_and_a_relist_swaps_at_its_end() {
    let mut p = Policies::new("mcp-ledger");
    assert!(!p.synced());
    p.relist_servers();
    p.apply_server("tools", "github", Some("extra".into()));
    p.servers_listed();
    assert!(!p.synced(), "the policies are not listed yet");
    p.relist_policies();
    p.apply_policy("tools", "extra", pattern("secret", r"SECRET-\d+", Action::Mask));
    p.policies_listed();
    assert!(p.synced());
    // During a relist the old state still applies; at its end the new one replaces it.
    p.relist_policies();
    assert!(!redact(&p.redactor("tools", "github"), "SECRET-42").contains("SECRET-42"), "old state during the relist");
    p.policies_listed();
    assert!(redact(&p.redactor("tools", "github"), "SECRET-42").contains("SECRET-42"), "the relist had no policy");
}
