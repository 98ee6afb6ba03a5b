//! Identity in records comes only from sources that can be trusted: a verified JWT, or
//! headers from a gateway at a configured address. Anything else is unverified.

mod common;

use common::*;
use mcp_ledger_crds::config::{GatewayConfig, JwtConfig};
use mcp_ledger_crds::record::{EventType, IdentitySource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_jwt_users_are_recorded_and_forged_headers_are_not() {
    let (_server, port) = python_server("streamable-http", &["--json-response"]);
    let dir = scratch("identity");
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let claims = format!(
        r#"{{"sub":"alice","iss":"https://issuer.test","aud":"mcp","exp":{exp},"team":"platform","org":"acme"}}"#
    );
    let signer = JwtSigner::new(&dir);
    let token = signer.sign(&claims);
    let public = signer.public.clone();
    let mut cfg = config(port, &dir);
    cfg.identity.jwt = Some(JwtConfig {
        issuer: "https://issuer.test".into(),
        audiences: vec!["mcp".into()],
        static_keys: vec![public],
        user_claim: "sub".into(),
        team_claim: Some("team".into()),
        org_claim: Some("org".into()),
        leeway_seconds: 5,
        ..Default::default()
    });
    // The gateway is trusted only at an address the test never uses.
    cfg.identity.trusted_gateway =
        Some(GatewayConfig { cidrs: vec!["192.0.2.0/24".into()], user_header: "x-user".into(), ..Default::default() });
    let agent = Agent::start(cfg).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let auth = format!("Bearer {token}");
    let base = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "add"),
    ];
    let mut with_jwt = base.clone();
    with_jwt.push(("authorization", auth.as_str()));
    let mut tampered_token = token.clone();
    tampered_token.pop();
    tampered_token.push(if token.ends_with('A') { 'B' } else { 'A' });
    let tampered = format!("Bearer {tampered_token}");
    let mut with_bad_jwt = base.clone();
    with_bad_jwt.push(("authorization", tampered.as_str()));
    let mut forged = base.clone();
    forged.push(("x-user", "mallory"));
    for headers in [&with_jwt, &with_bad_jwt, &forged] {
        let resp = raw("POST", &agent.url("/mcp"), headers, body).await;
        assert_eq!(
            resp.status,
            200,
            "identity never changes what the server gets: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let records = agent.stop().await;
    let requests: Vec<_> = records.iter().filter(|r| r.event_type == EventType::McpRequest).collect();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].identity_source, IdentitySource::Jwt);
    assert_eq!(requests[0].user_id.as_deref(), Some("alice"));
    assert_eq!(requests[0].team_id.as_deref(), Some("platform"));
    assert_eq!(requests[0].org_id.as_deref(), Some("acme"));
    assert_eq!(requests[0].headers.get("authorization"), Some("[REDACTED:header]"));
    for r in &requests[1..] {
        assert_eq!(r.identity_source, IdentitySource::Unverified, "{r:?}");
        assert_eq!(r.user_id, None);
    }
    let raw_text = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    assert!(!raw_text.contains(&token[..40]), "the bearer token leaked into a record");
    let _ = std::fs::remove_dir_all(dir);
}
