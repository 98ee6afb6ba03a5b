//! `McpServerReview`: an approval decision about one McpServer.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::LocalObjectRef;

/// An approval decision about one McpServer of the same namespace. Who may create
/// reviews is ordinary RBAC; the admission webhook records the reviewer. The latest
/// review of a server decides its approval state. Reviews cannot be edited: make a new one.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpledger.dev",
    version = "v1alpha1",
    kind = "McpServerReview",
    plural = "mcpserverreviews",
    singular = "mcpserverreview",
    shortname = "mcpreview",
    category = "mcpledger",
    namespaced,
    status = "McpServerReviewStatus",
    derive = "PartialEq",
    doc = "An approval decision (Approve or Reject) about one McpServer.",
    printcolumn(
        name = "Server",
        type_ = "string",
        json_path = ".spec.serverRef.name",
        description = "The McpServer reviewed"
    ),
    printcolumn(name = "Decision", type_ = "string", json_path = ".spec.decision", description = "Approve or Reject"),
    printcolumn(
        name = "Reviewer",
        type_ = "string",
        json_path = ".status.reviewedBy",
        description = "User that made the review"
    ),
    printcolumn(
        name = "Applied",
        type_ = "string",
        json_path = ".status.phase",
        description = "Whether the decision was applied"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.decision != 'Reject' || (has(self.reason) && size(self.reason.trim()) > 0)").message("spec.reason is required when spec.decision is Reject: say why the server was rejected").field_path(".reason"))]
#[x_kube(validation = Rule::new("self == oldSelf").message("an McpServerReview cannot be changed: create a new review instead"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServerReviewSpec {
    /// The McpServer (in this namespace) that the decision is about.
    pub server_ref: LocalObjectRef,
    /// `Approve` or `Reject`.
    pub decision: Decision,
    /// Free-form notes of the reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub notes: Option<String>,
    /// Why the server was rejected (required for `Reject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// An approval decision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Decision {
    /// The server may run; its current tool set becomes the approved baseline.
    Approve,
    /// The server may not run.
    Reject,
}

/// Whether and when the operator applied the review.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServerReviewStatus {
    /// Username of the reviewer, recorded by the admission webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    /// When the review was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<Time>,
    /// `Applied`, `Superseded` (a later review decided) or `ServerNotFound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReviewPhase>,
    /// Conditions with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What became of a review.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ReviewPhase {
    /// The decision is the server's current approval.
    Applied,
    /// A later review of the same server decided instead.
    Superseded,
    /// No McpServer of that name exists in the namespace.
    ServerNotFound,
}
