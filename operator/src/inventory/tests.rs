use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mcp_ledger_crds::server::{ApprovalState, ServerInfo, ToolStatus};
use mcp_ledger_crds::usage::ServerUsage;
use serde_json::json;

use super::*;
use crate::inject::tests::{pod, server};
use crate::inject::{InjectSettings, Outcome, decide};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn review(name: &str, server: &str, decision: &str, created: &str) -> McpServerReview {
    let mut spec = json!({"serverRef": {"name": server}, "decision": decision, "notes": "checked the scopes"});
    if decision == "Reject" {
        spec["reason"] = json!("exfiltrates secrets");
    }
    serde_json::from_value(json!({
        "apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServerReview",
        "metadata": {"name": name, "namespace": "tools", "creationTimestamp": created,
                     "annotations": {names::REVIEWED_BY: format!("{name}-reviewer@example.com")}},
        "spec": spec
    }))
    .unwrap()
}

fn named_pod(name: &str, injected: bool) -> Pod {
    let mut p = if injected {
        match decide(&pod("github"), &[server("github", json!("mcp"))], &InjectSettings::default()) {
            Outcome::Inject { pod, .. } => *pod,
            other => panic!("{other:?}"),
        }
    } else {
        pod("github")
    };
    p.metadata.name = Some(name.to_owned());
    p
}

fn cond<'a>(status: &'a McpServerStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

fn tools(list: &[(&str, &str)]) -> Vec<ToolStatus> {
    list.iter()
        .map(|(n, h)| ToolStatus { name: (*n).into(), definition_hash: (*h).into(), ..Default::default() })
        .collect()
}

#[test]
fn a_new_server_is_pending_with_its_creator_and_actionable_conditions() {
    let mut s = server("github", json!("mcp"));
    s.metadata.creation_timestamp = Some(Time(ts("2026-11-24T10:00:00Z")));
    s.metadata.generation = Some(3);
    s.metadata.annotations = Some([(names::ADDED_BY.to_owned(), "alice@example.com".to_owned())].into());
    let now = ts("2026-11-24T10:00:05Z");
    let status = compute_status(&s, &[], &[], now);
    assert_eq!(status.added_by.as_deref(), Some("alice@example.com"));
    assert_eq!(status.added_at, Some(Time(ts("2026-11-24T10:00:00Z"))));
    assert_eq!(status.approval.as_ref().unwrap().state, ApprovalState::Pending);
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.injected_pods, Some(0));
    assert_eq!(status.tool_count, Some(0));
    let ready = cond(&status, condition::READY);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "NoPods"));
    assert!(ready.message.contains("namespace tools"), "{}", ready.message);
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(ready.last_transition_time, Time(now));
    let approved = cond(&status, condition::APPROVED);
    assert_eq!((approved.status.as_str(), approved.reason.as_str()), ("False", "PendingReview"));
    assert_eq!(cond(&status, condition::INJECTED).status, "Unknown");
    assert_eq!(cond(&status, condition::TOOLS_OBSERVED).reason, "NotYetObserved");
    assert_eq!(cond(&status, condition::TOOLS_CHANGED).reason, "NoBaseline");
}

#[test]
fn added_by_once_recorded_never_changes() {
    let mut s = server("github", json!("mcp"));
    s.status = Some(McpServerStatus { added_by: Some("alice@example.com".into()), ..Default::default() });
    s.metadata.annotations = Some([(names::ADDED_BY.to_owned(), "mallory".to_owned())].into());
    let status = compute_status(&s, &[], &[], Timestamp::now());
    assert_eq!(status.added_by.as_deref(), Some("alice@example.com"));
}

#[test]
fn pods_are_listed_with_whether_they_carry_the_agent() {
    let s = server("github", json!("mcp"));
    let mut finished = named_pod("github-old", false);
    finished.status =
        Some(k8s_openapi::api::core::v1::PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
    let pods = [named_pod("github-b", true), named_pod("github-a", false), finished];
    let status = compute_status(&s, &pods, &[], Timestamp::now());
    let listed: Vec<(&str, bool)> = status.pods.iter().map(|p| (p.name.as_str(), p.injected)).collect();
    assert_eq!(listed, [("github-a", false), ("github-b", true)]);
    assert_eq!(status.injected_pods, Some(1));
    let injected = cond(&status, condition::INJECTED);
    assert_eq!((injected.status.as_str(), injected.reason.as_str()), ("False", "PodsWithoutAgent"));
    assert!(injected.message.starts_with("1 of 2 pod(s) lack the agent (github-a)"), "{}", injected.message);
    assert!(injected.message.contains("mcpledger.dev/injection=enabled"), "{}", injected.message);
    assert_eq!(cond(&status, condition::READY).status, "False");

    let status = compute_status(
        &s,
        &pods[1..2].iter().map(|_| named_pod("github-c", true)).collect::<Vec<_>>(),
        &[],
        Timestamp::now(),
    );
    assert_eq!(cond(&status, condition::INJECTED).status, "True");
    assert_eq!(cond(&status, condition::READY).reason, "Serving");
}

#[test]
fn the_latest_review_wins_and_reviews_of_other_servers_are_ignored() {
    let s = server("github", json!("mcp"));
    let reviews = [
        review("r1", "github", "Approve", "2026-11-24T10:00:00Z"),
        review("r2", "github", "Reject", "2026-11-24T11:00:00Z"),
        review("r3", "slack", "Approve", "2026-11-24T12:00:00Z"),
    ];
    let status = compute_status(&s, &[], &reviews, Timestamp::now());
    let a = status.approval.as_ref().unwrap();
    assert_eq!(a.state, ApprovalState::Rejected);
    assert_eq!(a.review.as_deref(), Some("r2"));
    assert_eq!(a.reviewed_by.as_deref(), Some("r2-reviewer@example.com"));
    assert_eq!(a.reviewed_at, Some(Time(ts("2026-11-24T11:00:00Z"))));
    assert_eq!(a.reason.as_deref(), Some("exfiltrates secrets"));
    let c = cond(&status, condition::APPROVED);
    assert_eq!(c.reason, "Rejected");
    assert_eq!(c.message, "rejected by r2-reviewer@example.com in McpServerReview r2: exfiltrates secrets");

    // Order of the list does not matter; same-second reviews are ordered by name.
    let same_second = [
        review("b", "github", "Reject", "2026-11-24T10:00:00Z"),
        review("c", "github", "Approve", "2026-11-24T10:00:00Z"),
    ];
    assert_eq!(latest_review("github", &same_second).unwrap().name_any(), "c");
    let reversed = [same_second[1].clone(), same_second[0].clone()];
    assert_eq!(latest_review("github", &reversed).unwrap().name_any(), "c");
}

#[test]
fn approval_pins_the_tool_baseline_and_tool_changes_are_reported() {
    let mut s = server("github", json!("mcp"));
    s.status = Some(McpServerStatus {
        tools: tools(&[("search", "h1"), ("create_issue", "h2")]),
        server_info: Some(ServerInfo { name: Some("github".into()), ..Default::default() }),
        ..Default::default()
    });
    let reviews = [review("ok", "github", "Approve", "2026-11-24T10:00:00Z")];
    let status = compute_status(&s, &[], &reviews, Timestamp::now());
    assert_eq!(status.approval.as_ref().unwrap().tool_baseline.len(), 2);
    assert_eq!(cond(&status, condition::TOOLS_CHANGED).reason, "MatchesApproval");
    assert_eq!(cond(&status, condition::TOOLS_OBSERVED).message, "the agents saw 2 tool(s)");

    // The agents later see a changed definition, a new tool and a removed one.
    s.status = Some(McpServerStatus { tools: tools(&[("search", "h1-evil"), ("delete_repo", "h3")]), ..status });
    let status = compute_status(&s, &[], &reviews, Timestamp::now());
    assert_eq!(status.approval.as_ref().unwrap().tool_baseline.len(), 2, "the baseline stays with its review");
    let changed = cond(&status, condition::TOOLS_CHANGED);
    assert_eq!((changed.status.as_str(), changed.reason.as_str()), ("True", "DefinitionsChanged"));
    assert!(
        changed.message.starts_with(
            "since approval in McpServerReview ok: changed: search; added: delete_repo; removed: create_issue;"
        ),
        "{}",
        changed.message
    );
    assert_eq!(status.tool_count, Some(2));

    // A new approval takes the current set as its baseline.
    let mut later = reviews.to_vec();
    later.push(review("ok-2", "github", "Approve", "2026-11-24T12:00:00Z"));
    s.status = Some(status);
    let status = compute_status(&s, &[], &later, Timestamp::now());
    assert_eq!(cond(&status, condition::TOOLS_CHANGED).reason, "MatchesApproval");
}

#[test]
fn transition_times_only_move_when_a_condition_changes_status() {
    let s0 = server("github", json!("mcp"));
    let t0 = ts("2026-11-24T10:00:00Z");
    let mut s = s0.clone();
    s.status = Some(compute_status(&s0, &[], &[], t0));
    let later = compute_status(
        &s,
        &[],
        &[review("ok", "github", "Approve", "2026-11-24T10:30:00Z")],
        ts("2026-11-24T11:00:00Z"),
    );
    assert_eq!(cond(&later, condition::READY).last_transition_time, Time(t0), "Ready did not change");
    assert_eq!(
        cond(&later, condition::APPROVED).last_transition_time,
        Time(ts("2026-11-24T11:00:00Z")),
        "Approved turned True"
    );
}

#[test]
fn review_status_says_applied_superseded_or_server_not_found() {
    let reviews = [
        review("r1", "github", "Approve", "2026-11-24T10:00:00Z"),
        review("r2", "github", "Reject", "2026-11-24T11:00:00Z"),
    ];
    let now = Timestamp::now();
    let applied = review_status(&reviews[1], true, &reviews, now);
    assert_eq!(applied.phase, Some(ReviewPhase::Applied));
    assert_eq!(applied.reviewed_by.as_deref(), Some("r2-reviewer@example.com"));
    let superseded = review_status(&reviews[0], true, &reviews, now);
    assert_eq!(superseded.phase, Some(ReviewPhase::Superseded));
    assert!(superseded.conditions[0].message.contains("the later McpServerReview r2"));
    let orphan = review("r9", "gitlab", "Approve", "2026-11-24T10:00:00Z");
    let missing = review_status(&orphan, false, &reviews, now);
    assert_eq!(missing.phase, Some(ReviewPhase::ServerNotFound));
    assert_eq!(missing.conditions[0].reason, "ServerNotFound");
    assert!(missing.conditions[0].message.starts_with("no McpServer tools/gitlab exists"));
}

#[test]
fn history_is_bounded_deduplicated_and_survives_garbage() {
    let mut s = server("github", json!("mcp"));
    s.metadata.annotations = Some(
        [(names::ADDED_BY.to_owned(), "alice".to_owned()), (names::REMOVED_BY.to_owned(), "bob".to_owned())].into(),
    );
    let now = ts("2026-11-24T12:00:00Z");
    let record = RemovalRecord::of(&s, now);
    assert_eq!((record.added_by.as_deref(), record.removed_by.as_str()), (Some("alice"), "bob"));
    let (text, ok) = append_history(None, record.clone(), 2);
    assert!(ok);
    let (text, _) = append_history(Some(&text), record.clone(), 2);
    assert_eq!(parse_history(Some(&text)).len(), 1, "the same UID is recorded once");
    let mut text = text;
    for i in 0..3 {
        let r = RemovalRecord { uid: format!("u{i}"), name: format!("s{i}"), ..record.clone() };
        text = append_history(Some(&text), r, 2).0;
    }
    let names_: Vec<String> = parse_history(Some(&text)).into_iter().map(|r| r.name).collect();
    assert_eq!(names_, ["s1", "s2"], "oldest dropped first");
    let (text, ok) = append_history(Some("not json"), record, 2);
    assert!(!ok);
    assert_eq!(parse_history(Some(&text)).len(), 1);

    let unknown = RemovalRecord::of(&server("x", json!("mcp")), now);
    assert_eq!(unknown.removed_by, "unknown");
}

#[test]
fn usage_reports_merge_into_status() {
    let t = |s: &str| Some(Time(ts(s)));
    let mut status = McpServerStatus {
        tools: vec![
            ToolStatus {
                name: "search".into(),
                definition_hash: "h1".into(),
                first_seen: t("2026-11-01T00:00:00Z"),
                changed_at: None,
            },
            ToolStatus {
                name: "gone".into(),
                definition_hash: "h9".into(),
                first_seen: t("2026-11-01T00:00:00Z"),
                changed_at: None,
            },
        ],
        last_used_at: t("2026-11-24T09:00:00Z"),
        last_used_by: Some("alice".into()),
        ..Default::default()
    };
    let now = ts("2026-11-24T10:00:00Z");
    let usage = ServerUsage {
        namespace: "tools".into(),
        name: "github".into(),
        server_info: Some(ServerInfo {
            name: Some("github-mcp".into()),
            version: Some("1.4.2".into()),
            protocol_version: Some("2025-11-25".into()),
        }),
        tools: Some(vec![
            ToolFingerprint { name: "search".into(), definition_hash: "h2".into() },
            ToolFingerprint { name: "create_issue".into(), definition_hash: "h3".into() },
        ]),
        tools_at: t("2026-11-24T09:59:30Z"),
        last_used_at: t("2026-11-24T09:59:00Z"),
        last_used_by: Some("bob".into()),
        errors: 3,
        last_error_at: t("2026-11-24T09:58:00Z"),
        last_error_message: Some("x".repeat(5000)),
        sanitized: 2,
        last_sanitized_at: t("2026-11-24T09:57:00Z"),
    };
    status = apply_usage(&status, &usage, now);
    let tools: Vec<(&str, &str, bool)> =
        status.tools.iter().map(|t| (t.name.as_str(), t.definition_hash.as_str(), t.changed_at.is_some())).collect();
    assert_eq!(tools, [("create_issue", "h3", false), ("search", "h2", true)]);
    assert_eq!(status.tools[1].first_seen, t("2026-11-01T00:00:00Z"), "first seen is kept across changes");
    assert_eq!(status.tools[0].first_seen, Some(Time(now)));
    assert_eq!(status.tool_count, Some(2));
    assert_eq!(status.server_info.as_ref().unwrap().version.as_deref(), Some("1.4.2"));
    assert_eq!((status.last_used_by.as_deref(), status.last_used_at.clone()), (Some("bob"), t("2026-11-24T09:59:00Z")));
    assert_eq!(status.errors.as_ref().unwrap().count, 3);
    assert_eq!(status.errors.as_ref().unwrap().last_message.as_ref().unwrap().len(), MAX_ERROR_MESSAGE);
    assert_eq!(status.sanitized.as_ref().unwrap().count, 2);

    // A second, older report from another node adds counts but does not move times back.
    let older = ServerUsage {
        tools: None,
        server_info: None,
        last_used_at: t("2026-11-24T08:00:00Z"),
        last_used_by: Some("carol".into()),
        errors: 1,
        last_error_at: t("2026-11-24T08:00:00Z"),
        last_error_message: Some("older".into()),
        ..usage
    };
    status = apply_usage(&status, &older, now);
    assert_eq!(status.last_used_by.as_deref(), Some("bob"));
    assert_eq!(status.errors.as_ref().unwrap().count, 4);
    assert_ne!(status.errors.as_ref().unwrap().last_message.as_deref(), Some("older"));
    assert_eq!(status.tools.len(), 2, "no tool list reported: tools unchanged");
    assert_eq!(status.sanitized.as_ref().unwrap().count, 4);
}

#[test]
fn the_reported_version_is_checked_against_allowed_versions() {
    let mut s = server("github", json!("mcp"));
    let now = ts("2026-11-24T10:00:05Z");
    let status = compute_status(&s, &[], &[], now);
    assert_eq!(cond(&status, condition::VERSION_ALLOWED).reason, "AnyVersion");

    s.spec.allowed_versions = vec![">=1.4, <2".into()];
    let status = compute_status(&s, &[], &[], now);
    assert_eq!(cond(&status, condition::VERSION_ALLOWED).status, "Unknown");

    let with_version = |v: &str| {
        let mut s = s.clone();
        s.status = Some(McpServerStatus {
            server_info: Some(ServerInfo { version: Some(v.into()), ..Default::default() }),
            ..Default::default()
        });
        compute_status(&s, &[], &[], now)
    };
    let ok = with_version("1.4.2");
    assert_eq!(
        (cond(&ok, condition::VERSION_ALLOWED).status.as_str(), cond(&ok, condition::VERSION_ALLOWED).reason.as_str()),
        ("True", "Allowed")
    );
    let bad = with_version("2.0.0");
    let c = cond(&bad, condition::VERSION_ALLOWED);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "VersionNotAllowed"));
    assert!(c.message.contains("2.0.0") && c.message.contains(">=1.4, <2"), "{}", c.message);
}
