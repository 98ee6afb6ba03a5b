//! How a server's own McpRedactionPolicy adds to the cluster default: it cannot weaken it.
//! Lists are joined, and where both set one value the stricter wins (actions: `hash` <
//! `mask` < `drop` < `drop-payload`; header mode: `allow-list` is stricter). A detector the
//! default turns on stays on. The operator renders the sidecars' configuration with it and
//! the node agent redacts the servers' container logs with it.

use std::collections::BTreeSet;

use crate::redaction::{Action, HeaderMode, HeaderRules, McpRedactionPolicySpec, UnscannableAction};

fn action_rank(a: Action) -> u8 {
    match a {
        Action::Hash => 0,
        Action::Mask => 1,
        Action::Drop => 2,
        Action::DropPayload => 3,
    }
}

fn stricter(a: Action, b: Action) -> Action {
    if action_rank(b) > action_rank(a) { b } else { a }
}

/// The effective policy: `base` (the cluster default) with `extra` added to it.
pub fn merge_policies(base: &McpRedactionPolicySpec, extra: &McpRedactionPolicySpec) -> McpRedactionPolicySpec {
    let lower = |v: &[String]| v.iter().map(|h| h.to_ascii_lowercase()).collect::<BTreeSet<_>>();
    let deny: Vec<String> = lower(&base.headers.deny).union(&lower(&extra.headers.deny)).cloned().collect();
    let (mode, allow) = match (base.headers.mode, extra.headers.mode) {
        (HeaderMode::AllowList, HeaderMode::AllowList) => (
            HeaderMode::AllowList,
            lower(&base.headers.allow).intersection(&lower(&extra.headers.allow)).cloned().collect(),
        ),
        (HeaderMode::AllowList, _) => (HeaderMode::AllowList, base.headers.allow.clone()),
        (_, HeaderMode::AllowList) => (HeaderMode::AllowList, extra.headers.allow.clone()),
        _ => (HeaderMode::DenyList, Vec::new()),
    };
    // Detectors: the default's switches, then the server's; a switch that would turn off a
    // detector the default leaves on is dropped.
    let base_off: BTreeSet<&str> = base.detectors.iter().filter(|d| !d.enabled).map(|d| d.name.as_str()).collect();
    let mut detectors = base.detectors.clone();
    detectors.extend(extra.detectors.iter().filter(|d| d.enabled || base_off.contains(d.name.as_str())).cloned());
    let json_paths = join_named(&base.json_paths, &extra.json_paths, |r| &mut r.name);
    let custom_patterns = join_named(&base.custom_patterns, &extra.custom_patterns, |r| &mut r.name);
    McpRedactionPolicySpec {
        headers: HeaderRules { mode, deny, allow, action: stricter(base.headers.action, extra.headers.action) },
        detectors,
        json_paths,
        custom_patterns,
        default_action: stricter(base.default_action, extra.default_action),
        redact_ip_addresses: base.redact_ip_addresses || extra.redact_ip_addresses,
        hash_key_secret_ref: extra.hash_key_secret_ref.clone().or_else(|| base.hash_key_secret_ref.clone()),
        on_unscannable: stricter_unscannable(base.on_unscannable, extra.on_unscannable),
    }
}

/// `base` then `extra`; a rule of `extra` whose name `base` uses gets a `-server` suffix,
/// so names stay unique (the CRD requires it and redaction summaries name rules).
fn join_named<T: Clone>(base: &[T], extra: &[T], name: impl Fn(&mut T) -> &mut String) -> Vec<T> {
    let mut out = base.to_vec();
    for rule in extra {
        let mut rule = rule.clone();
        let wanted = name(&mut rule).clone();
        if out.iter_mut().any(|r| *name(r) == wanted) {
            *name(&mut rule) = format!("{wanted}-server");
        }
        out.push(rule);
    }
    out
}

fn stricter_unscannable(a: UnscannableAction, b: UnscannableAction) -> UnscannableAction {
    if a == UnscannableAction::DropRecord || b == UnscannableAction::DropRecord {
        UnscannableAction::DropRecord
    } else {
        a
    }
}

/// Whether any action of the policy is `hash`.
pub fn uses_hash(p: &McpRedactionPolicySpec) -> bool {
    p.default_action == Action::Hash
        || p.headers.action == Action::Hash
        || p.detectors.iter().any(|d| d.action == Some(Action::Hash))
        || p.json_paths.iter().any(|r| r.action == Action::Hash)
        || p.custom_patterns.iter().any(|r| r.action == Action::Hash)
}

/// The policy with every `hash` action turned into `mask`.
pub fn hash_to_mask(mut p: McpRedactionPolicySpec) -> McpRedactionPolicySpec {
    let fix = |a: &mut Action| {
        if *a == Action::Hash {
            *a = Action::Mask;
        }
    };
    fix(&mut p.default_action);
    fix(&mut p.headers.action);
    p.detectors.iter_mut().filter_map(|d| d.action.as_mut()).for_each(fix);
    p.json_paths.iter_mut().for_each(|r| fix(&mut r.action));
    p.custom_patterns.iter_mut().for_each(|r| fix(&mut r.action));
    p.hash_key_secret_ref = None;
    p
}
