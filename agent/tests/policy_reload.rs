//! The redaction policy fails closed at start and keeps the last good one on reload: an
//! agent whose policy does not compile does not start (saying which rule), a bad change
//! is refused and counted in `mcp_ledger_config_reloads_total{result="error"}`, a good one
//! is taken; the HMAC key comes from `redaction.hashKeyFile`.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, config, raw, scratch};
use mcp_ledger_crds::AgentConfig;
use mcp_ledger_crds::redaction::McpRedactionPolicySpec;
use serde_json::json;

fn policy(v: serde_json::Value) -> McpRedactionPolicySpec {
    serde_json::from_value(v).unwrap()
}

async fn start_error(config: AgentConfig) -> String {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let options = mcp_ledger_agent::RunOptions {
        mode: "sidecar",
        config_file: None,
        pod: Default::default(),
        drain: Duration::from_secs(1),
    };
    let result = tokio::time::timeout(Duration::from_secs(10), mcp_ledger_agent::run(config, options, rx)).await;
    format!("{:#}", result.expect("the agent exits at once").expect_err("the agent must refuse to start"))
}

#[tokio::test]
async fn a_policy_that_does_not_compile_stops_the_agent_at_start() {
    let dir = scratch("policy-start");
    let mut c = config(1, &dir);
    c.redaction.policy = policy(json!({"customPatterns": [{"name": "ticket", "regex": "TCK-(["}]}));
    let message = start_error(c).await;
    assert!(message.contains("customPatterns[0] 'ticket'") || message.contains("'ticket'"), "{message}");

    let mut c = config(1, &dir);
    c.redaction.policy = policy(json!({"defaultAction": "hash"}));
    c.redaction.hash_key_file = Some(dir.join("missing-key").display().to_string());
    let message = start_error(c).await;
    assert!(message.contains("redaction.hashKeyFile"), "{message}");
}

#[tokio::test]
async fn the_hash_key_is_read_from_its_file() {
    let dir = scratch("policy-key");
    std::fs::write(dir.join("key"), [7u8; 32]).unwrap();
    let mut c = config(1, &dir);
    c.redaction.policy = policy(json!({"defaultAction": "hash"}));
    c.redaction.hash_key_file = Some(dir.join("key").display().to_string());
    let agent = Agent::start(c).await;
    agent.stop().await;
}

async fn reloads(admin: u16, result: &str) -> u64 {
    let metrics = raw("GET", &format!("http://127.0.0.1:{admin}/metrics"), &[], "").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let prefix = format!("mcp_ledger_config_reloads_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().unwrap()).unwrap_or(0)
}

async fn wait_for(admin: u16, result: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(admin, result).await < n {
        assert!(Instant::now() < deadline, "no reload with result {result} within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_bad_change_is_refused_and_counted_and_a_good_one_is_taken() {
    let dir = scratch("policy-reload");
    let file = dir.join("agent.json");
    let mut c = config(1, &dir);
    std::fs::write(&file, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    let agent = Agent::start_from_file(&file).await;

    c.redaction.policy = policy(json!({"customPatterns": [{"name": "broken", "regex": "(unclosed"}]}));
    std::fs::write(&file, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    wait_for(agent.admin, "error", 1).await;
    assert_eq!(reloads(agent.admin, "ok").await, 0, "the broken policy was not taken");

    c.redaction.policy = policy(json!({"customPatterns": [{"name": "ticket", "regex": "TCK-[0-9]{6}"}]}));
    std::fs::write(&file, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    wait_for(agent.admin, "ok", 1).await;
    assert_eq!(reloads(agent.admin, "error").await, 1);
    agent.stop().await;
}
