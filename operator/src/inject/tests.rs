use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mcp_ledger_crds::McpServer;
use mcp_ledger_crds::server::{Approval, ApprovalState, McpServerStatus};
use serde_json::json;

use super::*;
use mcp_ledger_crds::common::SecretKeyRef;

pub(crate) fn server(name: &str, port: serde_json::Value) -> McpServer {
    serde_json::from_value(json!({
        "apiVersion": "mcpledger.dev/v1alpha1",
        "kind": "McpServer",
        "metadata": {"name": name, "namespace": "tools", "uid": format!("uid-{name}")},
        "spec": {"selector": {"matchLabels": {"app": name}}, "port": port}
    }))
    .unwrap()
}

pub(crate) fn pod(app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": format!("{app}-7f9c-"), "namespace": "tools", "labels": {"app": app}},
        "spec": {"containers": [{
            "name": "server",
            "image": "example.invalid/mcp-server:1",
            "ports": [{"name": "mcp", "containerPort": 8000}, {"name": "metrics", "containerPort": 9100}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "mcp"}},
            "livenessProbe": {"tcpSocket": {"port": "mcp"}},
            "startupProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}}
        }]}
    }))
    .unwrap()
}

fn injected(outcome: Outcome) -> (Pod, Vec<String>) {
    match outcome {
        Outcome::Inject { pod, warnings, server } => {
            assert_eq!(server, "github");
            (*pod, warnings)
        }
        other => panic!("expected an injection, got {other:?}"),
    }
}

fn with_approval(mut s: McpServer, state: ApprovalState) -> McpServer {
    s.status = Some(McpServerStatus {
        approval: Some(Approval {
            state,
            review: Some("security-1".into()),
            reason: Some("exfiltrates repository secrets".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    s
}

#[test]
fn agent_takes_over_the_named_port_as_a_native_sidecar() {
    let servers = [server("github", json!("mcp")), server("other", json!("mcp"))];
    let (pod, warnings) = injected(decide(&pod("github"), &servers, &InjectSettings::default()));
    assert!(warnings.is_empty(), "{warnings:?}");
    let spec = pod.spec.as_ref().unwrap();
    let app = &spec.containers[0];
    let app_ports = app.ports.as_ref().unwrap();
    assert_eq!(app_ports[0].name.as_deref(), Some(APP_PORT_NAME));
    assert_eq!(app_ports[0].container_port, 8000);
    assert_eq!(app_ports[1].name.as_deref(), Some("metrics"), "other ports keep their names");
    // Probes that used the old name follow the app's port; others are untouched.
    let ready = app.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(ready.port, IntOrString::String(APP_PORT_NAME.into()));
    let live = app.liveness_probe.as_ref().unwrap().tcp_socket.as_ref().unwrap();
    assert_eq!(live.port, IntOrString::String(APP_PORT_NAME.into()));
    let startup = app.startup_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(startup.port, IntOrString::String("metrics".into()));

    assert_eq!(spec.containers.len(), 1, "native sidecar: no extra regular container");
    let agent = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(agent.name, names::AGENT_CONTAINER);
    assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
    let ports = agent.ports.as_ref().unwrap();
    assert_eq!(ports[0].name.as_deref(), Some("mcp"), "the agent takes the name Services target");
    assert_eq!(ports[0].container_port, 15080);
    let args = agent.args.as_ref().unwrap();
    assert!(args.contains(&"--upstream=http://127.0.0.1:8000".to_owned()), "{args:?}");
    assert!(args.contains(&"--listen=0.0.0.0:15080".to_owned()), "{args:?}");

    let sc = agent.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert!(sc.capabilities.as_ref().unwrap().add.is_none());

    let env: Vec<&str> = agent.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for wanted in ["POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME", "MCP_CONTAINER_NAME"] {
        assert!(env.contains(&wanted), "{wanted} missing from {env:?}");
    }
    let volume = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == CONFIG_VOLUME).unwrap();
    let cm = volume.config_map.as_ref().unwrap();
    assert_eq!(cm.name, names::AGENT_CONFIG_MAP);
    assert_eq!(cm.items.as_ref().unwrap()[0].key, "github.json");
    assert_eq!(cm.items.as_ref().unwrap()[0].path, "agent.json");

    let annotations = pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[names::SERVER_ANNOTATION], "github");
    assert_eq!(annotations[names::INJECTED_ANNOTATION], "true");
    assert_eq!(annotations[names::APPROVAL_ANNOTATION], "Pending");
    assert_eq!(annotations["kubectl.kubernetes.io/default-container"], "server");
}

#[test]
fn injection_is_idempotent() {
    let servers = [server("github", json!("mcp"))];
    let (once, _) = injected(decide(&pod("github"), &servers, &InjectSettings::default()));
    assert_eq!(decide(&once, &servers, &InjectSettings::default()), Outcome::Skip(Skip::AlreadyInjected));
    // A pod that carries the agent container but lost the annotation is also left alone.
    let mut stripped = once.clone();
    stripped.metadata.annotations.as_mut().unwrap().remove(names::INJECTED_ANNOTATION);
    assert_eq!(decide(&stripped, &servers, &InjectSettings::default()), Outcome::Skip(Skip::AlreadyInjected));
}

#[test]
fn opted_out_unmatched_and_deleted_servers_are_skipped() {
    let servers = [server("github", json!("mcp"))];
    let mut opted_out = pod("github");
    opted_out.metadata.annotations = Some([(names::INJECT_ANNOTATION.to_owned(), "false".to_owned())].into());
    assert_eq!(decide(&opted_out, &servers, &InjectSettings::default()), Outcome::Skip(Skip::OptedOut));
    assert_eq!(decide(&pod("web"), &servers, &InjectSettings::default()), Outcome::Skip(Skip::NoServer));
    let mut deleting = server("github", json!("mcp"));
    deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    assert_eq!(decide(&pod("github"), &[deleting], &InjectSettings::default()), Outcome::Skip(Skip::NoServer));
}

#[test]
fn a_pod_without_the_named_port_is_admitted_without_the_agent_and_says_why() {
    let servers = [server("github", json!("http"))];
    match decide(&pod("github"), &servers, &InjectSettings::default()) {
        Outcome::NotInjected { server, message } => {
            assert_eq!(server, "github");
            assert_eq!(
                message,
                "McpServer tools/github: spec.port 'http' matches no container port of pod github-7f9c-<generated> \
                 (ports: mcp=8000, metrics=9100); the pod runs without the agent. Declare the port in the \
                 container or fix spec.port"
            );
        }
        other => panic!("expected NotInjected, got {other:?}"),
    }
}

#[test]
fn a_numeric_port_is_injected_with_a_warning_about_services_by_number() {
    let servers = [server("github", json!(8000))];
    let (pod, warnings) = injected(decide(&pod("github"), &servers, &InjectSettings::default()));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("Services that target port 8000 by number"), "{}", warnings[0]);
    assert!(warnings[0].contains("'mcp'"), "{}", warnings[0]);
    let agent = &pod.spec.unwrap().init_containers.unwrap()[0];
    assert_eq!(agent.ports.as_ref().unwrap()[0].name.as_deref(), Some("mcp"));
}

#[test]
fn an_unnamed_numeric_port_gets_the_proxy_port_name() {
    let servers = [server("github", json!(8000))];
    let mut p = pod("github");
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.ports.as_mut().unwrap()[0].name = None;
    c.readiness_probe = None;
    c.liveness_probe = None;
    let (pod, warnings) = injected(decide(&p, &servers, &InjectSettings::default()));
    assert!(warnings[0].contains(PROXY_PORT_NAME), "{}", warnings[0]);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.containers[0].ports.as_ref().unwrap()[0].name.as_deref(), Some(APP_PORT_NAME));
    let agent = &spec.init_containers.unwrap()[0];
    assert_eq!(agent.ports.as_ref().unwrap()[0].name.as_deref(), Some(PROXY_PORT_NAME));
}

#[test]
fn plain_container_mode_for_clusters_without_native_sidecars() {
    let settings = InjectSettings { native_sidecar: false, ..Default::default() };
    let (pod, _) = injected(decide(&pod("github"), &[server("github", json!("mcp"))], &settings));
    let spec = pod.spec.unwrap();
    assert!(spec.init_containers.is_none());
    assert_eq!(spec.containers.len(), 2);
    assert_eq!(spec.containers[1].name, names::AGENT_CONTAINER);
    assert_eq!(spec.containers[1].restart_policy, None);
}

#[test]
fn rejected_servers_are_refused_or_marked_as_configured() {
    let rejected = [with_approval(server("github", json!("mcp")), ApprovalState::Rejected)];
    let refuse = InjectSettings { rejected: RejectedPods::Refuse, ..Default::default() };
    match decide(&pod("github"), &rejected, &refuse) {
        Outcome::Refuse(message) => {
            assert!(message.starts_with("McpServer tools/github was rejected by McpServerReview security-1"));
            assert!(message.contains("exfiltrates repository secrets"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (pod, _) = injected(decide(&pod("github"), &rejected, &InjectSettings::default()));
    assert_eq!(pod.metadata.annotations.unwrap()[names::APPROVAL_ANNOTATION], "Rejected");

    let approved = [with_approval(server("github", json!("mcp")), ApprovalState::Approved)];
    let (pod, _) = injected(decide(&super::tests::pod("github"), &approved, &refuse));
    assert!(!pod.metadata.annotations.unwrap().contains_key(names::APPROVAL_ANNOTATION));
}

#[test]
fn a_pod_matched_by_two_servers_is_not_injected() {
    let mut second = server("github-2", json!("mcp"));
    second.spec.selector = server("github", json!("mcp")).spec.selector;
    match decide(&pod("github"), &[server("github", json!("mcp")), second], &InjectSettings::default()) {
        Outcome::NotInjected { message, .. } => assert!(message.contains("(github, github-2)"), "{message}"),
        other => panic!("expected NotInjected, got {other:?}"),
    }
}

#[test]
fn a_pod_that_uses_the_agent_port_is_not_injected() {
    let settings = InjectSettings { proxy_port: 9100, ..Default::default() };
    match decide(&pod("github"), &[server("github", json!("mcp"))], &settings) {
        Outcome::NotInjected { message, .. } => {
            assert!(message.contains("uses port 9100, which the agent needs"), "{message}")
        }
        other => panic!("expected NotInjected, got {other:?}"),
    }
}

#[test]
fn the_hmac_key_secret_of_the_servers_policy_is_mounted_read_only() {
    let key = SecretKeyRef { name: "hmac".into(), key: "key".into() };
    let outcome =
        decide_with_key(&pod("github"), &[server("github", json!("mcp"))], &InjectSettings::default(), &|_| {
            Some(key.clone())
        });
    let (pod, _) = injected(outcome);
    let spec = pod.spec.unwrap();
    let volume = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == HASH_KEY_VOLUME).unwrap();
    let secret = volume.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("hmac"));
    assert_eq!(secret.items.as_ref().unwrap()[0].key, "key");
    let agent = &spec.init_containers.unwrap()[0];
    let mount = agent.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == HASH_KEY_VOLUME).unwrap();
    assert_eq!(format!("{}/key", mount.mount_path), HASH_KEY_FILE);
    assert_eq!(mount.read_only, Some(true));
    // Without a key nothing is mounted.
    let (pod, _) =
        injected(decide(&super::tests::pod("github"), &[server("github", json!("mcp"))], &InjectSettings::default()));
    assert!(!pod.spec.unwrap().volumes.unwrap().iter().any(|v| v.name == HASH_KEY_VOLUME));
}
