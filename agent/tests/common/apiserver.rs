//! A stand-in for the Kubernetes API server. It is hand-written because no kube-apiserver
//! can run on the test machines (no etcd, no container engine); `make e2e` covers the real
//! one. It serves only what the node agent's watches ask for — list and watch of pods,
//! honouring the `spec.nodeName` field selector, of namespaces as `PartialObjectMetadata`,
//! and of McpServers and McpRedactionPolicies — from objects the test sets, and pushes
//! later changes to the open watches as ADDED/MODIFIED/DELETED events, as the API server
//! does.
//!
//! Shared by the node enrichment test and the node bench (`#[path]`), so it depends on
//! nothing else in `common`.

#![allow(dead_code)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Pods,
    Namespaces,
    McpServers,
    McpRedactionPolicies,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Pods, Kind::Namespaces, Kind::McpServers, Kind::McpRedactionPolicies];

    fn path(self) -> &'static str {
        match self {
            Kind::Pods => "/api/v1/pods",
            Kind::Namespaces => "/api/v1/namespaces",
            Kind::McpServers => "/apis/mcpledger.dev/v1alpha1/mcpservers",
            Kind::McpRedactionPolicies => "/apis/mcpledger.dev/v1alpha1/mcpredactionpolicies",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct Watch {
    kind: Kind,
    node: Option<String>,
    events: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    /// Objects by kind ([`Kind::index`]).
    objects: [Vec<Value>; 4],
    watches: Vec<Watch>,
    requests: Vec<String>,
}

/// The API double; serves until the runtime that started it ends.
#[derive(Clone)]
pub struct ApiServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str)
}

/// The node a `fieldSelector=spec.nodeName=<node>` asks for.
fn node_selector(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("fieldSelector=")?;
        let decoded = value.replace("%3D", "=").replace("%3d", "=").replace("%2C", ",");
        decoded.strip_prefix("spec.nodeName=").map(str::to_owned)
    })
}

fn namespace_meta(ns: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": ns["metadata"].clone()})
}

impl State {
    fn bump(&mut self, object: &mut Value) {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
    }

    fn send(&mut self, kind: Kind, event: &str, object: &Value) {
        let node = node_of(object).map(str::to_owned);
        let shown = if kind == Kind::Namespaces { namespace_meta(object) } else { object.clone() };
        let mut line = serde_json::to_vec(&json!({"type": event, "object": shown})).unwrap();
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watches.retain(|w| {
            if w.kind != kind || (w.node.is_some() && w.node != node) {
                return !w.events.is_closed();
            }
            w.events.send(line.clone()).is_ok()
        });
    }
}

fn json_response(status: u16, body: &Value) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())).boxed_unsync())
        .unwrap()
}

impl ApiServer {
    /// Binds 127.0.0.1 on a free port and serves on the current Tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Self { port, state: Arc::new(Mutex::new(State { resource_version: 1, ..State::default() })) };
        let served = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let served = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let served = served.clone();
                        async move { Ok::<_, Infallible>(served.handle(req)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    fn handle(&self, req: Request<Incoming>) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let mut state = self.state.lock().unwrap();
        state.requests.push(format!("{} {path}?{query}", req.method()));
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.path() == path) else {
            return json_response(
                404,
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": format!("the API double serves no {path}")}),
            );
        };
        let node = if kind == Kind::Pods { node_selector(&query) } else { None };
        if query.split('&').any(|p| p == "watch=true") {
            // Events after the list's resource version arrive as they happen; this double
            // never expires a watch (410 Gone) — the tests do not need it.
            let (tx, rx) = mpsc::unbounded_channel();
            state.watches.push(Watch { kind, node, events: tx });
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            return Response::builder()
                .header("content-type", "application/json")
                .body(StreamBody::new(stream.boxed()).boxed_unsync())
                .unwrap();
        }
        let rv = state.resource_version.to_string();
        let objects = &state.objects[kind.index()];
        let body = match kind {
            Kind::Pods => {
                let items: Vec<Value> =
                    objects.iter().filter(|p| node.as_deref().is_none_or(|n| node_of(p) == Some(n))).cloned().collect();
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items})
            }
            Kind::Namespaces => {
                let items: Vec<Value> = objects.iter().map(namespace_meta).collect();
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                       "metadata": {"resourceVersion": rv}, "items": items})
            }
            Kind::McpServers | Kind::McpRedactionPolicies => {
                let list = if kind == Kind::McpServers { "McpServerList" } else { "McpRedactionPolicyList" };
                json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": list, "metadata": {"resourceVersion": rv},
                       "items": objects})
            }
        };
        json_response(200, &body)
    }

    /// Adds or replaces a pod (by namespace and name); open watches see ADDED or MODIFIED.
    pub fn apply_pod(&self, pod: Value) {
        self.apply(Kind::Pods, pod);
    }

    /// Adds or replaces an object of `kind` (by namespace and name) and tells the watches.
    fn apply(&self, kind: Kind, mut object: Value) {
        let mut state = self.state.lock().unwrap();
        state.bump(&mut object);
        let key = |o: &Value| (o["metadata"]["namespace"].clone(), o["metadata"]["name"].clone());
        let objects = &mut state.objects[kind.index()];
        let event = match objects.iter().position(|o| key(o) == key(&object)) {
            Some(i) => {
                objects[i] = object.clone();
                "MODIFIED"
            }
            None => {
                objects.push(object.clone());
                "ADDED"
            }
        };
        state.send(kind, event, &object);
    }

    /// Removes a pod; open watches see DELETED.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.delete(Kind::Pods, namespace, name);
    }

    fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        let objects = &mut state.objects[kind.index()];
        let Some(i) =
            objects.iter().position(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
        else {
            return;
        };
        let mut object = objects.remove(i);
        state.bump(&mut object);
        state.send(kind, "DELETED", &object);
    }

    /// Adds or replaces an McpServer named `name` whose `redactionPolicyRef` is `policy`.
    pub fn apply_mcp_server(&self, namespace: &str, name: &str, policy: Option<&str>) {
        let mut spec = json!({"selector": {"matchLabels": {"app": name}}, "port": "mcp"});
        if let Some(p) = policy {
            spec["redactionPolicyRef"] = json!({"name": p});
        }
        let server = json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServer",
            "metadata": {"namespace": namespace, "name": name, "uid": format!("srv-{namespace}-{name}")}, "spec": spec});
        self.apply(Kind::McpServers, server);
    }

    /// Adds or replaces an McpRedactionPolicy with `spec`.
    pub fn apply_redaction_policy(&self, namespace: &str, name: &str, spec: Value) {
        let policy = json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpRedactionPolicy",
            "metadata": {"namespace": namespace, "name": name, "uid": format!("pol-{namespace}-{name}")}, "spec": spec});
        self.apply(Kind::McpRedactionPolicies, policy);
    }

    /// Removes an McpRedactionPolicy; open watches see DELETED.
    pub fn delete_redaction_policy(&self, namespace: &str, name: &str) {
        self.delete(Kind::McpRedactionPolicies, namespace, name);
    }

    /// Adds or relabels a namespace; open watches see ADDED or MODIFIED.
    pub fn apply_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": format!("ns-{name}"), "labels": labels}});
        self.apply(Kind::Namespaces, ns);
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many watches of `pods` (or namespaces) are open.
    pub fn open_watches(&self, pods: bool) -> usize {
        self.open(if pods { Kind::Pods } else { Kind::Namespaces })
    }

    /// How many watches of McpServers and McpRedactionPolicies are open.
    pub fn open_policy_watches(&self) -> usize {
        self.open(Kind::McpServers) + self.open(Kind::McpRedactionPolicies)
    }

    fn open(&self, kind: Kind) -> usize {
        self.state.lock().unwrap().watches.iter().filter(|w| w.kind == kind && !w.events.is_closed()).count()
    }

    /// A kubeconfig pointing at this double (plain HTTP, an obviously fake token).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: http://127.0.0.1:{}\n\
             users:\n- name: tester\n  user:\n    token: not-a-real-token\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: tester\n\
             current-context: double\n",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A pod as the API server returns it: on `node`, owned by the ReplicaSet of Deployment
/// `deployment`, injected for McpServer `server` (annotation), with `labels`.
pub fn pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    deployment: &str,
    server: Option<&str>,
    labels: &[(&str, &str)],
) -> Value {
    let hash = "7f9c4d";
    let mut all: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    all.insert("pod-template-hash".into(), json!(hash));
    let annotations = match server {
        Some(s) => json!({"mcpledger.dev/server": s}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "labels": all,
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-{hash}"),
                                 "uid": format!("rs-{uid}"), "controller": true}]
        },
        "spec": {"nodeName": node, "containers": [{"name": "server", "image": "example.invalid/mcp-server:1"}]},
        "status": {"phase": "Running"}
    })
}
