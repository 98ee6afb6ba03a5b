//! Tests of the API crate: the generated CRDs are structural and installable, and bad
//! objects are refused with messages that name the field. Offline, an object is checked
//! the way the API server checks it: strict field validation (unknown fields refused),
//! the OpenAPI schema (types, enums, patterns, bounds) and the CEL rules (evaluated with
//! kube-cel, the client-side CEL evaluator of the kube-rs project).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::config::*;
use crate::record::*;

fn crd_file(name: &str) -> CustomResourceDefinition {
    let text = match name {
        "mcpservers" => include_str!("../mcpservers.yaml"),
        "mcpserverreviews" => include_str!("../mcpserverreviews.yaml"),
        "mcpredactionpolicies" => include_str!("../mcpredactionpolicies.yaml"),
        "mcpaccesspolicies" => include_str!("../mcpaccesspolicies.yaml"),
        other => panic!("no CRD file {other}"),
    };
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}.yaml is not a CustomResourceDefinition: {e}"))
}

fn schema(crd: &CustomResourceDefinition) -> Value {
    let version = &crd.spec.versions[0];
    let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema");
    serde_json::to_value(schema).unwrap()
}

/// Turns a Kubernetes structural schema into a JSON Schema with the API server's strict
/// field validation: objects with declared properties refuse unknown ones.
fn to_json_schema(node: &Value) -> Value {
    let Value::Object(map) = node else {
        return node.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        match key.as_str() {
            k if k.starts_with("x-kubernetes-") => {}
            "nullable" => {}
            "properties" => {
                let props = value.as_object().unwrap().iter().map(|(k, v)| (k.clone(), to_json_schema(v))).collect();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), to_json_schema(value));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.insert("type".into(), json!(["integer", "string"]));
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    if map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && map.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    out.remove("format");
    out.remove("default");
    Value::Object(out)
}

/// Admits an object the way the API server would on create (or update, with `old`):
/// returns every refusal as `<field path>: <message>`.
fn admit(crd: &str, object: &Value, old: Option<&Value>) -> Result<(), Vec<String>> {
    let crd = crd_file(crd);
    let schema = schema(&crd);
    let mut errors = Vec::new();
    // The API server adds these to every custom resource's root schema.
    let mut root = schema.clone();
    let props = root["properties"].as_object_mut().expect("root properties");
    props.insert("apiVersion".into(), json!({"type": "string"}));
    props.insert("kind".into(), json!({"type": "string"}));
    props.insert("metadata".into(), json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let validator = jsonschema::validator_for(&to_json_schema(&root)).expect("schema compiles");
    for e in validator.iter_errors(object) {
        let path = e.instance_path().to_string().trim_start_matches('/').replace('/', ".");
        errors.push(format!("{path}: {e}"));
    }
    if errors.is_empty()
        && let Err(cel) = kube_cel::Validator::new().validate(&schema, object, old)
    {
        errors.extend(cel.into_vec().into_iter().map(|e| e.to_string()));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn refused_mentioning(crd: &str, object: &Value, old: Option<&Value>, needles: &[&str]) {
    let errors = admit(crd, object, old).expect_err("object should be refused");
    let all = errors.join("\n");
    for needle in needles {
        assert!(all.contains(needle), "refusal should mention {needle:?}, got:\n{all}");
    }
}

fn server(spec: Value) -> Value {
    json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServer", "metadata": {"name": "github", "namespace": "tools"}, "spec": spec})
}

fn good_server_spec() -> Value {
    json!({"selector": {"matchLabels": {"app": "github-mcp"}}, "port": "mcp", "owner": "platform@example.com"})
}

#[test]
fn every_crd_file_is_an_installable_v1_crd() {
    let expected = [
        ("mcpservers", "McpServer", true, "mcps"),
        ("mcpserverreviews", "McpServerReview", true, "mcpreview"),
        ("mcpredactionpolicies", "McpRedactionPolicy", false, "mcpredact"),
        ("mcpaccesspolicies", "McpAccessPolicy", false, "mcpaccess"),
    ];
    for (plural, kind, has_status, short) in expected {
        let crd = crd_file(plural);
        assert_eq!(crd.metadata.name.as_deref(), Some(format!("{plural}.mcpledger.dev").as_str()));
        assert_eq!(crd.spec.group, crate::GROUP);
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_owned()][..]));
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["mcpledger".to_owned()][..]));
        assert_eq!(crd.spec.versions.len(), 1, "{kind}");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, crate::VERSION);
        assert!(v.served && v.storage, "{kind} must be served and stored");
        let status = v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some();
        assert_eq!(status, has_status, "{kind} status subresource");
        let columns: Vec<_> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns.last(), Some(&"Age"), "{kind} columns {columns:?}");
        assert_structural(&schema(&crd), kind);
    }
    let servers = crd_file("mcpservers");
    let columns: Vec<_> = servers.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    for (name, path) in [
        ("Approval", ".status.approval.state"),
        ("Tools", ".status.toolCount"),
        ("Last Used", ".status.lastUsedAt"),
        ("Age", ".metadata.creationTimestamp"),
    ] {
        assert!(columns.contains(&(name, path)), "McpServer column {name} at {path} missing: {columns:?}");
    }
}

/// A structural schema: every node says its type (or is int-or-string / preserves
/// unknown fields), and `additionalProperties` never sits beside `properties`.
fn assert_structural(node: &Value, at: &str) {
    let map = node.as_object().unwrap_or_else(|| panic!("{at}: schema node is not an object"));
    let typed = map.contains_key("type")
        || map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    assert!(typed, "{at}: schema node has no type: {node}");
    assert!(
        !(map.contains_key("properties") && map.contains_key("additionalProperties")),
        "{at}: properties beside additionalProperties"
    );
    for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "definitions", "$defs"] {
        if forbidden == "anyOf" && map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            continue;
        }
        assert!(!map.contains_key(forbidden), "{at}: {forbidden} is not allowed in a structural schema");
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, child) in props {
            assert_structural(child, &format!("{at}.{name}"));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child @ Value::Object(_)) = map.get(key) {
            assert_structural(child, &format!("{at}[{key}]"));
        }
    }
}

#[test]
fn every_cel_rule_compiles() {
    for plural in ["mcpservers", "mcpserverreviews", "mcpredactionpolicies", "mcpaccesspolicies"] {
        let compiled = kube_cel::compile_schema(&schema(&crd_file(plural)));
        let errors: Vec<String> = compiled.compilation_errors().iter().map(|e| format!("{e:?}")).collect();
        assert!(errors.is_empty(), "{plural}: CEL rules that do not compile: {errors:?}");
    }
}

/// The API server refuses a CRD whose CEL rules it estimates too costly to run, and it
/// sizes every list and string without `maxItems`/`maxLength` by the largest request
/// (found on a real 1.32 API server: `headers.deny` items had no `maxLength`). So under
/// a rule that iterates (`all`, `exists`, …), every list is bounded, and so is every string
/// inside a list item.
fn assert_iterated_data_bounded(node: &Value, at: &str, in_item: bool) {
    let map = node.as_object().unwrap_or_else(|| panic!("{at}: schema node is not an object"));
    match map.get("type").and_then(Value::as_str) {
        Some("array") => {
            assert!(map.contains_key("maxItems"), "{at}: a list under an iterating CEL rule needs maxItems")
        }
        Some("string") if in_item && !map.contains_key("enum") => {
            assert!(
                map.contains_key("maxLength"),
                "{at}: a string in a list item under an iterating CEL rule needs maxLength"
            )
        }
        _ => {}
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, child) in props {
            assert_iterated_data_bounded(child, &format!("{at}.{name}"), in_item);
        }
    }
    if let Some(child @ Value::Object(_)) = map.get("items") {
        assert_iterated_data_bounded(child, &format!("{at}[*]"), true);
    }
    if let Some(child @ Value::Object(_)) = map.get("additionalProperties") {
        assert_iterated_data_bounded(child, &format!("{at}[*]"), true);
    }
}

fn check_cel_cost_bounds(node: &Value, at: &str) -> usize {
    let Some(map) = node.as_object() else { return 0 };
    let mut checked = 0;
    let iterates = map.get("x-kubernetes-validations").and_then(Value::as_array).is_some_and(|rules| {
        rules
            .iter()
            .filter_map(|r| r["rule"].as_str())
            .any(|r| [".all(", ".exists(", ".exists_one(", ".map(", ".filter("].iter().any(|m| r.contains(m)))
    });
    if iterates {
        assert_iterated_data_bounded(node, at, false);
        checked += 1;
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, child) in props {
            checked += check_cel_cost_bounds(child, &format!("{at}.{name}"));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key) {
            checked += check_cel_cost_bounds(child, &format!("{at}[{key}]"));
        }
    }
    checked
}

#[test]
fn iterating_cel_rules_only_see_bounded_data() {
    let mut checked = 0;
    for plural in ["mcpservers", "mcpserverreviews", "mcpredactionpolicies", "mcpaccesspolicies"] {
        checked += check_cel_cost_bounds(&schema(&crd_file(plural)), plural);
    }
    // The redaction policy alone has four iterating rules (hash key, unique names, deny, allow).
    assert!(checked >= 4, "only {checked} iterating rules found: the walk misses some");
}

#[test]
fn a_good_mcp_server_is_admitted() {
    admit("mcpservers", &server(good_server_spec()), None).unwrap();
    let mut spec = good_server_spec();
    spec["port"] = json!(8080);
    spec["transport"] = json!("sse");
    spec["path"] = json!("/sse");
    spec["toolPolicy"] = json!("block");
    spec["allowedVersions"] = json!(["1.4.2", ">=2, <3"]);
    spec["redactionPolicyRef"] = json!({"name": "strict"});
    admit("mcpservers", &server(spec), None).unwrap();
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    let mut spec = good_server_spec();
    spec["addedBy"] = json!("mallory");
    refused_mentioning("mcpservers", &server(spec.clone()), None, &["spec", "addedBy"]);
    // The typed client refuses it too, naming the field.
    let err = serde_json::from_value::<crate::McpServerSpec>(spec).unwrap_err().to_string();
    assert!(err.contains("unknown field `addedBy`"), "{err}");
}

#[test]
fn a_bad_port_is_refused_naming_spec_port() {
    for port in [
        json!(0),
        json!(70000),
        json!("Bad_Name"),
        json!("a-very-long-port-name"),
        json!("8080"),
        json!("-mcp"),
        json!(""),
    ] {
        let mut spec = good_server_spec();
        spec["port"] = port.clone();
        refused_mentioning("mcpservers", &server(spec), None, &["spec.port"]);
    }
    for port in [json!(1), json!(65535), json!("mcp"), json!("http-mcp2")] {
        let mut spec = good_server_spec();
        spec["port"] = port.clone();
        admit("mcpservers", &server(spec), None).unwrap_or_else(|e| panic!("port {port} refused: {e:?}"));
    }
}

#[test]
fn other_bad_server_specs_name_their_field() {
    let cases: [(&str, Value, &str); 5] = [
        ("selector", json!({}), "spec.selector"),
        ("transport", json!("grpc"), "spec.transport"),
        ("owner", json!("not an email"), "spec.owner"),
        ("path", json!("mcp"), "spec.path"),
        ("toolPolicy", json!("ignore"), "spec.toolPolicy"),
    ];
    for (field, value, needle) in cases {
        let mut spec = good_server_spec();
        spec[field] = value;
        refused_mentioning("mcpservers", &server(spec), None, &[needle]);
    }
    let mut spec = good_server_spec();
    spec.as_object_mut().unwrap().remove("port");
    refused_mentioning("mcpservers", &server(spec), None, &["port"]);
}

#[test]
fn added_by_cannot_be_edited_or_removed_once_recorded() {
    let mut old = server(good_server_spec());
    old["status"] = json!({"addedBy": "alice"});
    let mut edited = old.clone();
    edited["status"]["addedBy"] = json!("mallory");
    refused_mentioning("mcpservers", &edited, Some(&old), &["status.addedBy cannot be changed"]);
    let mut removed = old.clone();
    removed["status"] = json!({"toolCount": 3});
    refused_mentioning("mcpservers", &removed, Some(&old), &["status.addedBy cannot be removed"]);
    let mut first = old.clone();
    first["status"]["toolCount"] = json!(2);
    admit("mcpservers", &first, Some(&old)).unwrap();
}

fn review(spec: Value) -> Value {
    json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": "McpServerReview", "metadata": {"name": "r1", "namespace": "tools"}, "spec": spec})
}

#[test]
fn a_reject_review_needs_a_reason() {
    refused_mentioning(
        "mcpserverreviews",
        &review(json!({"serverRef": {"name": "github"}, "decision": "Reject"})),
        None,
        &["spec.reason is required"],
    );
    refused_mentioning(
        "mcpserverreviews",
        &review(json!({"serverRef": {"name": "github"}, "decision": "Reject", "reason": "   "})),
        None,
        &["spec.reason is required"],
    );
    admit(
        "mcpserverreviews",
        &review(json!({"serverRef": {"name": "github"}, "decision": "Reject", "reason": "exfiltrates repos"})),
        None,
    )
    .unwrap();
    admit("mcpserverreviews", &review(json!({"serverRef": {"name": "github"}, "decision": "Approve"})), None).unwrap();
    refused_mentioning(
        "mcpserverreviews",
        &review(json!({"serverRef": {"name": "github"}, "decision": "Maybe"})),
        None,
        &["spec.decision"],
    );
}

#[test]
fn a_review_cannot_be_edited() {
    let old = review(json!({"serverRef": {"name": "github"}, "decision": "Approve"}));
    let new = review(json!({"serverRef": {"name": "github"}, "decision": "Reject", "reason": "changed my mind"}));
    refused_mentioning("mcpserverreviews", &new, Some(&old), &["cannot be changed"]);
}

fn policy(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "mcpledger.dev/v1alpha1", "kind": kind, "metadata": {"name": "p", "namespace": "tools"}, "spec": spec})
}

#[test]
fn redaction_policy_rules_are_checked() {
    let good = json!({
        "headers": {"mode": "deny-list", "deny": ["X-Internal-Token"]},
        "detectors": [{"name": "ip-address", "enabled": true}, {"name": "email", "enabled": false}],
        "jsonPaths": [{"name": "password", "path": "$.params.arguments.password", "action": "drop"}],
        "customPatterns": [{"name": "employee-id", "regex": "EMP-[0-9]{6}", "keywords": ["emp-"]}],
    });
    admit("mcpredactionpolicies", &policy("McpRedactionPolicy", good.clone()), None).unwrap();
    let mut hash = good.clone();
    hash["defaultAction"] = json!("hash");
    refused_mentioning(
        "mcpredactionpolicies",
        &policy("McpRedactionPolicy", hash.clone()),
        None,
        &["hashKeySecretRef is required"],
    );
    hash["hashKeySecretRef"] = json!({"name": "mcp-ledger-hmac", "key": "key"});
    admit("mcpredactionpolicies", &policy("McpRedactionPolicy", hash), None).unwrap();
    let mut dup = good.clone();
    dup["jsonPaths"] =
        json!([{"name": "a", "path": "$.x", "action": "mask"}, {"name": "a", "path": "$.y", "action": "drop"}]);
    refused_mentioning("mcpredactionpolicies", &policy("McpRedactionPolicy", dup), None, &["unique"]);
    let mut bad_action = good.clone();
    bad_action["jsonPaths"][0]["action"] = json!("shred");
    refused_mentioning(
        "mcpredactionpolicies",
        &policy("McpRedactionPolicy", bad_action),
        None,
        &["spec.jsonPaths.0.action"],
    );
    let mut bad_header = good;
    bad_header["headers"]["deny"] = json!(["not a header"]);
    refused_mentioning("mcpredactionpolicies", &policy("McpRedactionPolicy", bad_header), None, &["HTTP header names"]);
}

#[test]
fn access_policy_rules_are_checked() {
    let good = json!({
        "mode": "enforce",
        "rules": [
            {"name": "devs-read", "effect": "Allow", "subjects": [{"kind": "Group", "name": "devs"}], "tools": ["get_*"]},
            {"name": "no-delete", "effect": "Deny", "subjects": [{"kind": "Claim", "claim": "department", "name": "sales"}], "tools": ["delete_*"]},
        ],
    });
    admit("mcpaccesspolicies", &policy("McpAccessPolicy", good.clone()), None).unwrap();
    let mut claim = good.clone();
    claim["rules"][1]["subjects"][0].as_object_mut().unwrap().remove("claim");
    refused_mentioning("mcpaccesspolicies", &policy("McpAccessPolicy", claim), None, &["needs `claim`"]);
    let mut empty = good.clone();
    empty["rules"][0]["subjects"] = json!([]);
    refused_mentioning("mcpaccesspolicies", &policy("McpAccessPolicy", empty), None, &["spec.rules.0.subjects"]);
    let mut mode = good;
    mode["mode"] = json!("audit");
    refused_mentioning("mcpaccesspolicies", &policy("McpAccessPolicy", mode), None, &["spec.mode"]);
    // An omitted default effect is Deny: the safe choice.
    let spec: crate::McpAccessPolicySpec = serde_json::from_value(json!({"rules": []})).unwrap();
    assert_eq!(spec.default_effect, crate::access::Effect::Deny);
    assert_eq!(spec.mode, crate::access::EnforcementMode::Observe);
}

fn full_config() -> AgentConfig {
    serde_json::from_value(json!({
        "listen": {"proxy": "0.0.0.0:8080", "admin": "0.0.0.0:9090"},
        "upstream": {"url": "http://127.0.0.1:3000", "connectTimeoutMs": 500},
        "server": {"name": "github", "namespace": "tools", "path": "/mcp", "transport": "streamable-http", "toolPolicy": "block",
                   "allowedVersions": [">=1.2"], "approvedTools": [{"name": "search", "definitionHash": "ab12"}]},
        "capture": {"maxBodyBytes": 65536, "sessionIdleSeconds": 600},
        "redaction": {"policy": {"defaultAction": "hash", "hashKeySecretRef": {"name": "k", "key": "key"},
                                  "jsonPaths": [{"name": "pw", "path": "$..password", "action": "drop"}]},
                      "hashKeyFile": "/etc/mcp-ledger/hmac/key"},
        "access": [{"name": "tools/devs", "spec": {"mode": "enforce", "rules": [
            {"name": "r", "effect": "Allow", "subjects": [{"kind": "User", "name": "alice"}]}]}}],
        "identity": {"jwt": {"issuer": "https://issuer.example", "audiences": ["mcp"], "jwksFile": "/etc/jwks.json", "groupsClaim": "groups"},
                     "trustedGateway": {"cidrs": ["10.0.0.0/8"], "teamHeader": "x-team"}, "trustedProxies": ["192.168.0.0/16"]},
        "exporters": {"otlp": {"endpoint": "http://10.0.0.1:4317", "protocol": "grpc"}, "jsonLines": {"path": "-"}, "csv": {"path": "/var/log/mcp.csv"}},
        "pipeline": {"queueCapacity": 100, "batchSize": 10, "flushIntervalMs": 200, "maxAttempts": 3}
    }))
    .unwrap()
}

#[test]
fn agent_config_round_trips_between_operator_and_agent() {
    let config = full_config();
    config.validate().unwrap();
    let rendered = serde_json::to_string(&config).unwrap();
    let read = AgentConfig::from_json(&rendered).unwrap();
    assert_eq!(read, config);
    // A minimal file gets safe defaults.
    let minimal = AgentConfig::from_json(r#"{"server": {"name": "time"}}"#).unwrap();
    assert_eq!(minimal.upstream.url, "http://127.0.0.1:8000");
    assert_eq!(minimal.server.path, "/mcp");
    assert!(minimal.identity.jwt.is_none() && minimal.identity.trusted_gateway.is_none());
    assert_eq!(minimal.capture.max_body_bytes, 256 * 1024);
    assert_eq!(minimal.capture.session_idle_seconds, 3600);
}

#[test]
fn agent_config_errors_name_the_field() {
    let err = AgentConfig::from_json(r#"{"server": {"name": "time", "nmae": "x"}}"#).unwrap_err().to_string();
    assert!(err.contains("unknown field `nmae`"), "{err}");
    let mut config = full_config();
    config.listen.proxy = "8080".into();
    config.upstream.url = "127.0.0.1:3000".into();
    config.identity.trusted_proxies = vec!["10.0.0.0/33".into()];
    config.identity.jwt.as_mut().unwrap().jwks_file = None;
    config.capture.session_idle_seconds = 0;
    let err = config.validate().unwrap_err().to_string();
    for needle in [
        "capture.sessionIdleSeconds: must be at least 1",
        "listen.proxy: '8080'",
        "upstream.url: '127.0.0.1:3000' must start with http://",
        "identity.trustedProxies[0]",
        "identity.jwt: set jwksFile",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

fn sample_record() -> AuditRecord {
    let ts: jiff::Timestamp = "2026-11-23T20:38:14.123456789Z".parse().unwrap();
    AuditRecord {
        timestamp: ts,
        observed_timestamp: ts,
        level: Level::Info,
        event_type: EventType::McpResponseError,
        response_code: Some(200),
        response_type: Some("sse".into()),
        headers: crate::record::HeaderSet::new([("content-type".into(), "text/event-stream".into())].into()).into(),
        user_id: Some("alice".into()),
        team_id: Some("platform".into()),
        org_id: None,
        identity_source: IdentitySource::Jwt,
        tool_id: Some("github/search@ab12".into()),
        tool_name: Some("search".into()),
        correlation_id: "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        span_id: "00f067aa0ba902b7".parse().unwrap(),
        request_id: RequestId {
            jsonrpc: Some("7".into()),
            unique: "0193a0c4-0000-7000-8000-000000000000".parse().unwrap(),
        },
        session_id: Some("s-1".into()),
        method: Some("tools/call".into()),
        protocol_version: Some("2025-11-25".into()),
        client_ip: Some("10.1.2.3".into()),
        direction: Direction::ServerToClient,
        transport: crate::common::Transport::StreamableHttp,
        server: std::sync::Arc::new(ServerIdentity {
            name: "github".into(),
            namespace: Some("tools".into()),
            pod: Some("github-0".into()),
            version: None,
        }),
        duration_ns: Some(1_500_000),
        body_bytes: 120,
        body: Some(crate::record::RawJson::from_value(
            &json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32602, "message": "[REDACTED:email]"}}),
        )),
        body_truncated: false,
        redaction: RedactionSummary { kinds: [("email".to_owned(), 1)].into(), payload_dropped: None },
        error: Some(RecordError {
            kind: "-32602".into(),
            code: Some(-32602),
            message: Some("[REDACTED:email]".into()),
        }),
        governance: None,
    }
}

#[test]
fn audit_record_round_trips_and_keeps_nanoseconds() {
    let record = sample_record();
    let text = serde_json::to_string(&record).unwrap();
    assert!(text.contains(r#""timestamp":"2026-11-23T20:38:14.123456789Z""#), "{text}");
    assert!(text.contains(r#""eventType":"mcp-response-error""#));
    assert!(text.contains(r#""level":"INFO""#));
    assert!(text.contains(r#""error":{"type":"-32602""#));
    let back: AuditRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, record);
    assert_eq!(record.redaction.total(), 1);
}

#[test]
fn event_and_level_names_match_their_serde_names() {
    for event in EventType::ALL {
        assert_eq!(serde_json::to_value(event).unwrap(), json!(event.as_str()));
    }
    let levels = [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Fatal];
    let numbers: Vec<i32> = levels.iter().map(|l| l.severity_number()).collect();
    assert_eq!(numbers, [1, 5, 9, 13, 17, 21]);
    for level in levels {
        assert_eq!(serde_json::to_value(level).unwrap(), json!(level.as_str()));
    }
}

#[test]
fn the_published_record_schema_accepts_a_real_record() {
    let schema: Value = serde_json::from_str(include_str!("../schema/audit-record.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let record = serde_json::to_value(sample_record()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&record).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = record;
    bad["eventType"] = json!("mcp-something");
    assert!(!validator.is_valid(&bad));
}

#[test]
fn a_record_written_field_by_field_is_its_serde_json_text() {
    use crate::record::{Decision, Governance, ToolChange};
    let full = sample_record();
    let mut every = full.clone();
    every.org_id = Some("acme".into());
    every.identity_source = IdentitySource::TrustedGateway;
    every.server = std::sync::Arc::new(ServerIdentity { version: Some("1.2.0".into()), ..(*full.server).clone() });
    every.headers = crate::record::HeaderSet::new(
        [
            ("x-odd".into(), "quote \" backslash \\ tab \t bell \u{7} ünï".into()),
            ("accept".into(), "application/json, text/event-stream".into()),
        ]
        .into(),
    )
    .into();
    every.body_truncated = true;
    every.redaction.payload_dropped = Some("rule:blob".into());
    every.governance = Some(Governance {
        decision: Some(Decision {
            control: "access".into(),
            policy: Some("tools/deny-writes".into()),
            rule: None,
            mode: "enforce".into(),
            enforced: true,
            action: "call".into(),
            reason: "tool \"delete\" is denied".into(),
        }),
        tool_change: Some(ToolChange {
            change: "changed".into(),
            approved_hash: Some("aa".into()),
            previous_hash: None,
            hash: Some("bb".into()),
            changed_fields: vec!["description".into()],
            policy: "warn".into(),
        }),
        tools: vec![],
    });
    let minimal = AuditRecord {
        response_code: None,
        response_type: None,
        headers: Default::default(),
        user_id: None,
        team_id: None,
        org_id: None,
        identity_source: IdentitySource::Unverified,
        tool_id: None,
        tool_name: None,
        request_id: RequestId { jsonrpc: None, unique: uuid::Uuid::nil() },
        session_id: None,
        method: None,
        protocol_version: None,
        client_ip: None,
        direction: Direction::Agent,
        transport: crate::common::Transport::Sse,
        server: Default::default(),
        duration_ns: None,
        body: None,
        redaction: RedactionSummary::default(),
        error: Some(RecordError { kind: "upstream_unavailable".into(), code: None, message: None }),
        ..full.clone()
    };
    // A traceparent held beside the shared set is written in its place among the names.
    let mut beside = every.clone();
    beside.headers = Headers::with_traceparent(
        every.headers.shared().clone(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    for record in [full, every, minimal, beside] {
        let mut out = Vec::new();
        record.write_json(&mut out);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), serde_json::to_string(&record).unwrap());
        assert_eq!(serde_json::from_slice::<AuditRecord>(&out).unwrap(), record);
    }
}

#[test]
fn enum_names_are_their_serde_names() {
    use crate::common::Transport;
    for d in [Direction::ClientToServer, Direction::ServerToClient, Direction::Agent] {
        assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
    }
    for s in [IdentitySource::Jwt, IdentitySource::TrustedGateway, IdentitySource::Labels, IdentitySource::Unverified] {
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    for t in [Transport::StreamableHttp, Transport::Sse] {
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
    for e in EventType::ALL {
        assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
    }
    for l in [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Fatal] {
        assert_eq!(serde_json::to_value(l).unwrap(), l.as_str());
    }
}

/// A set with `traceparent` beside it reads, writes and compares as the map with it
/// inserted, wherever its name falls among the others.
#[test]
fn headers_hold_a_traceparent_beside_the_shared_set_as_one_map() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let sets: [&[(&str, &str)]; 4] = [
        &[],
        &[("accept", "*/*"), ("host", "h")],
        &[("x-a", "1"), ("x-b", "2")],
        &[("accept", "*/*"), ("user-agent", "u"), ("zz", "z")],
    ];
    for set in sets {
        let shared: HeaderSet = std::sync::Arc::new(set.iter().map(|&(n, v)| (n.into(), v.into())).collect());
        let beside = Headers::with_traceparent(shared.clone(), tp);
        let mut whole = std::collections::BTreeMap::clone(&shared);
        whole.insert("traceparent".into(), tp.into());
        let whole = Headers::from(HeaderSet::new(whole));
        assert!(std::sync::Arc::ptr_eq(beside.shared(), &shared), "kept beside, not copied: {set:?}");
        assert_eq!(beside, whole, "{set:?}");
        assert!(beside.iter().eq(whole.iter()), "{set:?}");
        assert_eq!((beside.len(), beside.is_empty()), (set.len() + 1, false));
        assert_eq!(beside.get("traceparent"), Some(tp));
        assert!(format!("{beside:?}").contains(tp), "debug output shows the value: {beside:?}");
        assert_eq!(beside.get("x-a"), whole.get("x-a"));
        assert_eq!(serde_json::to_string(&beside).unwrap(), serde_json::to_string(&whole).unwrap());
        let back: Headers = serde_json::from_str(&serde_json::to_string(&beside).unwrap()).unwrap();
        assert_eq!(back, beside);
        assert_ne!(beside, Headers::from(shared.clone()), "{set:?}");
    }
    // What cannot be held inline (another length, a set that has its own traceparent) is
    // inserted into a copy: the same map either way.
    let with_own: HeaderSet = HeaderSet::new([("traceparent".into(), "own".into())].into());
    for (shared, value) in [
        (HeaderSet::default(), "00-short"),
        (HeaderSet::default(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 "),
        (with_own, tp),
    ] {
        let headers = Headers::with_traceparent(shared.clone(), value);
        assert!(!std::sync::Arc::ptr_eq(headers.shared(), &shared));
        assert_eq!(headers.get("traceparent"), Some(value));
        assert_eq!(headers.len(), 1);
        assert_eq!(serde_json::to_value(&headers).unwrap(), json!({"traceparent": value}));
    }
    assert!(Headers::default().is_empty());
}

/// Headers written from a writer's remembered texts are the headers written afresh: for
/// sets that repeat, alternate and outnumber what it keeps, with a traceparent beside them
/// sorting before, between and after their names.
#[test]
fn records_written_with_remembered_header_texts_are_written_as_without() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let set = |names: &[&str], n: usize| -> HeaderSet {
        HeaderSet::new(names.iter().map(|&name| (name.into(), format!("v\"{n}\\é").into())).collect())
    };
    let mut sets: Vec<HeaderSet> = vec![
        set(&["accept", "host"], 0),
        set(&["x-a", "zz"], 1),
        set(&["accept", "user-agent"], 2),
        set(&["traceparent"], 3),
        set(&[], 4),
    ];
    sets.extend((5..20).map(|n| set(&["content-type", "x-n"], n)));
    let mut texts = crate::HeaderTexts::default();
    let mut record = sample_record();
    for round in 0..3 {
        for (n, shared) in sets.iter().enumerate() {
            for headers in [Headers::from(shared.clone()), Headers::with_traceparent(shared.clone(), tp)] {
                record.headers = headers;
                let (mut cached, mut fresh) = (Vec::new(), Vec::new());
                record.write_json_cached(&mut cached, &mut texts);
                record.write_json(&mut fresh);
                let (cached, fresh) = (String::from_utf8(cached).unwrap(), String::from_utf8(fresh).unwrap());
                assert_eq!(cached, fresh, "round {round}, set {n}");
                assert_eq!(serde_json::from_str::<AuditRecord>(&cached).unwrap(), record);
            }
        }
    }
}
