use serde_json::json;

use super::*;
use crate::export::proto::{self, Resource, ResourceLogs, ScopeLogs};

fn audit_record() -> mcp_ledger_crds::AuditRecord {
    serde_json::from_value(json!({
        "timestamp": "2026-11-24T10:00:00.123456789Z",
        "observedTimestamp": "2026-11-24T10:00:00.2Z",
        "level": "ERROR",
        "eventType": "mcp-response-error",
        "responseCode": 200,
        "userId": "alice",
        "identitySource": "jwt",
        "toolName": "search",
        "correlationId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "00f067aa0ba902b7",
        "requestId": {"jsonrpc": "7", "unique": "0193a0c4-0000-7000-8000-000000000000"},
        "method": "tools/call",
        "direction": "server-to-client",
        "transport": "streamable-http",
        "server": {"name": "github", "namespace": "tools"},
        "bodyBytes": 120,
        "body": {"jsonrpc": "2.0", "id": 7, "error": {"code": -32602, "message": "=cmd|' /C calc'!A0, \"quoted\""}},
        "bodyTruncated": false,
        "redaction": {"kinds": {"email": 1}},
        "error": {"type": "-32602", "code": -32602, "message": "=cmd|' /C calc'!A0, \"quoted\""}
    }))
    .expect("a valid audit record")
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: Some(proto::string(value)) }
}

/// An enriched request of two resources: a sidecar's audit record and a container log line.
fn request() -> Vec<u8> {
    let audit = crate::export::otlp::log_record(&audit_record());
    let log = LogRecord {
        time_unix_nano: 1_795_000_000_000_000_000,
        severity_text: "WARN".into(),
        severity_number: 13,
        event_name: "container-log".into(),
        body: Some(proto::string("listening on :8080")),
        attributes: vec![kv(attr::EVENT_TYPE, "container-log"), kv(LOG_IOSTREAM, "stderr")],
        ..Default::default()
    };
    let resource = |extra: Vec<KeyValue>| {
        let mut attributes = vec![
            kv(resource::K8S_NAMESPACE_NAME, "tools"),
            kv(resource::K8S_POD_NAME, "github-7d9f-abcde"),
            kv("k8s.deployment.name", "github"),
        ];
        attributes.extend(extra);
        Some(Resource { attributes, dropped_attributes_count: 0 })
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: resource(vec![]),
                scope_logs: vec![ScopeLogs { log_records: vec![audit], ..Default::default() }],
                ..Default::default()
            },
            ResourceLogs {
                resource: resource(vec![kv(resource::K8S_CONTAINER_NAME, "server"), kv(attr::SERVER_NAME, "github")]),
                scope_logs: vec![ScopeLogs { log_records: vec![log], ..Default::default() }],
                ..Default::default()
            },
        ],
    }
    .encode_to_vec()
}

#[test]
fn each_record_becomes_one_json_line_with_resource_attributes_and_body() {
    let dir = crate::node::test_dir("files");
    let path = dir.join("records.jsonl");
    let mut sinks = FileSinks::open(Some(path.to_str().unwrap()), None).unwrap().expect("a sink");
    assert_eq!(sinks.write(0, &request()).unwrap(), (2, vec!["jsonl"]));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let audit = &lines[0];
    assert_eq!(audit["timestamp"], "2026-11-24T10:00:00.123456789Z");
    assert_eq!(audit["severity"], "ERROR");
    assert_eq!(audit["eventName"], "mcp-response-error");
    assert_eq!(audit["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(audit["spanId"], "00f067aa0ba902b7");
    assert_eq!(audit["resource"]["k8s.deployment.name"], "github");
    assert_eq!(audit["attributes"][attr::USER_ID], "alice");
    assert_eq!(audit["attributes"][attr::HTTP_RESPONSE_STATUS_CODE], 200);
    assert_eq!(audit["attributes"][attr::BODY_TRUNCATED], false);
    assert_eq!(audit["body"]["error"]["code"], -32602);
    let log = &lines[1];
    assert_eq!(log["eventName"], "container-log");
    assert_eq!(log["severityNumber"], 13);
    assert_eq!(log["body"], "listening on :8080");
    assert_eq!(log["resource"][resource::K8S_CONTAINER_NAME], "server");
    assert!(log.get("traceId").is_none(), "no trace id on a container log line: {log}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn csv_rows_have_the_header_once_quoted_neutralised_cells_and_no_body() {
    let dir = crate::node::test_dir("files");
    let path = dir.join("records.csv");
    let path = path.to_str().unwrap();
    let mut sinks = FileSinks::open(None, Some(path)).unwrap().expect("a sink");
    sinks.write(0, &request()).unwrap();
    // A restarted agent appends without a second header.
    drop(sinks);
    let mut sinks = FileSinks::open(None, Some(path)).unwrap().expect("a sink");
    sinks.write(1, &request()).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert_eq!(rows[0], COLUMNS.join(","));
    assert!(!text.contains("listening on"), "the body is never in CSV: {text}");
    let column = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    let audit = row(&crate::export::otlp::log_record(&audit_record()), &[kv("k8s.deployment.name", "github")]);
    assert_eq!(audit[column(attr::USER_ID)], "alice");
    assert_eq!(audit[column(WORKLOAD)], "deployment/github");
    assert_eq!(audit[column(attr::HTTP_RESPONSE_STATUS_CODE)], "200");
    assert_eq!(audit[column("traceId")], "4bf92f3577b34da6a3ce929d0e0e4736");
    // The error message starts with `=`: neutralised, and quoted for its comma and quotes.
    assert!(rows[1].contains(r#""'=cmd|' /C calc'!A0, ""quoted""""#), "{}", rows[1]);
    assert!(rows[2].contains(",stderr"), "the container log's stream: {}", rows[2]);
    assert!(rows[2].contains(",github,"), "the server from the resource: {}", rows[2]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_position_already_written_is_not_written_again_in_the_same_run() {
    let dir = crate::node::test_dir("files");
    let path = dir.join("records.jsonl");
    let mut sinks = FileSinks::open(Some(path.to_str().unwrap()), None).unwrap().expect("a sink");
    let payload = request();
    assert_eq!(sinks.write(4, &payload).unwrap().1, vec!["jsonl"]);
    // The collector failed and the relay rewound: the file already has position 4.
    assert_eq!(sinks.write(4, &payload).unwrap(), (2, vec![]));
    assert_eq!(sinks.write(5, &payload).unwrap().1, vec!["jsonl"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn no_file_sinks_without_paths_and_a_clear_error_for_a_bad_one() {
    assert!(FileSinks::open(None, None).unwrap().is_none());
    let err = FileSinks::open(Some("/nonexistent-dir-of-mcp-ledger/x.jsonl"), None).err().expect("an error");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn log_records_are_counted_without_decoding() {
    let payload = request();
    assert_eq!(proto::count_log_records(&payload), Some(2));
    assert_eq!(proto::count_log_records(&[]), Some(0));
    let big = crate::export::otlp::encode_request(&vec![audit_record(); 300], &[]).encode_to_vec();
    assert_eq!(proto::count_log_records(&big), Some(300));
    // Cut short: malformed, not a wrong count.
    assert_eq!(proto::count_log_records(&payload[..payload.len() - 3]), None);
}
