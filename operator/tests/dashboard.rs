//! The Grafana dashboard and the alert rules query only metrics that the agent or the
//! operator export (checked against the metric families of both binaries' registries,
//! including families without a sample yet), every query is valid PromQL (promtool checks
//! the rules file as it is and the dashboard's queries as recording rules), and the
//! dashboard and rules cover what users watch. No Grafana server installs here, so the
//! dashboard JSON is type-checked against Grafana's own published `Dashboard` type
//! (npm `@grafana/schema`, with the TypeScript compiler: unknown fields, wrong types and
//! missing required fields are errors).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn files() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/mcp-ledger/files")
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(files().join("mcp-ledger-dashboard.json")).unwrap()).unwrap()
}

fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((panel["title"].as_str().unwrap().to_owned(), target["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

fn rules() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(files().join("mcp-ledger.rules.yaml")).unwrap()).unwrap()
}

fn rule_queries() -> Vec<(String, String)> {
    let rules = rules();
    rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| (r["alert"].as_str().unwrap().to_owned(), r["expr"].as_str().unwrap().to_owned()))
        .collect()
}

/// Metric names a PromQL expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("mcp_ledger_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expr[start..end].to_owned());
        i = end;
    }
    names
}

fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = mcp_ledger_agent::metrics::Metrics::new().names().into_iter().collect();
    names.extend(mcp_ledger_operator::metrics::Metrics::new().names());
    // Histograms are queried through their series.
    let histograms: Vec<String> = names.iter().filter(|n| n.ends_with("_seconds")).cloned().collect();
    for h in histograms {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{suffix}"));
        }
    }
    names
}

#[test]
fn every_queried_metric_is_exported() {
    let exported = exported();
    for (title, expr) in dashboard_queries().into_iter().chain(rule_queries()) {
        let used = metric_names(&expr);
        assert!(!used.is_empty(), "{title}: queries no mcp-ledger metric");
        for name in used {
            assert!(exported.contains(&name), "{title}: {name} is not exported by the agent or the operator");
        }
    }
}

#[test]
fn every_query_is_valid_promql() {
    let out = Command::new("promtool").arg("check").arg("rules").arg(files().join("mcp-ledger.rules.yaml")).output();
    let out = out.expect("promtool is installed by `make peers`");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The dashboard's queries, with Grafana's variables filled in, as recording rules.
    let rules: Vec<serde_yaml::Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let expr = expr.replace("$__rate_interval", "5m").replace("$server", ".*");
            serde_yaml::to_value(serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr})).unwrap()
        })
        .collect();
    let file = std::env::temp_dir().join(format!("mcp-ledger-dashboard-queries-{}.yaml", std::process::id()));
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let out = Command::new("promtool").arg("check").arg("rules").arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_dashboard_and_alerts_cover_what_users_watch() {
    let titles: Vec<String> =
        dashboard()["panels"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_lowercase()).collect();
    for wanted in [
        "requests/s",
        "error ratio",
        "latency",
        "tool calls",
        "redactions",
        "dropped",
        "buffer",
        "injections",
        "approval",
        "changed tools",
        "webhook",
    ] {
        assert!(titles.iter().any(|t| t.contains(wanted)), "no dashboard panel about {wanted}: {titles:?}");
    }
    let alerts: Vec<String> = rule_queries().into_iter().map(|(a, _)| a).collect();
    for wanted in [
        "ErrorRatio",
        "RecordsDropped",
        "BufferNearlyFull",
        "ToolDefinitionChanged",
        "UnapprovedServerTraffic",
        "WebhookFailures",
    ] {
        assert!(alerts.iter().any(|a| a.contains(wanted)), "no alert about {wanted}: {alerts:?}");
    }
    for rule in rules()["groups"][0]["rules"].as_sequence().unwrap() {
        assert!(rule["annotations"]["summary"].is_string() && rule["annotations"]["description"].is_string());
        assert!(rule["labels"]["severity"].is_string());
    }
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `tsc` on `dashboard` checked with `satisfies Dashboard`; returns its report on failure.
fn grafana_type_check(dashboard: &str, name: &str) -> Result<(), String> {
    let peers = repo().join("tests/peers/node_modules");
    let tsc = peers.join("typescript/bin/tsc");
    assert!(tsc.exists(), "{} is missing: run `make peers` (make test does)", tsc.display());
    let schema = peers.join("@grafana/schema/dist/types/index");
    let dir = std::env::temp_dir().join(format!("mcp-ledger-dashboard-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboard.ts");
    std::fs::write(
        &file,
        format!(
            "import type {{ Dashboard }} from {:?};\nexport const dashboard = ({dashboard}) satisfies Dashboard;\n",
            schema.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new("node")
        .arg(&tsc)
        .args(["--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", "--module", "esnext"])
        .args(["--moduleResolution", "bundler"])
        .arg(&file)
        .output()
        .expect("node runs the TypeScript compiler");
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_by_grafanas_published_types() {
    let text = std::fs::read_to_string(files().join("mcp-ledger-dashboard.json")).unwrap();
    if let Err(report) = grafana_type_check(&text, "shipped") {
        panic!("the dashboard does not satisfy @grafana/schema's Dashboard type:\n{report}");
    }
    // The check can fail: a misspelled panel field and a wrong type are caught.
    let mut broken = dashboard();
    broken["panels"][0]["gridpos"] = serde_json::json!({"h": 8, "w": 12, "x": 0, "y": 0});
    broken["panels"][1]["title"] = serde_json::json!(7);
    let report = grafana_type_check(&broken.to_string(), "broken").expect_err("a broken dashboard fails the check");
    assert!(report.contains("gridpos"), "{report}");
    assert!(report.contains("not assignable to type 'string'"), "{report}");
}
