//! Names that the operator, the webhook, the chart and users share: annotations, labels,
//! finalizers, field managers. One place, so that a rename cannot miss a reader.

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "mcp-ledger-operator";

/// Finalizer that holds an McpServer until its removal is recorded in the history.
pub const FINALIZER: &str = "mcpledger.dev/inventory";

/// Annotation the admission webhook sets on an McpServer at creation: the username of the
/// requesting user. Users cannot set, change or remove it.
pub const ADDED_BY: &str = "mcpledger.dev/added-by";

/// Annotation the admission webhook sets on an McpServer when a user deletes it.
pub const REMOVED_BY: &str = "mcpledger.dev/removed-by";

/// Annotation the admission webhook sets on an McpServerReview at creation: the reviewer.
pub const REVIEWED_BY: &str = "mcpledger.dev/reviewed-by";

/// Namespace label that opts a namespace into sidecar injection (`enabled`).
pub const INJECTION_LABEL: &str = "mcpledger.dev/injection";

/// Pod annotation that opts one pod out of injection (`"false"`).
pub const INJECT_ANNOTATION: &str = "mcpledger.dev/inject";

/// Pod annotation set on injection: the name of the McpServer the pod serves.
pub const SERVER_ANNOTATION: &str = "mcpledger.dev/server";

/// Pod annotation set on injection: `"true"`.
pub const INJECTED_ANNOTATION: &str = "mcpledger.dev/injected";

/// Pod annotation set on injection of a pod of a server that is not approved: its state.
pub const APPROVAL_ANNOTATION: &str = "mcpledger.dev/approval";

/// Name of the injected agent container.
pub const AGENT_CONTAINER: &str = "mcp-ledger-agent";

/// Name of the per-namespace ConfigMap holding one agent configuration per McpServer.
pub const AGENT_CONFIG_MAP: &str = "mcp-ledger-agent";

/// Name of the ConfigMap (in the operator's namespace) holding the removal history.
pub const HISTORY_CONFIG_MAP: &str = "mcp-ledger-history";

/// Key of the history in [`HISTORY_CONFIG_MAP`].
pub const HISTORY_KEY: &str = "history.json";

/// Labels on every object the operator creates.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "mcp-ledger-operator");

/// Key of a server's agent configuration in the namespace's [`AGENT_CONFIG_MAP`].
pub fn config_key(server: &str) -> String {
    format!("{server}.json")
}
