//! The usage report: what a node agent tells the operator (`POST /v1/usage`) about the MCP
//! servers on its node, for the operator to merge into McpServer status (the operator stays
//! the only writer of status). Counts are deltas since the node agent's previous report.

/// The API time type, re-exported for the agent, which has no direct k8s-openapi dependency.
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::server::{ServerInfo, ToolFingerprint};

/// Most servers in one report.
pub const MAX_SERVERS_PER_REPORT: usize = 1024;

/// One report from one node agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageReport {
    /// The node the agent runs on.
    pub node: String,
    /// Usage per server since the previous report.
    #[serde(default)]
    pub servers: Vec<ServerUsage>,
}

/// Usage of one McpServer seen on one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerUsage {
    /// Namespace of the McpServer.
    pub namespace: String,
    /// Name of the McpServer.
    pub name: String,
    /// Identity the server reported, when an `initialize` or `server/discover` was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_info: Option<ServerInfo>,
    /// The complete tool list of the latest `tools/list` seen (absent: none seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolFingerprint>>,
    /// When that list was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_at: Option<Time>,
    /// When a client last called the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Time>,
    /// Verified identity of that client (`unverified` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_by: Option<String>,
    /// Error responses since the previous report.
    #[serde(default)]
    pub errors: i64,
    /// When the last error was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<Time>,
    /// The last error message, already redacted by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
    /// Messages sanitized by the redactor since the previous report.
    #[serde(default)]
    pub sanitized: i64,
    /// When the last sanitized message was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sanitized_at: Option<Time>,
}
