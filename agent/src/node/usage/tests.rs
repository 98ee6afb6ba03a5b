use super::*;
use crate::export::proto::{self, AnyValue, LogRecord, Resource, ResourceLogs, ScopeLogs};

fn s(v: &str) -> Option<AnyValue> {
    Some(proto::string(v))
}

fn record(secs: u64, attrs: &[(&str, &str)]) -> LogRecord {
    LogRecord {
        time_unix_nano: secs * 1_000_000_000,
        attributes: attrs.iter().map(|(k, v)| KeyValue { key: (*k).to_owned(), value: s(v) }).collect(),
        ..Default::default()
    }
}

fn request(namespace: Option<&str>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    let resource = namespace.map(|ns| Resource {
        attributes: vec![KeyValue { key: "k8s.namespace.name".into(), value: s(ns) }],
        dropped_attributes_count: 0,
    });
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

const T0: u64 = 1_795_000_000;

#[test]
fn records_become_usage_per_server() {
    let mut agg = Aggregator::default();
    agg.observe(&request(
        Some("tools"),
        vec![
            record(T0, &[(attr::SERVER_NAME, "github"), (attr::EVENT_TYPE, "mcp-request"), (attr::USER_ID, "alice")]),
            record(T0 + 5, &[(attr::SERVER_NAME, "github"), (attr::EVENT_TYPE, "mcp-request")]),
            record(T0 + 2, &[(attr::SERVER_NAME, "github"), (attr::EVENT_TYPE, "mcp-request"), (attr::USER_ID, "old")]),
            record(
                T0 + 6,
                &[
                    (attr::SERVER_NAME, "github"),
                    (attr::EVENT_TYPE, "mcp-response-error"),
                    (attr::ERROR_MESSAGE, "rate limited"),
                    (attr::SERVER_VERSION, "1.4.2"),
                    (attr::MCP_PROTOCOL_VERSION, "2025-11-25"),
                ],
            ),
            record(
                T0 + 7,
                &[
                    (attr::SERVER_NAME, "github"),
                    (attr::EVENT_TYPE, "mcp-response-success"),
                    (attr::REDACTION_KINDS, "{\"email\":1}"),
                ],
            ),
            record(T0, &[(attr::EVENT_TYPE, "mcp-request")]), // no server: ignored
        ],
    ));
    agg.observe(&request(
        None,
        vec![record(
            T0,
            &[(attr::SERVER_NAME, "slack"), (attr::SERVER_NAMESPACE, "chat"), (attr::EVENT_TYPE, "mcp-request")],
        )],
    ));
    let report = agg.take("node-1").expect("usage");
    assert_eq!(report.node, "node-1");
    assert_eq!(report.servers.len(), 2);
    let slack = &report.servers[0];
    assert_eq!((slack.namespace.as_str(), slack.name.as_str()), ("chat", "slack"));
    let github = &report.servers[1];
    assert_eq!((github.namespace.as_str(), github.name.as_str()), ("tools", "github"));
    assert_eq!(github.last_used_at.as_ref().unwrap().0.as_second() as u64, T0 + 5);
    assert_eq!(github.last_used_by.as_deref(), Some("unverified"), "the latest request had no verified identity");
    assert_eq!(github.errors, 1);
    assert_eq!(github.last_error_message.as_deref(), Some("rate limited"));
    assert_eq!(github.sanitized, 1);
    let info = github.server_info.as_ref().unwrap();
    assert_eq!((info.version.as_deref(), info.protocol_version.as_deref()), (Some("1.4.2"), Some("2025-11-25")));
    assert!(agg.take("node-1").is_none(), "taken reports start over");
}

#[test]
fn an_undelivered_report_is_merged_back_with_what_came_since() {
    let mut agg = Aggregator::default();
    let req = |secs, event| {
        request(
            Some("tools"),
            vec![record(secs, &[(attr::SERVER_NAME, "github"), (attr::EVENT_TYPE, event), (attr::USER_ID, "bob")])],
        )
    };
    agg.observe(&req(T0, "mcp-response-error"));
    agg.observe(&req(T0 + 1, "mcp-request"));
    let failed = agg.take("n").unwrap();
    agg.observe(&req(T0 + 3, "mcp-response-error"));
    agg.restore(failed);
    let report = agg.take("n").unwrap();
    let github = &report.servers[0];
    assert_eq!(github.errors, 2, "deltas add up");
    assert_eq!(github.last_used_at.as_ref().unwrap().0.as_second() as u64, T0 + 1);
    assert_eq!(github.last_error_at.as_ref().unwrap().0.as_second() as u64, T0 + 3);
}

#[test]
fn the_latest_complete_tool_list_is_reported() {
    let list =
        |hash: &str| format!(r#"[{{"name":"echo","definitionHash":"{hash}"}},{{"name":"add","definitionHash":"b"}}]"#);
    let (newer, older) = (list("new"), list("old"));
    let mut agg = Aggregator::default();
    agg.observe(&request(
        Some("tools"),
        vec![
            record(
                T0 + 9,
                &[(attr::SERVER_NAME, "github"), (attr::EVENT_TYPE, "mcp-response-success"), (attr::TOOLS, &newer)],
            ),
            record(
                T0 + 1,
                &[(attr::SERVER_NAME, "github"), (attr::EVENT_TYPE, "mcp-response-success"), (attr::TOOLS, &older)],
            ),
            record(
                T0 + 10,
                &[(attr::SERVER_NAME, "github"), (attr::EVENT_TYPE, "mcp-response-success"), (attr::TOOLS, "not json")],
            ),
        ],
    ));
    let report = agg.take("node-a").unwrap();
    let tools = report.servers[0].tools.clone().expect("the tool list");
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0].definition_hash, "new", "the later list wins, garbage is ignored");
    // Not delivered: restored, and kept when nothing newer came.
    agg.restore(report);
    assert_eq!(agg.take("node-a").unwrap().servers[0].tools.as_ref().unwrap()[0].definition_hash, "new");
}
