use mcp_ledger_crds::server::{Approval, ApprovalState, McpServerStatus, ToolStatus};
use serde_json::json;

use super::*;
use crate::inject::tests::server;

fn inventoried(name: &str, ns: &str) -> McpServer {
    let mut s = server(name, json!("mcp"));
    s.metadata.namespace = Some(ns.into());
    s.spec.owner = Some("platform@example.com".into());
    s.status = Some(McpServerStatus {
        added_by: Some("alice".into()),
        approval: Some(Approval {
            state: ApprovalState::Rejected,
            reviewed_by: Some("sec".into()),
            reason: Some("=HYPERLINK(\"http://evil\")".into()),
            ..Default::default()
        }),
        tools: vec![
            ToolStatus { name: "search".into(), definition_hash: "a".into(), ..Default::default() },
            ToolStatus { name: "create_issue".into(), definition_hash: "b".into(), ..Default::default() },
        ],
        ..Default::default()
    });
    s
}

#[test]
fn inventory_rows_are_sorted_and_flatten_the_status() {
    let rows = inventory_rows(&[inventoried("slack", "b"), inventoried("github", "a"), inventoried("docs", "b")]);
    let ids: Vec<(&str, &str)> = rows.iter().map(|r| (r.namespace.as_str(), r.name.as_str())).collect();
    assert_eq!(ids, [("a", "github"), ("b", "docs"), ("b", "slack")]);
    assert_eq!(rows[0].approval, "Rejected");
    assert_eq!(rows[0].added_by, "alice");
    assert_eq!(rows[0].tools, ["search", "create_issue"]);
    let bare = inventory_rows(&[server("new", json!("mcp"))]);
    assert_eq!((bare[0].approval.as_str(), bare[0].errors, bare[0].pods), ("Pending", 0, 0));
}

#[test]
fn the_csv_has_a_header_one_row_per_server_and_no_formulas() {
    let csv = inventory_csv(&inventory_rows(&[inventoried("github", "a")]));
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], CSV_HEADER.join(","));
    assert_eq!(lines.len(), 3, "header, one row, final line break");
    assert!(lines[1].starts_with("a,github,platform@example.com,"), "{}", lines[1]);
    assert!(lines[1].contains("\"'=HYPERLINK(\"\"http://evil\"\")\""), "a formula is neutralised: {}", lines[1]);
    assert!(lines[1].contains(",2,search create_issue,"), "{}", lines[1]);
}

#[test]
fn the_namespace_parameter_must_be_a_namespace_name() {
    assert_eq!(namespace_param(None), Ok(None));
    assert_eq!(namespace_param(Some("x=1&namespace=tools")), Ok(Some("tools".into())));
    assert!(namespace_param(Some("namespace=../etc")).is_err());
    assert!(namespace_param(Some("namespace=")).is_err());
}
