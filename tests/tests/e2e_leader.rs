//! Cluster test of leader election, under `make e2e`: two operator replicas on this
//! machine share the real `mcp-ledger-operator` Lease; exactly one leads (its
//! `mcp_ledger_operator_leader` gauge is 1 and the Lease names it), and when it is killed
//! the other takes the Lease over and reconciles McpServers.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use mcp_ledger_tests::{crd_api, e2e_client, free_port, install_crds, object, unique_namespace};
use serde_json::json;

/// The replica's `mcp_ledger_operator_leader` gauge, or None while its admin port is not up.
fn leader_gauge(admin: u16) -> Option<i64> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| l.strip_prefix("mcp_ledger_operator_leader ")).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn one_of_two_replicas_leads_and_the_other_takes_over() {
    let Some(client) = e2e_client("one_of_two_replicas_leads_and_the_other_takes_over").await else {
        return;
    };
    install_crds(&client).await;
    let operator_ns = unique_namespace("mcpl-e2e-lead-op");
    let ns = unique_namespace("mcpl-e2e-lead");
    for name in [&operator_ns, &ns] {
        mcp_ledger_tests::create_namespace(&client, name).await;
    }
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cleanup = mcp_ledger_tests::Cleanup::new(vec![ns.clone(), operator_ns.clone()], vec![dir.clone()]);
    mcp_ledger_tests::write_tls(&dir, "127.0.0.1");
    let bin = mcp_ledger_tests::binary("MCP_LEDGER_OPERATOR_BIN", "mcp-ledger-operator");
    let mut replicas = Vec::new();
    for identity in ["replica-a", "replica-b"] {
        let admin = free_port();
        cleanup.children.push(
            Command::new(&bin)
                .args([
                    &format!("--namespace={operator_ns}"),
                    &format!("--identity={identity}"),
                    &format!("--webhook-listen=127.0.0.1:{}", free_port()),
                    &format!("--api-listen=127.0.0.1:{}", free_port()),
                    &format!("--admin-listen=127.0.0.1:{admin}"),
                    &format!("--tls-cert={}", dir.join("tls.crt").display()),
                    &format!("--tls-key={}", dir.join("tls.key").display()),
                    "--leader-election=true",
                    "--lease-seconds=4",
                    "--log=warn",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the operator starts (make e2e builds it)"),
        );
        replicas.push((identity, admin));
    }

    // Exactly one leads, for several lease periods, and the Lease names it.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &operator_ns);
    let start = Instant::now();
    let mut leader = None;
    while start.elapsed() < Duration::from_secs(30) {
        let gauges: Vec<Option<i64>> = replicas.iter().map(|(_, admin)| leader_gauge(*admin)).collect();
        assert!(gauges.iter().filter(|g| **g == Some(1)).count() <= 1, "two leaders at once: {gauges:?}");
        if leader.is_none() && gauges.contains(&Some(1)) && gauges.contains(&Some(0)) {
            leader = gauges.iter().position(|g| *g == Some(1));
        }
        if leader.is_some() && start.elapsed() > Duration::from_secs(12) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let leader = leader.expect("one replica leads and the other waits");
    let lease = leases.get("mcp-ledger-operator").await.expect("the Lease exists");
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(replicas[leader].0), "the Lease names the leader");

    // The leader dies without letting go: the other takes over once the Lease expires.
    let mut dead = cleanup.children.remove(leader);
    dead.kill().unwrap();
    dead.wait().unwrap();
    let (survivor, admin) = replicas[1 - leader];
    let start = Instant::now();
    while leader_gauge(admin) != Some(1) {
        assert!(start.elapsed() < Duration::from_secs(30), "{survivor} did not take over within 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{survivor} took over {:.1} s after the leader was killed", start.elapsed().as_secs_f64());
    let lease = leases.get("mcp-ledger-operator").await.unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some(survivor));

    // And reconciles: a new McpServer gets its inventory status.
    let servers = crd_api(&client, &ns, "McpServer", "mcpservers");
    let spec = json!({"selector": {"matchLabels": {"app": "lead"}}, "port": 8080});
    servers.create(&PostParams::default(), &object("McpServer", "after-failover", spec)).await.unwrap();
    let start = Instant::now();
    loop {
        let status = servers.get("after-failover").await.unwrap().data["status"].clone();
        if status["approval"]["state"] == "Pending" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no status from the new leader: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(cleanup);
}
