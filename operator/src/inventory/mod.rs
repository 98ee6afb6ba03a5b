//! The inventory: pure computation of an McpServer's status from what the controller
//! observed (its pods and reviews) and what the status already holds (usage reports),
//! the review outcome, and the bounded removal history.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use mcp_ledger_crds::review::{Decision, McpServerReviewStatus, ReviewPhase};
use mcp_ledger_crds::server::{Approval, ApprovalState, ServingPod, ToolFingerprint, ToolStatus, condition};
use mcp_ledger_crds::usage::ServerUsage;
use mcp_ledger_crds::{McpServer, McpServerReview, McpServerStatus};
use serde::{Deserialize, Serialize};

use crate::{inject, names};

/// Most pods listed in `status.pods` (the schema's bound).
pub const MAX_LISTED_PODS: usize = 256;

/// Who made a review: the webhook's annotation, else what the review status recorded.
pub fn reviewer(review: &McpServerReview) -> Option<String> {
    review
        .annotations()
        .get(names::REVIEWED_BY)
        .cloned()
        .or_else(|| review.status.as_ref().and_then(|s| s.reviewed_by.clone()))
}

/// The review that decides: the latest by creation time (then by name, for reviews made in
/// the same second). `reviews` may hold reviews of other servers; they are ignored.
pub fn latest_review<'a>(server: &str, reviews: &'a [McpServerReview]) -> Option<&'a McpServerReview> {
    reviews.iter().filter(|r| r.spec.server_ref.name == server && r.metadata.deletion_timestamp.is_none()).max_by(
        |a, b| {
            let key = |r: &McpServerReview| (r.metadata.creation_timestamp.as_ref().map(|t| t.0), r.name_any());
            key(a).cmp(&key(b))
        },
    )
}

/// The approval the latest review decides; `Pending` without one. The tool baseline is the
/// tool set when the review was first applied, kept while the same review decides.
pub fn approval(server: &McpServer, reviews: &[McpServerReview]) -> Approval {
    let current = server.status.as_ref().and_then(|s| s.approval.as_ref());
    let Some(review) = latest_review(&server.name_any(), reviews) else {
        return Approval { state: ApprovalState::Pending, ..Default::default() };
    };
    let name = review.name_any();
    let state = match review.spec.decision {
        Decision::Approve => ApprovalState::Approved,
        Decision::Reject => ApprovalState::Rejected,
    };
    let tool_baseline = match current {
        Some(a) if a.review.as_deref() == Some(name.as_str()) => a.tool_baseline.clone(),
        _ if state == ApprovalState::Approved => tools_of(server),
        _ => Vec::new(),
    };
    Approval {
        state,
        reviewed_by: reviewer(review),
        reviewed_at: review.metadata.creation_timestamp.clone(),
        review: Some(name),
        notes: review.spec.notes.clone(),
        reason: review.spec.reason.clone(),
        tool_baseline,
    }
}

fn tools_of(server: &McpServer) -> Vec<ToolFingerprint> {
    server
        .status
        .iter()
        .flat_map(|s| s.tools.iter())
        .map(|t| ToolFingerprint { name: t.name.clone(), definition_hash: t.definition_hash.clone() })
        .collect()
}

/// Whether a pod still counts as serving: not finished and not being deleted.
fn serving(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The status the operator writes for `server`. `pods` are the pods of its namespace that
/// its selector selects; `reviews` the reviews of its namespace. Usage fields (serverInfo,
/// tools, last use, errors, sanitized) come from usage reports already merged into status
/// and are kept as they are.
pub fn compute_status(
    server: &McpServer,
    pods: &[Pod],
    reviews: &[McpServerReview],
    now: Timestamp,
) -> McpServerStatus {
    let old = server.status.clone().unwrap_or_default();
    let mut listed: Vec<ServingPod> = pods
        .iter()
        .filter(|p| serving(p))
        .map(|p| ServingPod { name: p.name_any(), injected: inject::is_injected(p) })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let total = listed.len();
    let injected = listed.iter().filter(|p| p.injected).count();
    let lacking: Vec<String> = listed.iter().filter(|p| !p.injected).map(|p| p.name.clone()).collect();
    listed.truncate(MAX_LISTED_PODS);

    let approval = approval(server, reviews);
    let mut status = McpServerStatus {
        added_at: old.added_at.clone().or_else(|| server.metadata.creation_timestamp.clone()),
        added_by: old.added_by.clone().or_else(|| server.annotations().get(names::ADDED_BY).cloned()),
        approval: Some(approval),
        pods: listed,
        injected_pods: Some(i32::try_from(injected).unwrap_or(i32::MAX)),
        observed_generation: server.metadata.generation,
        ..old.clone()
    };
    let namespace = server.namespace().unwrap_or_default();
    let generation = server.metadata.generation;
    let mut conditions = Vec::new();
    let mut set = |type_: &str, state: &str, reason: &str, message: String| {
        conditions.push(condition(&old.conditions, type_, state, reason, message, generation, now));
    };

    let (state, reason, message) = match (total, lacking.len()) {
        (0, _) => (
            "False",
            "NoPods",
            format!(
                "no running pod in namespace {namespace} matches spec.selector; check the selector and the pod labels"
            ),
        ),
        (_, 0) => ("True", "Serving", format!("{total} pod(s) serve the server, each behind the agent")),
        (_, n) => (
            "False",
            "PodsWithoutAgent",
            format!(
                "{n} of {total} pod(s) run without the agent, so their traffic is not recorded; see the Injected condition"
            ),
        ),
    };
    set(condition::READY, state, reason, message);

    let a = status.approval.as_ref().expect("set above");
    let by = a.reviewed_by.as_deref().unwrap_or("an unknown reviewer");
    let review = a.review.as_deref().unwrap_or_default();
    match a.state {
        ApprovalState::Approved => {
            set(condition::APPROVED, "True", "Approved", format!("approved by {by} in McpServerReview {review}"))
        }
        ApprovalState::Rejected => set(
            condition::APPROVED,
            "False",
            "Rejected",
            format!(
                "rejected by {by} in McpServerReview {review}: {}",
                a.reason.as_deref().unwrap_or("no reason given")
            ),
        ),
        ApprovalState::Pending => set(
            condition::APPROVED,
            "False",
            "PendingReview",
            "no McpServerReview decides yet: create one with decision Approve or Reject".to_owned(),
        ),
    }

    let (state, reason, message) = match (total, lacking.as_slice()) {
        (0, _) => ("Unknown", "NoPods", "no pod matches spec.selector yet".to_owned()),
        (_, []) => ("True", "AllPodsInjected", format!("{total} of {total} pod(s) carry the agent")),
        (_, names_) => (
            "False",
            "PodsWithoutAgent",
            format!(
                "{} of {total} pod(s) lack the agent ({}): label namespace {namespace} with {}=enabled and restart \
                 them; Events on this McpServer name pods whose port did not match spec.port",
                names_.len(),
                abbreviate(names_, 5),
                names::INJECTION_LABEL
            ),
        ),
    };
    set(condition::INJECTED, state, reason, message);

    if status.tools.is_empty() && status.server_info.is_none() {
        set(
            condition::TOOLS_OBSERVED,
            "Unknown",
            "NotYetObserved",
            "no tools/list seen yet: agents report the tools after a client lists them".to_owned(),
        );
    } else {
        set(condition::TOOLS_OBSERVED, "True", "ToolsListed", format!("the agents saw {} tool(s)", status.tools.len()));
    }

    let a = status.approval.as_ref().expect("set above");
    let current: Vec<ToolFingerprint> = status
        .tools
        .iter()
        .map(|t| ToolFingerprint { name: t.name.clone(), definition_hash: t.definition_hash.clone() })
        .collect();
    if a.state != ApprovalState::Approved || a.tool_baseline.is_empty() && current.is_empty() {
        set(condition::TOOLS_CHANGED, "False", "NoBaseline", "no approved tool set to compare with yet".to_owned());
    } else {
        let diff = tool_diff(&a.tool_baseline, &current);
        if diff.is_empty() {
            set(
                condition::TOOLS_CHANGED,
                "False",
                "MatchesApproval",
                format!("the tools match the set approved in McpServerReview {review}"),
            );
        } else {
            set(
                condition::TOOLS_CHANGED,
                "True",
                "DefinitionsChanged",
                format!(
                    "since approval in McpServerReview {review}: {diff}; review the change and approve again with a new McpServerReview"
                ),
            );
        }
    }
    let versions = mcp_ledger_crds::versions::VersionRules::new(&server.spec.allowed_versions);
    let (state, reason, message) = match status.server_info.as_ref().and_then(|i| i.version.as_deref()) {
        _ if versions.is_empty() => {
            ("True", "AnyVersion", "spec.allowedVersions is empty: any version may run".to_owned())
        }
        None => (
            "Unknown",
            "NotYetObserved",
            "no initialize seen yet: agents report the server version after a client connects".to_owned(),
        ),
        Some(v) if versions.allows(v) => ("True", "Allowed", format!("version {v} is in spec.allowedVersions")),
        Some(v) => (
            "False",
            "VersionNotAllowed",
            format!(
                "the server reports version {v}, which spec.allowedVersions ({}) does not allow; {}",
                server.spec.allowed_versions.join(", "),
                if server.spec.tool_policy == mcp_ledger_crds::server::ToolPolicy::Block {
                    "toolPolicy block refuses its calls: roll back, or add the version after review"
                } else {
                    "calls still go through (toolPolicy block would refuse them): roll back, or add the version after review"
                }
            ),
        ),
    };
    set(condition::VERSION_ALLOWED, state, reason, message);
    status.tool_count = Some(i32::try_from(status.tools.len()).unwrap_or(i32::MAX));
    status.conditions = conditions;
    status
}

/// What changed between the approved tool set and the current one, for people.
pub fn tool_diff(baseline: &[ToolFingerprint], current: &[ToolFingerprint]) -> String {
    let before: BTreeMap<&str, &str> = baseline.iter().map(|t| (t.name.as_str(), t.definition_hash.as_str())).collect();
    let after: BTreeMap<&str, &str> = current.iter().map(|t| (t.name.as_str(), t.definition_hash.as_str())).collect();
    let names_: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    let (mut changed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for name in names_ {
        match (before.get(name), after.get(name)) {
            (Some(a), Some(b)) if a != b => changed.push(name.to_owned()),
            (None, Some(_)) => added.push(name.to_owned()),
            (Some(_), None) => removed.push(name.to_owned()),
            _ => {}
        }
    }
    let mut parts = Vec::new();
    for (label, list) in [("changed", changed), ("added", added), ("removed", removed)] {
        if !list.is_empty() {
            parts.push(format!("{label}: {}", abbreviate(&list, 10)));
        }
    }
    parts.join("; ")
}

fn abbreviate(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}

/// A condition, keeping the old transition time when its status did not change.
fn condition(
    old: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// What became of a review: applied, superseded by a later one, or about a server that
/// does not exist. `server_exists` says whether its McpServer exists; `reviews` are the
/// reviews of its namespace.
pub fn review_status(
    review: &McpServerReview,
    server_exists: bool,
    reviews: &[McpServerReview],
    now: Timestamp,
) -> McpServerReviewStatus {
    let old = review.status.clone().unwrap_or_default();
    let server = &review.spec.server_ref.name;
    let namespace = review.namespace().unwrap_or_default();
    let (phase, state, reason, message) = if !server_exists {
        (
            ReviewPhase::ServerNotFound,
            "False",
            "ServerNotFound",
            format!(
                "no McpServer {namespace}/{server} exists: check spec.serverRef.name; the review applies if the server is created"
            ),
        )
    } else if latest_review(server, reviews).map(|r| r.name_any()) == Some(review.name_any()) {
        (ReviewPhase::Applied, "True", "Applied", format!("the decision is the approval of McpServer {server}"))
    } else {
        let later = latest_review(server, reviews).map(|r| r.name_any()).unwrap_or_default();
        (
            ReviewPhase::Superseded,
            "False",
            "Superseded",
            format!("the later McpServerReview {later} decides the approval of McpServer {server}"),
        )
    };
    McpServerReviewStatus {
        reviewed_by: reviewer(review),
        reviewed_at: review.metadata.creation_timestamp.clone(),
        phase: Some(phase),
        conditions: vec![condition(
            &old.conditions,
            "Applied",
            state,
            reason,
            message,
            review.metadata.generation,
            now,
        )],
    }
}

/// Longest error message kept in status (the schema's bound).
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// Merges one node agent's usage of a server into its status. Tool entries keep their
/// `firstSeen`; a changed definition hash sets `changedAt`; tools missing from a reported
/// list are gone. Counts add up; times only move forward. Conditions are left to the
/// controller, which recomputes them from the merged status.
pub fn apply_usage(status: &McpServerStatus, usage: &ServerUsage, now: Timestamp) -> McpServerStatus {
    let mut out = status.clone();
    if let Some(info) = &usage.server_info {
        out.server_info = Some(info.clone());
    }
    if let Some(tools) = &usage.tools {
        let mut merged: Vec<ToolStatus> = tools
            .iter()
            .take(1024)
            .map(|t| match status.tools.iter().find(|old| old.name == t.name) {
                Some(old) if old.definition_hash == t.definition_hash => old.clone(),
                Some(old) => ToolStatus {
                    name: t.name.clone(),
                    definition_hash: t.definition_hash.clone(),
                    first_seen: old.first_seen.clone(),
                    changed_at: Some(Time(now)),
                },
                None => ToolStatus {
                    name: t.name.clone(),
                    definition_hash: t.definition_hash.clone(),
                    first_seen: Some(Time(now)),
                    changed_at: None,
                },
            })
            .collect();
        merged.sort_by(|a, b| a.name.cmp(&b.name));
        merged.dedup_by(|a, b| a.name == b.name);
        out.tool_count = Some(i32::try_from(merged.len()).unwrap_or(i32::MAX));
        out.tools = merged;
    }
    let later = |old: &Option<Time>, new: &Option<Time>| match (old, new) {
        (Some(o), Some(n)) if n.0 > o.0 => true,
        (None, Some(_)) => true,
        _ => false,
    };
    if later(&status.last_used_at, &usage.last_used_at) {
        out.last_used_at = usage.last_used_at.clone();
        out.last_used_by = usage.last_used_by.clone().or(status.last_used_by.clone());
    }
    if usage.errors > 0 {
        let mut e = status.errors.clone().unwrap_or_default();
        e.count = e.count.saturating_add(usage.errors);
        if later(&e.last_at, &usage.last_error_at) {
            e.last_at = usage.last_error_at.clone();
            if let Some(m) = &usage.last_error_message {
                let mut m = m.clone();
                let mut cut = m.len().min(MAX_ERROR_MESSAGE);
                while !m.is_char_boundary(cut) {
                    cut -= 1;
                }
                m.truncate(cut);
                e.last_message = Some(m);
            }
        }
        out.errors = Some(e);
    }
    if usage.sanitized > 0 {
        let mut s = status.sanitized.clone().unwrap_or_default();
        s.count = s.count.saturating_add(usage.sanitized);
        if later(&s.last_at, &usage.last_sanitized_at) {
            s.last_at = usage.last_sanitized_at.clone();
        }
        out.sanitized = Some(s);
    }
    out
}

/// One removed McpServer in the inventory history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemovalRecord {
    /// Namespace of the server.
    pub namespace: String,
    /// Name of the server.
    pub name: String,
    /// UID of the removed object (a later server of the same name has another).
    pub uid: String,
    /// When it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<Time>,
    /// Who added it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_by: Option<String>,
    /// When it was removed.
    pub removed_at: Time,
    /// Who removed it (`unknown` when the webhook did not see the deletion).
    pub removed_by: String,
    /// Its approval state at removal.
    pub approval: ApprovalState,
    /// Number of tools it served.
    pub tool_count: i32,
}

impl RemovalRecord {
    /// The record for `server`, removed at `now`.
    pub fn of(server: &McpServer, now: Timestamp) -> Self {
        let status = server.status.clone().unwrap_or_default();
        Self {
            namespace: server.namespace().unwrap_or_default(),
            name: server.name_any(),
            uid: server.uid().unwrap_or_default(),
            added_at: status.added_at.or_else(|| server.metadata.creation_timestamp.clone()),
            added_by: status.added_by.or_else(|| server.annotations().get(names::ADDED_BY).cloned()),
            removed_at: Time(now),
            removed_by: server.annotations().get(names::REMOVED_BY).cloned().unwrap_or_else(|| "unknown".to_owned()),
            approval: status.approval.map(|a| a.state).unwrap_or_default(),
            tool_count: status.tool_count.unwrap_or(0),
        }
    }
}

/// The history with `record` appended (once per UID), oldest entries dropped beyond `limit`.
/// A history that does not parse is replaced rather than blocking removals; the caller logs it.
pub fn append_history(existing: Option<&str>, record: RemovalRecord, limit: usize) -> (String, bool) {
    let (mut history, parsed) = match existing {
        None => (Vec::new(), true),
        Some(text) => match serde_json::from_str::<Vec<RemovalRecord>>(text) {
            Ok(h) => (h, true),
            Err(_) => (Vec::new(), false),
        },
    };
    if !history.iter().any(|r| r.uid == record.uid && !record.uid.is_empty()) {
        history.push(record);
    }
    let excess = history.len().saturating_sub(limit.max(1));
    history.drain(..excess);
    (serde_json::to_string_pretty(&history).expect("records serialize"), parsed)
}

/// Parses the history; a missing or unreadable one is empty.
pub fn parse_history(text: Option<&str>) -> Vec<RemovalRecord> {
    text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
