//! Agent configuration rendering: the effective McpServer and redaction policy of every
//! server of a namespace, compiled into the [`AgentConfig`] that its agents read from the
//! namespace's ConfigMap (one key per server).
//!
//! A server's own McpRedactionPolicy *adds to* the cluster default, it cannot weaken it:
//! lists are joined, and where both set one value the stricter wins (actions: `hash` <
//! `mask` < `drop` < `drop-payload`; header mode: `allow-list` is stricter). A detector the
//! default turns on stays on.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use mcp_ledger_agent::redact::Redactor;
use mcp_ledger_crds::config::{
    AgentConfig, ExportersConfig, FileSinkConfig, NamedAccessPolicy, OtlpConfig, OtlpProtocol, RedactionConfig,
    ServerConfig,
};
use mcp_ledger_crds::redaction::{Action, HeaderMode, HeaderRules, McpRedactionPolicySpec, UnscannableAction};
use mcp_ledger_crds::server::ApprovalState;
use mcp_ledger_crds::{McpAccessPolicy, McpRedactionPolicy, McpServer};

use crate::names;

/// Where the rendered agents send their records. Comes from the operator's flags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderSettings {
    /// OTLP endpoint of the node agent (for example a node-local Service), if any.
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol for `otlp_endpoint`.
    pub otlp_protocol: OtlpProtocol,
    /// Also write records as JSON lines to the agent's stdout, where the node agent tails
    /// them. On when no OTLP endpoint is set, so records always leave the pod.
    pub stdout: bool,
}

/// The configurations of one namespace, and what went wrong per server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// ConfigMap data: `<server>.json` → agent configuration (pretty JSON).
    pub data: BTreeMap<String, String>,
    /// Problems to report on a server (as an Event and in logs): server name → message.
    pub problems: Vec<(String, String)>,
}

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

/// The agent configuration of one server with its effective redaction policy.
pub fn agent_config(server: &McpServer, policy: McpRedactionPolicySpec, settings: &RenderSettings) -> AgentConfig {
    let approval = server.status.as_ref().and_then(|s| s.approval.as_ref());
    let approved_tools = match approval {
        Some(a) if a.state == ApprovalState::Approved => a.tool_baseline.clone(),
        _ => Vec::new(),
    };
    let otlp = settings.otlp_endpoint.as_ref().map(|endpoint| OtlpConfig {
        endpoint: endpoint.clone(),
        protocol: settings.otlp_protocol,
        timeout_ms: 5_000,
    });
    let json_lines = (settings.stdout || otlp.is_none()).then(|| FileSinkConfig { path: "-".to_owned() });
    AgentConfig {
        server: ServerConfig {
            name: server.name_any(),
            namespace: server.namespace(),
            path: server.spec.path.clone(),
            transport: server.spec.transport,
            tool_policy: server.spec.tool_policy,
            allowed_versions: server.spec.allowed_versions.clone(),
            approved_tools,
        },
        redaction: RedactionConfig { policy, hash_key_file: None },
        exporters: ExportersConfig { otlp, json_lines, csv: None },
        ..Default::default()
    }
}

/// Renders the agent configurations of one namespace. `servers` are its McpServers (those
/// being deleted are left out), `policies` its McpRedactionPolicies, `default_policy` the
/// cluster default (absent: the agent's built-in defaults, every detector on).
pub fn render_namespace(
    servers: &[McpServer],
    policies: &[McpRedactionPolicy],
    default_policy: Option<&McpRedactionPolicySpec>,
    settings: &RenderSettings,
    access: &[McpAccessPolicy],
) -> Rendered {
    // Every McpAccessPolicy of the namespace goes to every server's agent, which keeps
    // those whose `servers` name it (one glob matcher, in the agent).
    let access: Vec<NamedAccessPolicy> = access
        .iter()
        .map(|p| NamedAccessPolicy {
            name: format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
            spec: p.spec.clone(),
        })
        .collect();
    let base = default_policy.cloned().unwrap_or_default();
    let mut out = Rendered::default();
    for server in servers.iter().filter(|s| s.metadata.deletion_timestamp.is_none()) {
        let name = server.name_any();
        let namespace = server.namespace().unwrap_or_default();
        let mut policy = base.clone();
        if let Some(reference) = &server.spec.redaction_policy_ref {
            match policies.iter().find(|p| p.name_any() == reference.name) {
                Some(own) => {
                    let merged = merge_policies(&base, &own.spec);
                    // The operator never holds the HMAC key: compile with a stand-in of the
                    // right length to check everything else.
                    match Redactor::compile(&merged, Some(vec![0; 32])) {
                        Ok(_) => policy = merged,
                        Err(e) => out.problems.push((
                            name.clone(),
                            format!(
                                "McpRedactionPolicy {namespace}/{} does not compile together with the cluster default \
                                 ({}); the agents use the cluster default alone until it is fixed",
                                reference.name,
                                e.0.join("; ")
                            ),
                        )),
                    }
                }
                None => out.problems.push((
                    name.clone(),
                    format!(
                        "spec.redactionPolicyRef names McpRedactionPolicy {namespace}/{}, which does not exist; the \
                         agents use the cluster default until it is created",
                        reference.name
                    ),
                )),
            }
        }
        // The HMAC key reaches the agent only from a Secret of the server's own namespace,
        // named by the server's own policy (the injector mounts it). Without one, `hash`
        // becomes `mask`: stricter, and the agent can still start.
        let own_key = server.spec.redaction_policy_ref.as_ref().and_then(|r| {
            policies.iter().find(|p| p.name_any() == r.name).and_then(|p| p.spec.hash_key_secret_ref.clone())
        });
        let mut hash_key_file = None;
        if own_key.is_some() {
            hash_key_file = Some(crate::inject::HASH_KEY_FILE.to_owned());
        } else if uses_hash(&policy) {
            policy = hash_to_mask(policy);
            out.problems.push((
                name.clone(),
                format!(
                    "the effective redaction policy hashes values, but no HMAC key Secret of namespace {namespace} is                      named by the server's own McpRedactionPolicy (hashKeySecretRef); hashed values are masked instead"
                ),
            ));
        }
        let mut config = agent_config(server, policy, settings);
        config.redaction.hash_key_file = hash_key_file;
        config.access = access.clone();
        if let Err(e) = config.validate() {
            out.problems.push((name.clone(), format!("rendered agent configuration is invalid: {e}")));
            continue;
        }
        out.data.insert(names::config_key(&name), serde_json::to_string_pretty(&config).expect("config serializes"));
    }
    out
}

#[cfg(test)]
mod tests;
