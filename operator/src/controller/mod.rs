//! The controllers: McpServer → inventory status, agent ConfigMap and removal history;
//! McpServerReview → review outcome. Reconcilers fetch, call the pure functions of
//! [`crate::inventory`] and [`crate::render`], and write with server-side apply under one
//! field manager.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use mcp_ledger_crds::redaction::CLUSTER_DEFAULT_POLICY;
use mcp_ledger_crds::server::{ApprovalState, condition};
use mcp_ledger_crds::{McpAccessPolicy, McpRedactionPolicy, McpServer, McpServerReview};
use serde_json::json;

use crate::error::{Error, Result};
use crate::inventory::{self, RemovalRecord};
use crate::metrics::Metrics;
use crate::names;
use crate::render::{self, RenderSettings};

/// How the controllers behave. Comes from the operator's flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The operator's namespace: the cluster default policy and the history live here.
    pub namespace: String,
    /// Where rendered agents send records.
    pub render: RenderSettings,
    /// Most removal records kept in the history.
    pub history_limit: usize,
    /// How often every object is reconciled even without a change.
    pub resync: Duration,
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Settings,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for the controllers.
    pub fn new(client: Client, recorder: Recorder, metrics: Metrics, settings: Settings) -> Arc<Self> {
        Arc::new(Self { client, recorder, metrics, settings, failures: Mutex::default() })
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().expect("lock").remove(key);
    }

    /// The delay before retrying `key` after another failure: 5 s doubling up to 5 min.
    fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("lock");
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        retry_delay(*n)
    }

    /// Publishes an Event about `object`; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            note: Some(truncate(note, 1024)),
            action: action.to_owned(),
            secondary: None,
        };
        match self.recorder.publish(&ev, &object.object_ref(&())).await {
            Ok(()) => {}
            // The namespace is going, and its Events with it.
            Err(kube::Error::Api(s)) if namespace_terminating(&s) => {
                tracing::debug!(reason, "namespace being deleted: Event not published");
            }
            Err(e) => tracing::warn!(error = %e, reason, "could not publish an Event"),
        }
    }
}

/// 5 s, 10 s, 20 s … capped at 5 minutes.
pub fn retry_delay(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(300))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Reconciles one McpServer: status, agent ConfigMap, and on deletion the history.
pub async fn reconcile_server(server: Arc<McpServer>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.with_label_values(&["mcpserver"]).inc();
    let ns = server.namespace().ok_or_else(|| Error::MissingNamespace(server.name_any()))?;
    let api: Api<McpServer> = Api::namespaced(ctx.client.clone(), &ns);
    let key = key_of(server.as_ref());
    let action = finalizer(&api, names::FINALIZER, server, |event| async {
        match event {
            finalizer::Event::Apply(s) => apply_server(&s, &ctx).await,
            finalizer::Event::Cleanup(s) => cleanup_server(&s, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&key);
    Ok(action)
}

async fn apply_server(server: &McpServer, ctx: &Context) -> Result<Action> {
    let ns = server.namespace().ok_or_else(|| Error::MissingNamespace(server.name_any()))?;
    let name = server.name_any();
    let pods = match Selector::try_from(server.spec.selector.clone()) {
        Ok(selector) if !selector.selects_all() => {
            Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .list(&ListParams::default().labels(&selector.to_string()))
                .await?
                .items
        }
        _ => Vec::new(),
    };
    let reviews = Api::<McpServerReview>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default()).await?.items;
    let status = inventory::compute_status(server, &pods, &reviews, Timestamp::now());
    let old = server.status.clone().unwrap_or_default();
    if server.status.as_ref() != Some(&status) {
        // The resourceVersion makes the write conditional: a usage report merged since this
        // object was read is never overwritten with the older usage fields.
        let patch = json!({
            "apiVersion": McpServer::api_version(&()), "kind": McpServer::kind(&()),
            "metadata": {"resourceVersion": server.metadata.resource_version},
            "status": status,
        });
        let written = Api::<McpServer>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::apply(names::FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await;
        match written {
            Ok(_) => tracing::info!(server = %format!("{ns}/{name}"), "inventory status updated"),
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::from_secs(1))),
            Err(e) => return Err(e.into()),
        }
    }
    let new_state = status.approval.as_ref().map(|a| a.state).unwrap_or_default();
    let old_state = old.approval.as_ref().map(|a| a.state);
    if old_state.is_some_and(|s| s != new_state) || old_state.is_none() && new_state != ApprovalState::Pending {
        let message = condition_message(&status, condition::APPROVED);
        ctx.event(server, new_state == ApprovalState::Rejected, new_state.as_str(), "Review", message).await;
    }
    let changed = |s: &mcp_ledger_crds::McpServerStatus| {
        s.conditions.iter().any(|c| c.type_ == condition::TOOLS_CHANGED && c.status == "True")
    };
    if changed(&status) && !changed(&old) {
        let message = condition_message(&status, condition::TOOLS_CHANGED);
        ctx.event(server, true, "ToolsChanged", "CompareTools", message).await;
    }
    let version_refused = |s: &mcp_ledger_crds::McpServerStatus| {
        s.conditions.iter().any(|c| c.type_ == condition::VERSION_ALLOWED && c.status == "False")
    };
    if version_refused(&status) && !version_refused(&old) {
        let message = condition_message(&status, condition::VERSION_ALLOWED);
        ctx.event(server, true, "VersionNotAllowed", "CheckVersion", message).await;
    }
    render_namespace(&ns, ctx).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

fn condition_message(status: &mcp_ledger_crds::McpServerStatus, type_: &str) -> String {
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.message.clone()).unwrap_or_default()
}

async fn cleanup_server(server: &McpServer, ctx: &Context) -> Result<Action> {
    let ns = server.namespace().ok_or_else(|| Error::MissingNamespace(server.name_any()))?;
    let record = RemovalRecord::of(server, Timestamp::now());
    let note = format!("removed by {}; recorded in the inventory history", record.removed_by);
    record_removal(ctx, record).await?;
    ctx.event(server, false, "Removed", "RecordRemoval", note).await;
    render_namespace(&ns, ctx).await?;
    Ok(Action::await_change())
}

/// Appends a removal record to the history ConfigMap, retrying on write conflicts.
pub async fn record_removal(ctx: &Context, record: RemovalRecord) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = api.get_opt(names::HISTORY_CONFIG_MAP).await?;
        let text = existing.as_ref().and_then(|cm| cm.data.as_ref()?.get(names::HISTORY_KEY).cloned());
        let (history, parsed) = inventory::append_history(text.as_deref(), record.clone(), ctx.settings.history_limit);
        if !parsed {
            tracing::error!(
                configmap = names::HISTORY_CONFIG_MAP,
                "the inventory history did not parse; starting it anew"
            );
        }
        let result = match existing {
            Some(mut cm) => {
                cm.data.get_or_insert_with(Default::default).insert(names::HISTORY_KEY.to_owned(), history);
                api.replace(names::HISTORY_CONFIG_MAP, &PostParams::default(), &cm).await.map(|_| ())
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(names::HISTORY_CONFIG_MAP.to_owned()),
                        namespace: Some(ctx.settings.namespace.clone()),
                        labels: Some(
                            [(names::MANAGED_BY_LABEL.0.to_owned(), names::MANAGED_BY_LABEL.1.to_owned())].into(),
                        ),
                        ..Default::default()
                    },
                    data: Some([(names::HISTORY_KEY.to_owned(), history)].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Renders and applies the agent ConfigMap of a namespace; deletes it when no server is left.
pub async fn render_namespace(ns: &str, ctx: &Context) -> Result<()> {
    let servers = Api::<McpServer>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?.items;
    let policies =
        Api::<McpRedactionPolicy>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?.items;
    let default = Api::<McpRedactionPolicy>::namespaced(ctx.client.clone(), &ctx.settings.namespace)
        .get_opt(CLUSTER_DEFAULT_POLICY)
        .await?
        .map(|p| p.spec);
    let access = Api::<McpAccessPolicy>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?.items;
    let rendered = render::render_namespace(&servers, &policies, default.as_ref(), &ctx.settings.render, &access);
    for (server, message) in &rendered.problems {
        if let Some(s) = servers.iter().find(|s| &s.name_any() == server) {
            ctx.event(s, true, "AgentConfigProblem", "RenderConfig", message.clone()).await;
        }
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let live: Vec<&McpServer> = servers.iter().filter(|s| s.metadata.deletion_timestamp.is_none()).collect();
    if live.is_empty() {
        match api.delete(names::AGENT_CONFIG_MAP, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }
    let owners: Vec<OwnerReference> = live
        .iter()
        .filter_map(|s| {
            Some(OwnerReference {
                api_version: McpServer::api_version(&()).into_owned(),
                kind: McpServer::kind(&()).into_owned(),
                name: s.name_any(),
                uid: s.uid()?,
                ..Default::default()
            })
        })
        .collect();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(names::AGENT_CONFIG_MAP.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some([(names::MANAGED_BY_LABEL.0.to_owned(), names::MANAGED_BY_LABEL.1.to_owned())].into()),
            owner_references: Some(owners),
            ..Default::default()
        },
        data: Some(rendered.data),
        ..Default::default()
    };
    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": cm.metadata, "data": cm.data});
    match api
        .patch(names::AGENT_CONFIG_MAP, &PatchParams::apply(names::FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Nothing can be created in a namespace being deleted, and its ConfigMap goes with
        // it: not an error, or the finalizer of a server removed with its namespace would
        // hold the namespace in Terminating for good.
        Err(kube::Error::Api(s)) if namespace_terminating(&s) => {
            tracing::debug!(namespace = ns, "namespace being deleted: agent ConfigMap not rendered");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the API server refused a write because the namespace is being deleted (the
/// NamespaceLifecycle admission plugin's 403 with cause `NamespaceTerminating`).
fn namespace_terminating(status: &kube::core::Status) -> bool {
    status.code == 403
        && status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

/// Reconciles one McpServerReview: whether its decision is applied.
pub async fn reconcile_review(review: Arc<McpServerReview>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.with_label_values(&["mcpserverreview"]).inc();
    let ns = review.namespace().ok_or_else(|| Error::MissingNamespace(review.name_any()))?;
    let server = Api::<McpServer>::namespaced(ctx.client.clone(), &ns).get_opt(&review.spec.server_ref.name).await?;
    let exists = server.as_ref().is_some_and(|s| s.metadata.deletion_timestamp.is_none());
    let api: Api<McpServerReview> = Api::namespaced(ctx.client.clone(), &ns);
    let reviews = api.list(&ListParams::default()).await?.items;
    let status = inventory::review_status(&review, exists, &reviews, Timestamp::now());
    if review.status.as_ref() != Some(&status) {
        let patch = json!({"apiVersion": McpServerReview::api_version(&()), "kind": McpServerReview::kind(&()), "status": status});
        api.patch_status(&review.name_any(), &PatchParams::apply(names::FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await?;
        if let (Some(phase), false) = (status.phase, exists) {
            let message = status.conditions.first().map(|c| c.message.clone()).unwrap_or_default();
            ctx.event(review.as_ref(), true, &format!("{phase:?}"), "ApplyReview", message).await;
        }
    }
    ctx.succeeded(&key_of(review.as_ref()));
    Ok(Action::requeue(ctx.settings.resync))
}

fn error_policy<K: Resource>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |obj, error, ctx| {
        ctx.metrics.reconcile_errors.with_label_values(&[controller, error.metric_label()]).inc();
        let key = key_of(obj.as_ref());
        let delay = ctx.backoff(&key);
        tracing::warn!(controller, object = %key, error = %error, retry_in_s = delay.as_secs(), "reconcile failed");
        Action::requeue(delay)
    }
}

fn servers_in(store: &Store<McpServer>, ns: &str) -> Vec<ObjectRef<McpServer>> {
    store
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs both controllers until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let servers = Controller::new(Api::<McpServer>::all(client.clone()), watcher::Config::default());
    let store = servers.store();
    let pod_store = store.clone();
    let policy_store = store.clone();
    let access_store = store.clone();
    let operator_ns = ctx.settings.namespace.clone();
    let managed = format!("{}={}", names::MANAGED_BY_LABEL.0, names::MANAGED_BY_LABEL.1);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let servers = servers
        .owns(Api::<ConfigMap>::all(client.clone()), watcher::Config::default().labels(&managed))
        .watches(Api::<Pod>::all(client.clone()), watcher::Config::default(), move |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            let labels = pod.labels().clone();
            pod_store
                .state()
                .into_iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()) && crate::inject::selects(s, &labels))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(Api::<McpServerReview>::all(client.clone()), watcher::Config::default(), |review: McpServerReview| {
            review.namespace().map(|ns| ObjectRef::new(&review.spec.server_ref.name).within(&ns))
        })
        .watches(
            Api::<McpRedactionPolicy>::all(client.clone()),
            watcher::Config::default(),
            move |p: McpRedactionPolicy| {
                let ns = p.namespace().unwrap_or_default();
                if ns == operator_ns && p.name_any() == CLUSTER_DEFAULT_POLICY {
                    policy_store.state().iter().map(|s| ObjectRef::from_obj(s.as_ref())).collect()
                } else {
                    servers_in(&policy_store, &ns)
                }
            },
        )
        .watches(Api::<McpAccessPolicy>::all(client.clone()), watcher::Config::default(), move |p: McpAccessPolicy| {
            servers_in(&access_store, &p.namespace().unwrap_or_default())
        })
        .graceful_shutdown_on(stop(shutdown_rx.clone()))
        .run(reconcile_server, error_policy::<McpServer>("mcpserver"), ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "mcpserver controller event");
            }
        });

    let reviews = Controller::new(Api::<McpServerReview>::all(client.clone()), watcher::Config::default());
    let review_store = reviews.store();
    let sibling_store = review_store.clone();
    let reviews = reviews
        .watches(Api::<McpServer>::all(client.clone()), watcher::Config::default(), move |server: McpServer| {
            let ns = server.namespace().unwrap_or_default();
            let name = server.name_any();
            review_store
                .state()
                .iter()
                .filter(|r| r.namespace().as_deref() == Some(ns.as_str()) && r.spec.server_ref.name == name)
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        })
        // A new review supersedes the older reviews of the same server.
        .watches(Api::<McpServerReview>::all(client), watcher::Config::default(), move |review: McpServerReview| {
            let ns = review.namespace().unwrap_or_default();
            sibling_store
                .state()
                .iter()
                .filter(|r| {
                    r.namespace().as_deref() == Some(ns.as_str()) && r.spec.server_ref == review.spec.server_ref
                })
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stop(shutdown_rx))
        .run(reconcile_review, error_policy::<McpServerReview>("mcpserverreview"), ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "mcpserverreview controller event");
            }
        });
    tokio::join!(servers, reviews);
}

/// Carries out an admission side effect with the operator's client.
pub async fn carry_out(client: Client, ctx_events: Recorder, effect: crate::admission::Effect) {
    use crate::admission::Effect;
    match effect {
        Effect::RecordRemoval { namespace, server, user } => {
            let api: Api<McpServer> = Api::namespaced(client, &namespace);
            let patch = json!({"metadata": {"annotations": {names::REMOVED_BY: user}}});
            if let Err(e) = api.patch(&server, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::warn!(server = %format!("{namespace}/{server}"), error = %e, "could not record who removed the McpServer");
            }
        }
        Effect::Event { namespace, server, warning, reason, message } => {
            let api: Api<McpServer> = Api::namespaced(client, &namespace);
            let Ok(Some(object)) = api.get_opt(&server).await else { return };
            let ev = Event {
                type_: if warning { EventType::Warning } else { EventType::Normal },
                reason: reason.to_owned(),
                note: Some(truncate(message, 1024)),
                action: "Inject".to_owned(),
                secondary: None,
            };
            let reference: ObjectReference = object.object_ref(&());
            if let Err(e) = ctx_events.publish(&ev, &reference).await {
                tracing::warn!(error = %e, "could not publish an Event");
            }
        }
    }
}

#[cfg(test)]
mod tests;
