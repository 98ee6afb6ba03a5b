//! Enrichment of the records a node agent relays, from what it knows about the pods of
//! its node and their namespaces: `k8s.*` resource attributes (node, owner workload), the
//! McpServer the pod serves and its approval state at injection, and `teamId`/`orgId` from
//! configured pod or namespace labels for records that carry no verified team/org of their
//! own. Pure: the watch that fills [`Cluster`] lives in the caller.

use std::collections::BTreeMap;

use mcp_ledger_crds::record::attr::{self, resource};

use crate::export::proto::{self, ExportLogsServiceRequest, KeyValue};

/// What the node agent knows about one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Node.
    pub node: String,
    /// Owner workload kind (`Deployment`, `StatefulSet`, `DaemonSet`, `Job`, …), if any.
    pub workload_kind: Option<String>,
    /// Owner workload name.
    pub workload_name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The McpServer it serves (`mcpledger.dev/server`), when injected.
    pub server: Option<String>,
    /// The server's approval state when the pod was injected (`mcpledger.dev/approval`;
    /// absent means Approved).
    pub approval: Option<String>,
}

impl PodFacts {
    /// The facts of a Pod object.
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> Self {
        let meta = &pod.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let owner = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        let (workload_kind, workload_name) = match owner {
            // A ReplicaSet made by a Deployment is named <deployment>-<pod-template-hash>.
            Some(o) if o.kind == "ReplicaSet" => match labels.get("pod-template-hash") {
                Some(hash) if o.name.ends_with(&format!("-{hash}")) => {
                    (Some("Deployment".to_owned()), Some(o.name[..o.name.len() - hash.len() - 1].to_owned()))
                }
                _ => (Some("ReplicaSet".to_owned()), Some(o.name.clone())),
            },
            Some(o) => (Some(o.kind.clone()), Some(o.name.clone())),
            None => (None, None),
        };
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
            workload_kind,
            workload_name,
            server: annotations.get("mcpledger.dev/server").cloned(),
            approval: annotations.get("mcpledger.dev/approval").cloned(),
            labels,
        }
    }
}

/// Which labels carry team and org ids.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdentityLabels {
    /// Pod or namespace label holding the team id (the pod's wins).
    pub team: Option<String>,
    /// Pod or namespace label holding the org id (the pod's wins).
    pub org: Option<String>,
}

/// The pods of the node and the labels of every namespace.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Pods by UID.
    pub pods: BTreeMap<String, PodFacts>,
    /// Namespace labels by namespace.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Cluster {
    fn find(&self, uid: Option<&str>, namespace: Option<&str>, name: Option<&str>) -> Option<&PodFacts> {
        if let Some(p) = uid.and_then(|u| self.pods.get(u)) {
            return Some(p);
        }
        let (namespace, name) = (namespace?, name?);
        self.pods.values().find(|p| p.namespace == namespace && p.name == name)
    }
}

fn set_if_missing(attrs: &mut Vec<KeyValue>, key: &str, value: Option<&str>) {
    if let Some(v) = value
        && !attrs.iter().any(|kv| kv.key == key)
    {
        attrs.push(KeyValue { key: key.to_owned(), value: Some(proto::string(v)) });
    }
}

/// Resource attribute of the owner workload for a kind.
fn workload_key(kind: &str) -> Option<String> {
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" => {
            Some(format!("k8s.{}.name", kind.to_ascii_lowercase()))
        }
        _ => None,
    }
}

/// Attribute: the McpServer's approval state when the pod was injected.
pub const SERVER_APPROVAL: &str = "mcpledger.server.approval";

/// Adds what the cluster knows to every resource and record of `request`. Returns how
/// many resources matched a known pod.
pub fn enrich(request: &mut ExportLogsServiceRequest, cluster: &Cluster, labels: &IdentityLabels) -> usize {
    let mut matched = 0;
    for rl in &mut request.resource_logs {
        let resource = rl.resource.get_or_insert_with(Default::default);
        let attrs = &resource.attributes;
        let Some(pod) = cluster
            .find(
                proto::find_str(attrs, resource::K8S_POD_UID),
                proto::find_str(attrs, resource::K8S_NAMESPACE_NAME),
                proto::find_str(attrs, resource::K8S_POD_NAME),
            )
            .cloned()
        else {
            continue;
        };
        matched += 1;
        let attrs = &mut resource.attributes;
        set_if_missing(attrs, resource::K8S_NAMESPACE_NAME, Some(&pod.namespace));
        set_if_missing(attrs, resource::K8S_POD_NAME, Some(&pod.name));
        set_if_missing(attrs, resource::K8S_POD_UID, Some(&pod.uid));
        set_if_missing(attrs, resource::K8S_NODE_NAME, Some(&pod.node).filter(|n| !n.is_empty()).map(String::as_str));
        if let (Some(kind), Some(name)) = (&pod.workload_kind, &pod.workload_name)
            && let Some(key) = workload_key(kind)
        {
            set_if_missing(attrs, &key, Some(name));
        }
        set_if_missing(attrs, attr::SERVER_NAME, pod.server.as_deref());
        if pod.server.is_some() {
            set_if_missing(attrs, SERVER_APPROVAL, Some(pod.approval.as_deref().unwrap_or("Approved")));
        }
        let ns_labels = cluster.namespaces.get(&pod.namespace);
        let from_labels = |key: &Option<String>| {
            let key = key.as_ref()?;
            pod.labels.get(key).or_else(|| ns_labels.and_then(|l| l.get(key))).cloned()
        };
        let (team, org) = (from_labels(&labels.team), from_labels(&labels.org));
        for record in rl.scope_logs.iter_mut().flat_map(|s| s.log_records.iter_mut()) {
            set_if_missing(&mut record.attributes, attr::TEAM_ID, team.as_deref());
            set_if_missing(&mut record.attributes, attr::ORG_ID, org.as_deref());
        }
    }
    matched
}

#[cfg(test)]
mod tests;

/// Keeps a [`Cluster`] current from a watch of the node's pods (field selector on the node
/// name: one watch scoped to its node) and of the namespaces' metadata (labels only).
pub mod watch {
    use std::collections::BTreeMap;
    use std::sync::{Arc, RwLock};

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::core::PartialObjectMeta;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    use kube::{Api, Client, ResourceExt};

    use super::{Cluster, PodFacts};

    /// Watches until the process ends; retries with backoff when the API server is away.
    /// A relist (after a watch expired) is collected aside and swapped in at its end, so
    /// the pods stay known while it runs.
    pub async fn run(client: Client, node: String, cluster: Arc<RwLock<Cluster>>) {
        let pods = {
            let (cluster, client) = (cluster.clone(), client.clone());
            let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
            async move {
                let mut events =
                    std::pin::pin!(watcher::watcher(Api::<Pod>::all(client.clone()), config).default_backoff());
                let mut relisting: Option<BTreeMap<String, PodFacts>> = None;
                while let Some(event) = events.next().await {
                    match event {
                        Ok(Event::Init) => relisting = Some(BTreeMap::new()),
                        Ok(Event::InitApply(pod)) => {
                            let facts = PodFacts::of(&pod);
                            relisting.get_or_insert_default().insert(facts.uid.clone(), facts);
                        }
                        Ok(Event::InitDone) => {
                            cluster.write().expect("cluster lock").pods = relisting.take().unwrap_or_default();
                        }
                        Ok(Event::Apply(pod)) => {
                            let facts = PodFacts::of(&pod);
                            cluster.write().expect("cluster lock").pods.insert(facts.uid.clone(), facts);
                        }
                        Ok(Event::Delete(pod)) => {
                            cluster.write().expect("cluster lock").pods.remove(&pod.uid().unwrap_or_default());
                        }
                        Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                    }
                }
            }
        };
        let namespaces = async move {
            let api = Api::<PartialObjectMeta<Namespace>>::all(client);
            let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
            let mut relisting: Option<BTreeMap<String, BTreeMap<String, String>>> = None;
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Init) => relisting = Some(BTreeMap::new()),
                    Ok(Event::InitApply(ns)) => {
                        let labels = ns.metadata.labels.clone().unwrap_or_default();
                        relisting.get_or_insert_default().insert(ns.name_any(), labels);
                    }
                    Ok(Event::InitDone) => {
                        cluster.write().expect("cluster lock").namespaces = relisting.take().unwrap_or_default();
                    }
                    Ok(Event::Apply(ns)) => {
                        let labels = ns.metadata.labels.clone().unwrap_or_default();
                        cluster.write().expect("cluster lock").namespaces.insert(ns.name_any(), labels);
                    }
                    Ok(Event::Delete(ns)) => {
                        cluster.write().expect("cluster lock").namespaces.remove(&ns.name_any());
                    }
                    Err(e) => tracing::warn!(error = %e, "namespace watch failed; retrying"),
                }
            }
        };
        tokio::join!(pods, namespaces);
    }
}
