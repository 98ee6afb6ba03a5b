//! The redaction policy of each MCP server's own container logs: the cluster default
//! McpRedactionPolicy (`default` in the operator's namespace) with the server's
//! `redactionPolicyRef` added to it, merged exactly as the operator merges it for the
//! server's sidecar ([`mcp_ledger_crds::merge`]). The node agent holds no HMAC key, so a
//! `hash` action masks instead (stricter). A server policy that is missing or does not
//! compile together with the default leaves the default alone, as in the sidecar; without
//! a cluster default the agent's built-in defaults apply.
//!
//! Container logs are not tailed until the first lists of McpServers and policies are in
//! ([`Policies::synced`]): a line is never redacted with less than its server's policy
//! because the watch had not caught up. A relist swaps the new state in at its end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mcp_ledger_crds::merge::{hash_to_mask, merge_policies};
use mcp_ledger_crds::redaction::{CLUSTER_DEFAULT_POLICY, McpRedactionPolicySpec};

use crate::redact::Redactor;

type Key = (String, String);

/// Most compiled redactors kept (distinct effective policies); the cache starts over past it.
const MAX_COMPILED: usize = 64;

/// The objects of one kind by (namespace, name), as a watch reports them: a relist
/// collects aside and replaces them at its end.
struct Tracked<V> {
    current: BTreeMap<Key, V>,
    relisting: Option<BTreeMap<Key, V>>,
    listed: bool,
}

impl<V: PartialEq> Tracked<V> {
    fn new() -> Self {
        Self { current: BTreeMap::new(), relisting: None, listed: false }
    }

    /// Returns whether what applies changed.
    fn apply(&mut self, namespace: &str, name: &str, value: V) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(list) = &mut self.relisting {
            list.insert(key, value);
            return false;
        }
        if self.current.get(&key) == Some(&value) {
            return false;
        }
        self.current.insert(key, value);
        true
    }

    fn delete(&mut self, namespace: &str, name: &str) -> bool {
        self.current.remove(&(namespace.to_owned(), name.to_owned())).is_some()
    }

    fn relist(&mut self) {
        self.relisting = Some(BTreeMap::new());
    }

    fn listed(&mut self) {
        if let Some(list) = self.relisting.take() {
            self.current = list;
        }
        self.listed = true;
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&V> {
        self.current.get(&(namespace.to_owned(), name.to_owned()))
    }
}

/// What the node agent knows of the cluster's servers and redaction policies.
pub struct Policies {
    default_namespace: String,
    /// Each McpServer's `redactionPolicyRef` name.
    servers: Tracked<Option<String>>,
    /// Each McpRedactionPolicy's spec.
    policies: Tracked<McpRedactionPolicySpec>,
    /// Compiled redactors by effective policy (its JSON).
    compiled: HashMap<String, Arc<Redactor>>,
    /// The redactor of each server, forgotten on any change.
    by_server: HashMap<Key, Arc<Redactor>>,
}

impl Policies {
    /// Nothing known yet; the cluster default lives in `default_namespace`.
    pub fn new(default_namespace: impl Into<String>) -> Self {
        Self {
            default_namespace: default_namespace.into(),
            servers: Tracked::new(),
            policies: Tracked::new(),
            compiled: HashMap::new(),
            by_server: HashMap::new(),
        }
    }

    /// Whether both first lists are in.
    pub fn synced(&self) -> bool {
        self.servers.listed && self.policies.listed
    }

    fn changed(&mut self, changed: bool) {
        if changed {
            self.by_server.clear();
        }
    }

    /// An McpServer was added or changed.
    pub fn apply_server(&mut self, namespace: &str, name: &str, policy_ref: Option<String>) {
        let c = self.servers.apply(namespace, name, policy_ref);
        self.changed(c);
    }

    /// An McpServer was deleted.
    pub fn delete_server(&mut self, namespace: &str, name: &str) {
        let c = self.servers.delete(namespace, name);
        self.changed(c);
    }

    /// A list of the McpServers starts; [`Self::servers_listed`] ends it.
    pub fn relist_servers(&mut self) {
        self.servers.relist();
    }

    /// The list of the McpServers is complete.
    pub fn servers_listed(&mut self) {
        self.servers.listed();
        self.changed(true);
    }

    /// An McpRedactionPolicy was added or changed.
    pub fn apply_policy(&mut self, namespace: &str, name: &str, spec: McpRedactionPolicySpec) {
        let c = self.policies.apply(namespace, name, spec);
        self.changed(c);
    }

    /// An McpRedactionPolicy was deleted.
    pub fn delete_policy(&mut self, namespace: &str, name: &str) {
        let c = self.policies.delete(namespace, name);
        self.changed(c);
    }

    /// A list of the policies starts; [`Self::policies_listed`] ends it.
    pub fn relist_policies(&mut self) {
        self.policies.relist();
    }

    /// The list of the policies is complete.
    pub fn policies_listed(&mut self) {
        self.policies.listed();
        self.changed(true);
    }

    /// The policy the logs of McpServer `namespace/server` are redacted with, and what
    /// was wrong on the way (a missing or uncompilable policy), if anything.
    pub fn effective(&mut self, namespace: &str, server: &str) -> (McpRedactionPolicySpec, Option<String>) {
        let (spec, _, problem) = self.resolve(namespace, server);
        (spec, problem)
    }

    /// The compiled redactor of `spec`, compiled once per distinct policy.
    fn compile(&mut self, spec: &McpRedactionPolicySpec) -> Result<Arc<Redactor>, String> {
        let text = serde_json::to_string(spec).unwrap_or_default();
        if let Some(r) = self.compiled.get(&text) {
            return Ok(r.clone());
        }
        let redactor = Arc::new(Redactor::compile(spec, None).map_err(|e| e.0.join("; "))?);
        if self.compiled.len() >= MAX_COMPILED {
            self.compiled.clear();
        }
        self.compiled.insert(text, redactor.clone());
        Ok(redactor)
    }

    /// [`Self::effective`] with its compiled redactor.
    fn resolve(&mut self, namespace: &str, server: &str) -> (McpRedactionPolicySpec, Arc<Redactor>, Option<String>) {
        let mut base = self
            .policies
            .get(&self.default_namespace, CLUSTER_DEFAULT_POLICY)
            .cloned()
            .map(hash_to_mask)
            .unwrap_or_default();
        let mut problem = None;
        let base_redactor = match self.compile(&base) {
            Ok(r) => r,
            Err(e) => {
                problem = Some(format!(
                    "the cluster default McpRedactionPolicy {}/{CLUSTER_DEFAULT_POLICY} does not compile ({e}); the \
                     built-in defaults apply",
                    self.default_namespace,
                ));
                base = McpRedactionPolicySpec::default();
                self.compile(&base).expect("the built-in defaults compile")
            }
        };
        let Some(reference) = self.servers.get(namespace, server).cloned().flatten() else {
            return (base, base_redactor, problem);
        };
        let Some(own) = self.policies.get(namespace, &reference) else {
            let missing = format!(
                "McpServer {namespace}/{server} names McpRedactionPolicy {reference}, which does not exist; its \
                 container logs are redacted with the cluster default"
            );
            return (base, base_redactor, Some(missing));
        };
        let merged = hash_to_mask(merge_policies(&base, own));
        match self.compile(&merged) {
            Ok(r) => (merged, r, problem),
            Err(e) => (
                base,
                base_redactor,
                Some(format!(
                    "McpRedactionPolicy {namespace}/{reference} does not compile together with the cluster default \
                     ({e}); the container logs of {server} are redacted with the cluster default"
                )),
            ),
        }
    }

    /// The redactor for the logs of McpServer `namespace/server` (`server` empty or unknown:
    /// the cluster default).
    pub fn redactor(&mut self, namespace: &str, server: &str) -> Arc<Redactor> {
        let key = (namespace.to_owned(), server.to_owned());
        if let Some(r) = self.by_server.get(&key) {
            return r.clone();
        }
        let (_, redactor, problem) = self.resolve(namespace, server);
        if let Some(problem) = problem {
            tracing::warn!(namespace, server, "{problem}");
        }
        self.by_server.insert(key, redactor.clone());
        redactor
    }
}

#[cfg(test)]
mod tests;

/// Keeps [`Policies`] current from watches of every McpServer and McpRedactionPolicy.
/// Objects are read as dynamic objects, field by field: a field this agent does not know
/// (a newer operator's CRD) does not stop the watch, and an object that does not read is
/// skipped with a warning instead of failing the whole list.
pub mod watch {
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;
    use kube::api::{ApiResource, DynamicObject};
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    use kube::{Api, Client, ResourceExt};
    use mcp_ledger_crds::redaction::McpRedactionPolicySpec;
    use mcp_ledger_crds::{McpRedactionPolicy, McpServer};

    use super::Policies;

    fn explain(e: &watcher::Error, what: &str) {
        let text = e.to_string();
        if text.contains("403") || text.to_ascii_lowercase().contains("forbidden") {
            tracing::error!(error = %e, "cannot list/watch {what}: grant the node agent's ServiceAccount list and watch \
                on {what} (mcpledger.dev); container logs are not tailed until then");
        } else {
            tracing::warn!(error = %e, "{what} watch failed; retrying");
        }
    }

    fn server(p: &mut Policies, o: &DynamicObject) {
        let policy = o.data.pointer("/spec/redactionPolicyRef/name").and_then(|v| v.as_str()).map(str::to_owned);
        p.apply_server(&o.namespace().unwrap_or_default(), &o.name_any(), policy);
    }

    fn policy(p: &mut Policies, o: &DynamicObject) {
        let (namespace, name) = (o.namespace().unwrap_or_default(), o.name_any());
        let spec = o.data.get("spec").cloned().unwrap_or_default();
        match serde_json::from_value::<McpRedactionPolicySpec>(spec) {
            Ok(spec) => p.apply_policy(&namespace, &name, spec),
            Err(e) => {
                tracing::warn!(namespace, name, error = %e, "McpRedactionPolicy does not read; servers naming it \
                    get the cluster default for their container logs");
                p.delete_policy(&namespace, &name);
            }
        }
    }

    /// The events of one kind, applied to `policies`.
    fn on_event(p: &mut Policies, servers: bool, event: Result<Event<DynamicObject>, watcher::Error>) {
        let key = |o: &DynamicObject| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            Ok(Event::Apply(o) | Event::InitApply(o)) if servers => server(p, &o),
            Ok(Event::Apply(o) | Event::InitApply(o)) => policy(p, &o),
            Ok(Event::Delete(o)) if servers => p.delete_server(&key(&o).0, &key(&o).1),
            Ok(Event::Delete(o)) => p.delete_policy(&key(&o).0, &key(&o).1),
            Ok(Event::Init) if servers => p.relist_servers(),
            Ok(Event::Init) => p.relist_policies(),
            Ok(Event::InitDone) if servers => p.servers_listed(),
            Ok(Event::InitDone) => p.policies_listed(),
            Err(e) => explain(&e, if servers { "mcpservers" } else { "mcpredactionpolicies" }),
        }
    }

    async fn watch(client: Client, resource: ApiResource, servers: bool, policies: Arc<Mutex<Policies>>) {
        let api = Api::<DynamicObject>::all_with(client, &resource);
        let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            on_event(&mut policies.lock().expect("policies lock"), servers, event);
        }
    }

    /// Watches until the process ends; retries with backoff when the API server is away.
    pub async fn run(client: Client, policies: Arc<Mutex<Policies>>) {
        tokio::join!(
            watch(client.clone(), ApiResource::erase::<McpServer>(&()), true, policies.clone()),
            watch(client, ApiResource::erase::<McpRedactionPolicy>(&()), false, policies),
        );
    }
}
