//! Sidecar injection: the pure decision of whether and how a new pod gets the agent.
//!
//! No iptables and no extra capabilities: the agent takes over the container port that
//! `McpServer.spec.port` names. The app's port is renamed to [`APP_PORT_NAME`], the agent
//! gets the original name on its own port and forwards to the app on localhost, so a
//! Service that targets the port by name reaches the agent without any change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, Pod, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use mcp_ledger_crds::McpServer;
use mcp_ledger_crds::common::SecretKeyRef;
use mcp_ledger_crds::server::ApprovalState;

use crate::names;

/// Name the app's MCP port gets once the agent has taken over its original name.
pub const APP_PORT_NAME: &str = "mcpl-app";
/// Name of the agent's proxy port when the app's port had no name to take over.
pub const PROXY_PORT_NAME: &str = "mcpl-proxy";
/// Name of the agent's admin port (/metrics, /healthz, /readyz).
pub const ADMIN_PORT_NAME: &str = "mcpl-admin";
/// Where the agent configuration is mounted in the agent container.
pub const CONFIG_DIR: &str = "/etc/mcp-ledger";
/// Name of the volume that carries the agent configuration.
pub const CONFIG_VOLUME: &str = "mcp-ledger-agent-config";
/// Where the HMAC key for `hash` redactions is mounted in the agent container.
pub const HASH_KEY_FILE: &str = "/var/run/mcp-ledger/hash-key/key";
/// Name of the volume that carries the HMAC key Secret.
pub const HASH_KEY_VOLUME: &str = "mcp-ledger-hash-key";
/// User and group the agent runs as (the conventional "nonroot" id of distroless images).
pub const AGENT_UID: i64 = 65532;

/// What to do with a new pod of a server that a review rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RejectedPods {
    /// Inject the agent and mark the pod with `mcpledger.dev/approval: Rejected`.
    #[default]
    Inject,
    /// Refuse the pod with a message naming the review.
    Refuse,
}

/// How the agent is injected. Comes from the operator's flags (and so from the chart).
#[derive(Clone, Debug, PartialEq)]
pub struct InjectSettings {
    /// Agent image reference.
    pub image: String,
    /// `imagePullPolicy` of the agent container, when set.
    pub image_pull_policy: Option<String>,
    /// Inject as a native sidecar (an init container with `restartPolicy: Always`,
    /// Kubernetes 1.29+); otherwise as a plain container.
    pub native_sidecar: bool,
    /// Port the agent's proxy listens on in the pod.
    pub proxy_port: i32,
    /// Port of the agent's admin listener.
    pub admin_port: i32,
    /// What happens to pods of rejected servers.
    pub rejected: RejectedPods,
    /// Resources of the agent container.
    pub resources: ResourceRequirements,
}

impl Default for InjectSettings {
    fn default() -> Self {
        let quantities = |cpu: Option<&str>, memory: &str| {
            let mut map = BTreeMap::new();
            if let Some(cpu) = cpu {
                map.insert("cpu".to_owned(), Quantity(cpu.to_owned()));
            }
            map.insert("memory".to_owned(), Quantity(memory.to_owned()));
            Some(map)
        };
        Self {
            image: "mcp-ledger/agent:latest".to_owned(),
            image_pull_policy: None,
            native_sidecar: true,
            proxy_port: 15080,
            admin_port: 15090,
            rejected: RejectedPods::Inject,
            resources: ResourceRequirements {
                requests: quantities(Some("20m"), "32Mi"),
                limits: quantities(None, "128Mi"),
                ..Default::default()
            },
        }
    }
}

/// Why a pod is left as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No McpServer of the namespace selects the pod.
    NoServer,
    /// The pod carries `mcpledger.dev/inject: "false"`.
    OptedOut,
    /// The pod already carries the agent.
    AlreadyInjected,
}

impl Skip {
    /// Bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoServer => "no_server",
            Self::OptedOut => "opted_out",
            Self::AlreadyInjected => "already_injected",
        }
    }
}

/// The decision about one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Admit the pod unchanged.
    Skip(Skip),
    /// Admit this pod instead: the original plus the agent.
    Inject {
        /// The pod with the agent.
        pod: Box<Pod>,
        /// The McpServer the pod serves.
        server: String,
        /// Things the user should know (returned as admission warnings and Events).
        warnings: Vec<String>,
    },
    /// Admit the pod unchanged although it serves an McpServer: the agent cannot be added.
    /// The message says why and what to fix; it becomes an Event on the McpServer.
    NotInjected {
        /// The McpServer the pod serves (empty when the pod matches several).
        server: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Refuse the pod with this message.
    Refuse(String),
}

/// A name for the pod in messages: its name, or its generateName prefix at creation.
pub fn pod_display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, Some(prefix)) => format!("{prefix}<generated>"),
        _ => "<unnamed>".to_owned(),
    }
}

/// The McpServers of `servers` whose selector selects `pod` (servers being deleted excluded).
pub fn matching_servers<'a>(pod: &Pod, servers: &'a [McpServer]) -> Vec<&'a McpServer> {
    let labels = pod.labels();
    let mut out: Vec<&McpServer> =
        servers.iter().filter(|s| s.metadata.deletion_timestamp.is_none()).filter(|s| selects(s, labels)).collect();
    out.sort_by_key(|s| s.name_any());
    out
}

/// Whether the server's selector selects these labels. A selector that selects everything
/// (refused by the CRD schema) or cannot be parsed selects nothing.
pub fn selects(server: &McpServer, labels: &BTreeMap<String, String>) -> bool {
    match Selector::try_from(server.spec.selector.clone()) {
        Ok(selector) => !selector.selects_all() && selector.matches(labels),
        Err(_) => false,
    }
}

/// Decides what happens to a pod being created in a namespace that opted in. `servers`
/// are the McpServers of the pod's namespace.
pub fn decide(pod: &Pod, servers: &[McpServer], settings: &InjectSettings) -> Outcome {
    decide_with_key(pod, servers, settings, &|_| None)
}

/// As [`decide`]; `hash_key` names the Secret key holding the HMAC key of a server whose
/// own McpRedactionPolicy has one (same namespace), which is mounted for the agent.
pub fn decide_with_key(
    pod: &Pod,
    servers: &[McpServer],
    settings: &InjectSettings,
    hash_key: &dyn Fn(&McpServer) -> Option<SecretKeyRef>,
) -> Outcome {
    let annotations = pod.annotations();
    if annotations.get(names::INJECT_ANNOTATION).map(String::as_str) == Some("false") {
        return Outcome::Skip(Skip::OptedOut);
    }
    if is_injected(pod) {
        return Outcome::Skip(Skip::AlreadyInjected);
    }
    let matching = matching_servers(pod, servers);
    let server = match matching.as_slice() {
        [] => return Outcome::Skip(Skip::NoServer),
        [one] => *one,
        several => {
            let list: Vec<String> = several.iter().map(|s| s.name_any()).collect();
            return Outcome::NotInjected {
                server: String::new(),
                message: format!(
                    "pod {} matches several McpServers ({}): the agent can front only one; make their selectors disjoint",
                    pod_display_name(pod),
                    list.join(", ")
                ),
            };
        }
    };
    let name = server.name_any();
    let approval = server.status.as_ref().and_then(|s| s.approval.as_ref());
    let state = approval.map(|a| a.state).unwrap_or_default();
    if state == ApprovalState::Rejected && settings.rejected == RejectedPods::Refuse {
        let review = approval.and_then(|a| a.review.as_deref()).unwrap_or("unknown");
        let reason = approval.and_then(|a| a.reason.as_deref()).unwrap_or("no reason given");
        return Outcome::Refuse(format!(
            "McpServer {}/{name} was rejected by McpServerReview {review} ({reason}): its pods may not run. \
             Approve it with a new McpServerReview, or remove the pod's labels that its selector matches",
            server.namespace().unwrap_or_default()
        ));
    }
    match add_agent(pod, server, settings, hash_key(server)) {
        Ok((mut pod, warnings)) => {
            let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
            annotations.insert(names::SERVER_ANNOTATION.to_owned(), name.clone());
            annotations.insert(names::INJECTED_ANNOTATION.to_owned(), "true".to_owned());
            if state != ApprovalState::Approved {
                annotations.insert(names::APPROVAL_ANNOTATION.to_owned(), state.as_str().to_owned());
            }
            Outcome::Inject { pod: Box::new(pod), server: name, warnings }
        }
        Err(message) => Outcome::NotInjected { server: name, message },
    }
}

/// Whether the pod already carries the agent (by annotation or by container name).
pub fn is_injected(pod: &Pod) -> bool {
    if pod.annotations().get(names::INJECTED_ANNOTATION).map(String::as_str) == Some("true") {
        return true;
    }
    let Some(spec) = &pod.spec else { return false };
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == names::AGENT_CONTAINER)
}

/// Where the MCP port is: container index, port index.
fn find_port(pod: &Pod, port: &IntOrString) -> Option<(usize, usize)> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().enumerate().find_map(|(ci, c)| {
        c.ports
            .iter()
            .flatten()
            .position(|p| match port {
                IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
                IntOrString::Int(number) => p.container_port == *number,
            })
            .map(|pi| (ci, pi))
    })
}

fn port_list(pod: &Pod) -> String {
    let ports: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| match &p.name {
            Some(name) => format!("{name}={}", p.container_port),
            None => p.container_port.to_string(),
        })
        .collect();
    if ports.is_empty() { "none declared".to_owned() } else { ports.join(", ") }
}

fn port_text(port: &IntOrString) -> String {
    match port {
        IntOrString::String(s) => format!("'{s}'"),
        IntOrString::Int(n) => n.to_string(),
    }
}

/// The pod with the agent added, or why it cannot be added.
fn add_agent(
    pod: &Pod,
    server: &McpServer,
    settings: &InjectSettings,
    hash_key: Option<SecretKeyRef>,
) -> Result<(Pod, Vec<String>), String> {
    let server_id = format!("{}/{}", server.namespace().unwrap_or_default(), server.name_any());
    let pod_name = pod_display_name(pod);
    let Some((ci, pi)) = find_port(pod, &server.spec.port) else {
        return Err(format!(
            "McpServer {server_id}: spec.port {} matches no container port of pod {pod_name} (ports: {}); \
             the pod runs without the agent. Declare the port in the container or fix spec.port",
            port_text(&server.spec.port),
            port_list(pod)
        ));
    };
    let mut pod = pod.clone();
    let spec = pod.spec.as_mut().expect("find_port found a container");
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        if let Some(p) = c
            .ports
            .iter()
            .flatten()
            .find(|p| p.container_port == settings.proxy_port || p.container_port == settings.admin_port)
        {
            return Err(format!(
                "McpServer {server_id}: container {} of pod {pod_name} uses port {}, which the agent needs \
                 (proxy {}, admin {}); the pod runs without the agent. Move the app's port or change the \
                 operator's --agent-proxy-port/--agent-admin-port",
                c.name, p.container_port, settings.proxy_port, settings.admin_port
            ));
        }
    }
    let app = &mut spec.containers[ci];
    let app_name = app.name.clone();
    let port = &mut app.ports.as_mut().expect("find_port found a port")[pi];
    if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
        return Err(format!(
            "McpServer {server_id}: port {} of container {app_name} in pod {pod_name} is {}, but MCP runs over TCP",
            port.container_port,
            port.protocol.as_deref().unwrap_or_default()
        ));
    }
    let app_port = port.container_port;
    let taken_name = port.name.replace(APP_PORT_NAME.to_owned());
    if let Some(old) = &taken_name {
        rename_probe_ports(app, old, APP_PORT_NAME);
    }
    let mut warnings = Vec::new();
    if let IntOrString::Int(n) = server.spec.port {
        let hint = match &taken_name {
            Some(name) => format!("target the port by its name '{name}', which now reaches the agent"),
            None => {
                format!("name the container port and set spec.port to that name; until then use port {PROXY_PORT_NAME}")
            }
        };
        warnings.push(format!(
            "McpServer {server_id}: spec.port is the number {n}; Services that target port {n} by number reach \
             container {app_name} directly, without the agent: {hint}"
        ));
    }
    let mut agent = agent_container(server, settings, app_port, &app_name, taken_name);
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == CONFIG_VOLUME) {
        volumes.push(config_volume(&server.name_any()));
    }
    if let Some(key) = hash_key {
        volumes.retain(|v| v.name != HASH_KEY_VOLUME);
        volumes.push(Volume {
            name: HASH_KEY_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(key.name),
                items: Some(vec![KeyToPath { key: key.key, path: "key".to_owned(), mode: None }]),
                // The agent runs as a non-root user without fsGroup: it must be able to read it.
                default_mode: Some(0o444),
                optional: Some(false),
            }),
            ..Default::default()
        });
        let dir = HASH_KEY_FILE.rsplit_once('/').map(|(d, _)| d).unwrap_or(HASH_KEY_FILE);
        agent.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
            name: HASH_KEY_VOLUME.to_owned(),
            mount_path: dir.to_owned(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if settings.native_sidecar {
        spec.init_containers.get_or_insert_with(Vec::new).push(agent);
    } else {
        spec.containers.push(agent);
    }
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .entry("kubectl.kubernetes.io/default-container".to_owned())
        .or_insert(app_name);
    Ok((pod, warnings))
}

/// Probes and lifecycle hooks of the app that used the port's old name follow the rename.
fn rename_probe_ports(container: &mut Container, old: &str, new: &str) {
    let rename = |port: &mut IntOrString| {
        if matches!(port, IntOrString::String(s) if s == old) {
            *port = IntOrString::String(new.to_owned());
        }
    };
    for probe in [&mut container.liveness_probe, &mut container.readiness_probe, &mut container.startup_probe]
        .into_iter()
        .flatten()
    {
        if let Some(h) = &mut probe.http_get {
            rename(&mut h.port);
        }
        if let Some(t) = &mut probe.tcp_socket {
            rename(&mut t.port);
        }
    }
    if let Some(lifecycle) = &mut container.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop].into_iter().flatten() {
            if let Some(h) = &mut handler.http_get {
                rename(&mut h.port);
            }
            if let Some(t) = &mut handler.tcp_socket {
                rename(&mut t.port);
            }
        }
    }
}

fn config_volume(server: &str) -> Volume {
    Volume {
        name: CONFIG_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::AGENT_CONFIG_MAP.to_owned(),
            items: Some(vec![KeyToPath {
                key: names::config_key(server),
                path: mcp_ledger_crds::config::CONFIG_FILE_NAME.to_owned(),
                mode: None,
            }]),
            default_mode: Some(0o444),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.to_owned(), api_version: None }),
            ..Default::default()
        }),
        value: None,
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), value_from: None }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

fn agent_container(
    server: &McpServer,
    settings: &InjectSettings,
    app_port: i32,
    app_container: &str,
    proxy_port_name: Option<String>,
) -> Container {
    let config = format!("{CONFIG_DIR}/{}", mcp_ledger_crds::config::CONFIG_FILE_NAME);
    Container {
        name: names::AGENT_CONTAINER.to_owned(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(vec![
            "--mode=sidecar".to_owned(),
            format!("--config={config}"),
            format!("--upstream=http://127.0.0.1:{app_port}"),
            format!("--listen=0.0.0.0:{}", settings.proxy_port),
            format!("--admin=0.0.0.0:{}", settings.admin_port),
        ]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_UID", "metadata.uid"),
            field_env("NODE_NAME", "spec.nodeName"),
            value_env("MCP_CONTAINER_NAME", app_container),
            value_env("MCP_LEDGER_SERVER", &server.name_any()),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some(proxy_port_name.unwrap_or_else(|| PROXY_PORT_NAME.to_owned())),
                container_port: settings.proxy_port,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(ADMIN_PORT_NAME.to_owned()),
                container_port: settings.admin_port,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        resources: Some(settings.resources.clone()),
        restart_policy: settings.native_sidecar.then(|| "Always".to_owned()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: CONFIG_VOLUME.to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        }]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
