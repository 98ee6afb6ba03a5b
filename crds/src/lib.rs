//! The mcp-ledger API: the custom resources (group `mcpledger.dev`, version `v1alpha1`),
//! the agent configuration the operator renders and the agent reads, and the audit record
//! with its OpenTelemetry names. No I/O.

// `#[kube(printcolumn(name = .., type_ = ..), printcolumn(..))]` repeats keys inside
// separate column lists; clippy reads them as one attribute list and flags them.
#![allow(clippy::duplicated_attributes)]

pub mod access;
pub mod common;
pub mod config;
pub mod ids;
mod json_line;
pub mod merge;
pub mod record;
pub mod redaction;
pub mod review;
pub mod server;
pub mod usage;
pub mod versions;

pub use access::{McpAccessPolicy, McpAccessPolicySpec};
pub use config::AgentConfig;
pub use json_line::{HeaderTexts, any_needs_escape, first_needing_escape};
pub use record::AuditRecord;
pub use redaction::{McpRedactionPolicy, McpRedactionPolicySpec};
pub use review::{McpServerReview, McpServerReviewSpec};
pub use server::{McpServer, McpServerSpec, McpServerStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every mcp-ledger resource.
pub const GROUP: &str = "mcpledger.dev";
/// API version of every mcp-ledger resource.
pub const VERSION: &str = "v1alpha1";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An agent configuration that cannot be used; each entry names a field and the fix.
    #[error("invalid agent configuration: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
}

/// Every CRD of mcp-ledger, with the file name it is written to by `crdgen`.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("mcpservers.yaml", McpServer::crd()),
        ("mcpserverreviews.yaml", McpServerReview::crd()),
        ("mcpredactionpolicies.yaml", McpRedactionPolicy::crd()),
        ("mcpaccesspolicies.yaml", McpAccessPolicy::crd()),
    ]
}

#[cfg(test)]
mod tests;
