//! The caches every replica keeps for the webhooks: McpServers and McpRedactionPolicies,
//! watched cluster-wide and answered from memory, so that admission never waits on the
//! API server.

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use mcp_ledger_crds::{McpRedactionPolicy, McpServer};

use crate::webhook::Lookup;

/// Readers of the watched objects.
#[derive(Clone)]
pub struct Caches {
    /// Every McpServer.
    pub servers: Store<McpServer>,
    /// Every McpRedactionPolicy.
    pub policies: Store<McpRedactionPolicy>,
}

impl Lookup for Caches {
    fn servers(&self, namespace: &str) -> Vec<McpServer> {
        self.servers
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace))
            .map(|s| s.as_ref().clone())
            .collect()
    }

    fn redaction_policy(&self, namespace: &str, name: &str) -> Option<mcp_ledger_crds::McpRedactionPolicySpec> {
        self.policies
            .state()
            .iter()
            .find(|p| p.namespace().as_deref() == Some(namespace) && p.name_any() == name)
            .map(|p| p.spec.clone())
    }

    fn redaction_policies(&self, namespace: &str) -> Vec<String> {
        self.policies
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace))
            .map(|p| p.name_any())
            .collect()
    }
}

impl Caches {
    /// Starts the watches; they retry with backoff for as long as the process runs.
    pub fn start(client: Client) -> Self {
        let (servers, writer) = reflector::store();
        let stream =
            reflector::reflector(writer, watcher(Api::<McpServer>::all(client.clone()), watcher::Config::default()))
                .default_backoff()
                .touched_objects();
        tokio::spawn(stream.for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "McpServer watch failed; retrying");
            }
        }));
        let (policies, writer) = reflector::store();
        let stream =
            reflector::reflector(writer, watcher(Api::<McpRedactionPolicy>::all(client), watcher::Config::default()))
                .default_backoff()
                .touched_objects();
        tokio::spawn(stream.for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "McpRedactionPolicy watch failed; retrying");
            }
        }));
        Self { servers, policies }
    }

    /// Sets `mcp_ledger_operator_servers{approval}` from the cache every `every`.
    pub async fn count_servers(self, metrics: crate::metrics::Metrics, every: std::time::Duration) {
        use mcp_ledger_crds::server::ApprovalState;
        loop {
            let servers = self.servers.state();
            metrics.server_approved.reset();
            let mut changed = 0;
            for s in &servers {
                let status = s.status.clone().unwrap_or_default();
                let approved = status.approval.as_ref().is_some_and(|a| a.state == ApprovalState::Approved);
                let namespace = s.namespace().unwrap_or_default();
                metrics
                    .server_approved
                    .with_label_values(&[namespace.as_str(), s.name_any().as_str()])
                    .set(i64::from(approved));
                if status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == mcp_ledger_crds::server::condition::TOOLS_CHANGED && c.status == "True")
                {
                    changed += 1;
                }
            }
            metrics.servers_tools_changed.set(changed);
            for state in [ApprovalState::Pending, ApprovalState::Approved, ApprovalState::Rejected] {
                let n = servers
                    .iter()
                    .filter(|s| {
                        s.status.as_ref().and_then(|s| s.approval.as_ref()).map(|a| a.state).unwrap_or_default()
                            == state
                    })
                    .count();
                metrics.servers.with_label_values(&[state.as_str()]).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Waits until both caches hold a first full list.
    pub async fn ready(&self) {
        let _ = self.servers.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
    }
}
