//! Agent configuration rendering: the effective McpServer and redaction policy of every
//! server of a namespace, compiled into the [`AgentConfig`] that its agents read from the
//! namespace's ConfigMap (one key per server). How a server's own McpRedactionPolicy adds
//! to the cluster default is [`mcp_ledger_crds::merge`] (the node agent merges the same way
//! for the servers' container logs).

use std::collections::BTreeMap;

use kube::ResourceExt;
use mcp_ledger_agent::redact::Redactor;
use mcp_ledger_crds::config::{
    AgentConfig, ExportersConfig, FileSinkConfig, NamedAccessPolicy, OtlpConfig, OtlpProtocol, RedactionConfig,
    ServerConfig,
};
use mcp_ledger_crds::redaction::McpRedactionPolicySpec;
use mcp_ledger_crds::server::ApprovalState;
use mcp_ledger_crds::{McpAccessPolicy, McpRedactionPolicy, McpServer};

pub use mcp_ledger_crds::merge::{hash_to_mask, merge_policies, uses_hash};

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
