//! `McpServer`: one MCP server in the inventory.
//!
//! The spec is what a user declares; the status is the inventory the operator keeps.
//! Only the operator writes status (through the status subresource).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectRef, Transport};

/// The pattern a port name must match: an IANA service name as Kubernetes requires for
/// container ports (lowercase letters, digits and '-', at least one letter, no leading,
/// trailing or doubled '-'); at most 15 characters is a separate bound.
pub const PORT_NAME_PATTERN: &str = "^([0-9]+-)*[0-9]*[a-z]([a-z0-9]|-[a-z0-9])*$";

/// Schema of `spec.port`: int-or-string, with the bounds that apply to each type (number
/// bounds apply to numbers, string bounds to names), as structural schemas allow.
fn port_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "minimum": 1,
        "maximum": 65535,
        "minLength": 1,
        "maxLength": 15,
        "pattern": PORT_NAME_PATTERN
    })
}

/// Declares one MCP server: which pods serve it, on which port and path, who owns it,
/// and how the agent governs it. `kubectl get mcpservers` shows the inventory status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpledger.dev",
    version = "v1alpha1",
    kind = "McpServer",
    plural = "mcpservers",
    singular = "mcpserver",
    shortname = "mcps",
    category = "mcpledger",
    namespaced,
    status = "McpServerStatus",
    derive = "PartialEq",
    doc = "An MCP server in the mcp-ledger inventory: the pods that serve it, its owner, its approval state, the tools it serves and who used it last.",
    printcolumn(
        name = "Approval",
        type_ = "string",
        json_path = ".status.approval.state",
        description = "Approval state: Pending, Approved or Rejected"
    ),
    printcolumn(
        name = "Tools",
        type_ = "integer",
        json_path = ".status.toolCount",
        description = "Number of tools the server serves"
    ),
    printcolumn(
        name = "Pods",
        type_ = "integer",
        json_path = ".status.injectedPods",
        description = "Pods that carry the mcp-ledger agent"
    ),
    printcolumn(
        name = "Last Used",
        type_ = "date",
        json_path = ".status.lastUsedAt",
        description = "When a client last called the server"
    ),
    printcolumn(
        name = "Owner",
        type_ = "string",
        json_path = ".spec.owner",
        priority = 1,
        description = "Contact email of the owner"
    ),
    printcolumn(
        name = "Added By",
        type_ = "string",
        json_path = ".status.addedBy",
        priority = 1,
        description = "User that created the McpServer"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServerSpec {
    /// Label selector of the pods that serve this MCP server. Must select on at least one
    /// label: an empty selector would match every pod of the namespace.
    #[x_kube(validation = Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)").message("spec.selector must set matchLabels or matchExpressions: an empty selector would match every pod in the namespace"))]
    pub selector: LabelSelector,

    /// The container port that serves MCP, by name (for example `mcp`) or number
    /// (1-65535). A name is an IANA service name: at most 15 lowercase letters, digits and
    /// '-', with at least one letter. The agent takes over this port so that Services that
    /// target it keep working unchanged.
    #[schemars(schema_with = "port_schema")]
    pub port: IntOrString,

    /// HTTP path of the MCP endpoint. Defaults to `/mcp` for Streamable HTTP;
    /// for the 2024-11-05 HTTP+SSE transport this is the SSE stream path (for example `/sse`).
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^\s?#]*$"))]
    pub path: String,

    /// MCP transport the server speaks: `streamable-http` (2025-03-26 and later) or
    /// `sse` (the 2024-11-05 HTTP+SSE transport).
    #[serde(default)]
    pub transport: Transport,

    /// Contact email of the team or person that owns the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    pub owner: Option<String>,

    /// What the server is for, in a sentence or two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,

    /// Server versions (as reported in `serverInfo.version`) that may run: exact versions
    /// (`1.4.2`) or semver ranges (`>=1.4, <2`). Empty means any version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_versions: Vec<String>,

    /// What the agent does when a tool definition changes, appears or disappears after
    /// approval: `observe` records it, `warn` records a warning, `block` also hides the
    /// changed tool and refuses calls to it.
    #[serde(default)]
    pub tool_policy: ToolPolicy,

    /// The McpRedactionPolicy (in this namespace) applied on top of the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction_policy_ref: Option<LocalObjectRef>,
}

fn default_path() -> String {
    "/mcp".to_owned()
}

/// What the agent does when a tool definition changes after approval.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolPolicy {
    /// Record the change at INFO level.
    #[default]
    Observe,
    /// Record the change at WARN level, set the ToolsChanged condition and emit an Event.
    Warn,
    /// As `warn`, and hide changed or new tools from `tools/list` and refuse calls to them.
    Block,
}

/// The inventory: what the operator knows about the server. Written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(oldSelf.addedBy) || has(self.addedBy)").message("status.addedBy cannot be removed once recorded"))]
#[serde(rename_all = "camelCase")]
pub struct McpServerStatus {
    /// When the McpServer was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<Time>,

    /// Username of the user that created the McpServer, as recorded by the admission
    /// webhook from the request's authenticated user. Never taken from the spec; cannot
    /// change once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("status.addedBy cannot be changed once recorded"))]
    pub added_by: Option<String>,

    /// The approval decision, from the latest McpServerReview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,

    /// Identity the server reported in `initialize` (or `server/discover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_info: Option<ServerInfo>,

    /// The tools the server serves, with the hash of each definition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub tools: Vec<ToolStatus>,

    /// Number of tools the server serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tool_count: Option<i32>,

    /// When a client last called the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Time>,

    /// Verified identity of the client that last called the server (`unverified` when the
    /// caller had no verified identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_by: Option<String>,

    /// Errors the server answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorSummary>,

    /// Messages the redactor had to sanitize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitized: Option<SanitizedSummary>,

    /// Number of pods of the server that carry the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub injected_pods: Option<i32>,

    /// The pods that serve the server and whether each carries the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub pods: Vec<ServingPod>,

    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Approved, Injected, ToolsObserved, ToolsChanged and VersionAllowed, with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Approval state of a server.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ApprovalState {
    /// No review yet.
    #[default]
    Pending,
    /// Approved by a review.
    Approved,
    /// Rejected by a review.
    Rejected,
}

impl ApprovalState {
    /// The name as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Approved => "Approved",
            Self::Rejected => "Rejected",
        }
    }
}

/// The approval decision applied from the latest McpServerReview.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Pending, Approved or Rejected.
    pub state: ApprovalState,
    /// Username of the reviewer, recorded by the admission webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    /// When the review was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<Time>,
    /// Name of the McpServerReview that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// The reviewer's notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The reason for a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The tool set at approval time: the baseline that tool pinning compares against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub tool_baseline: Vec<ToolFingerprint>,
}

/// A tool's name and definition hash.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolFingerprint {
    /// Tool name.
    pub name: String,
    /// SHA-256 (hex) of the canonical JSON of the tool definition.
    pub definition_hash: String,
}

/// Identity reported by the server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// `serverInfo.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `serverInfo.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The negotiated MCP protocol revision, for example `2025-11-25`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

/// One tool the server serves.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolStatus {
    /// Tool name.
    pub name: String,
    /// SHA-256 (hex) of the canonical JSON of the tool definition.
    pub definition_hash: String,
    /// When the tool was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    /// When the definition last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Time>,
}

/// Errors the server answered with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorSummary {
    /// Number of error responses seen.
    #[schemars(range(min = 0))]
    pub count: i64,
    /// When the last one was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<Time>,
    /// The last error message, after redaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub last_message: Option<String>,
}

/// Messages the redactor sanitized.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SanitizedSummary {
    /// Number of messages in which something was redacted.
    #[schemars(range(min = 0))]
    pub count: i64,
    /// When the last one was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<Time>,
}

/// A pod that serves the server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServingPod {
    /// Pod name.
    pub name: String,
    /// Whether the pod carries the mcp-ledger agent.
    pub injected: bool,
}

/// Condition types the operator sets on an McpServer.
pub mod condition {
    /// The server is in the inventory and has serving pods.
    pub const READY: &str = "Ready";
    /// A review approved the server.
    pub const APPROVED: &str = "Approved";
    /// Every serving pod carries the agent.
    pub const INJECTED: &str = "Injected";
    /// The agent has seen the server's tool list.
    pub const TOOLS_OBSERVED: &str = "ToolsObserved";
    /// A tool changed, appeared or disappeared after approval.
    pub const TOOLS_CHANGED: &str = "ToolsChanged";
    /// The version the server reports is in `spec.allowedVersions`.
    pub const VERSION_ALLOWED: &str = "VersionAllowed";
}
