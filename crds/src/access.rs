//! `McpAccessPolicy`: who may call which tools of which servers.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who (verified users, groups, service accounts, JWT claims) may call which tools of
/// which McpServers in this namespace. Deny rules win over allow rules; a call that no
/// rule matches gets `defaultEffect`. In `observe` mode the agent only records what
/// `enforce` would have done.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpledger.dev",
    version = "v1alpha1",
    kind = "McpAccessPolicy",
    plural = "mcpaccesspolicies",
    singular = "mcpaccesspolicy",
    shortname = "mcpaccess",
    category = "mcpledger",
    namespaced,
    derive = "PartialEq",
    doc = "Access rules for MCP tool calls: subjects, servers and tools, allow/deny, observe or enforce.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Default", type_ = "string", json_path = ".spec.defaultEffect"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.rules.all(a, self.rules.exists_one(b, b.name == a.name))").message("rule names must be unique within spec.rules"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpAccessPolicySpec {
    /// `observe` records what enforcement would do; `enforce` refuses denied calls with a
    /// JSON-RPC error and hides denied tools from list responses.
    #[serde(default)]
    pub mode: EnforcementMode,
    /// McpServer names (or globs such as `github-*`) this policy applies to; empty means
    /// every McpServer in the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub servers: Vec<String>,
    /// The effect for a call that no rule matches. Defaults to `Deny`, the safe choice.
    #[serde(default = "default_deny")]
    pub default_effect: Effect,
    /// The rules. Deny wins over allow.
    #[serde(default)]
    #[schemars(length(max = 512))]
    pub rules: Vec<AccessRule>,
}

fn default_deny() -> Effect {
    Effect::Deny
}

/// Observe or enforce.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementMode {
    /// Record decisions only.
    #[default]
    Observe,
    /// Refuse denied calls.
    Enforce,
}

/// Allow or deny.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Effect {
    /// The call may go ahead.
    Allow,
    /// The call is refused (in enforce mode).
    Deny,
}

/// One access rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRule {
    /// Name of the rule, recorded in every `policy-denied` record it decides.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// `Allow` or `Deny`.
    pub effect: Effect,
    /// Who the rule is about; the rule matches a caller that matches any subject.
    #[schemars(length(min = 1, max = 128))]
    pub subjects: Vec<Subject>,
    /// McpServer names or globs; empty means the servers of the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub servers: Vec<String>,
    /// Tool names or globs (`*` matches any tool); empty means every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 256)))]
    pub tools: Vec<String>,
}

/// A caller, identified by a verified identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.kind != 'Claim' || has(self.claim)").message("a subject of kind Claim needs `claim` (the JWT claim name); `name` is the value it must have"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `User`, `Group`, `ServiceAccount` or `Claim`.
    pub kind: SubjectKind,
    /// User name, group name, service account as `namespace/name`, or the claim's value.
    /// `*` matches any verified caller.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// For `Claim`: the JWT claim name (for example `department`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub claim: Option<String>,
}

/// Kind of subject.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SubjectKind {
    /// A verified user id.
    User,
    /// A verified group (from the configured groups claim or gateway header).
    Group,
    /// A Kubernetes service account (`namespace/name`).
    ServiceAccount,
    /// A JWT claim with a given value.
    Claim,
}
