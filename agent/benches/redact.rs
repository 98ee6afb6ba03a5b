//! `make bench` (redaction part): throughput of the redaction engine with every detector
//! on, over realistic MCP payloads, on one core; and the time for a typical 1 KiB clean
//! message. Bodies are parsed beforehand, into the tree the agent redacts (borrowing from
//! the message text): this measures redaction, not JSON parsing.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_ledger_agent::json::Node;
use mcp_ledger_agent::redact::Redactor;
use serde_json::{Value, json};

fn tools_list() -> Value {
    let tools: Vec<Value> = (0..40)
        .map(|i| {
            json!({"name": format!("tool_{i}"), "title": format!("Tool number {i}"),
               "description": "Searches the issue tracker for issues matching a query and returns the title, state, labels and assignee of each match, newest first.",
               "inputSchema": {"type": "object", "properties": {"query": {"type": "string", "description": "Free-text query"}, "limit": {"type": "integer", "minimum": 1, "maximum": 100}}, "required": ["query"]},
               "annotations": {"readOnlyHint": true}})
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}})
}

fn prose_result() -> Value {
    let text = "The deployment finished at 2026-11-23T20:38:14Z after 42 steps. Pods web-7f9c4d and web-8a1b2c are ready; \
                the previous revision is kept for rollback. Latency p99 dropped from 180 ms to 120 ms and the error ratio is 0.02 %. "
        .repeat(8);
    json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": text}], "isError": false}})
}

fn code_result() -> Value {
    let code = "fn handle(req: Request) -> Response {\n    let user = req.user_id();\n    let rows = db.query(\"SELECT id, title FROM issues WHERE owner = $1\", &[&user]);\n    Response::json(rows)\n}\n".repeat(10);
    json!({"jsonrpc": "2.0", "id": 9, "result": {"content": [{"type": "text", "text": code}]}})
}

fn with_secrets() -> Value {
    json!({"jsonrpc": "2.0", "id": 11, "result": {"content": [{"type": "text", "text":
        "config: AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nDB_PASSWORD=s3cr3t-Passw0rd!\ncontact ops@example.com or +44 20 7946 0958; \
         token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 expires soon"}]}})
}

fn one_kib_clean() -> Value {
    let v = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search_issues", "arguments": {
        "query": "flaky test in the payments service after the last release", "limit": 20, "labels": ["bug", "ci", "payments"],
        "since": "2026-11-01", "sort": "updated", "include_closed": false,
        "context": "The nightly pipeline failed three times this week in the integration stage; the failures all involve the refund flow and a timeout talking to the ledger service. Find related issues and summarise what was tried. Prefer issues with a linked pull request, and list for each the owner, the last comment and whether a workaround was agreed. Ignore duplicates that were closed without a fix; mention them only as a count at the end of the answer."},
        "_meta": {"progressToken": 3, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}});
    let size = v.to_string().len();
    assert!((700..=1400).contains(&size), "the 'typical 1 KiB' message is {size} bytes");
    v
}

fn measure(redactor: &Redactor, msgs: &[Value], min_time: Duration) -> (f64, f64) {
    let texts: Vec<String> = msgs.iter().map(Value::to_string).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let trees: Vec<Node> = texts.iter().map(|t| Node::parse(t.as_bytes()).expect("JSON")).collect();
    let mut iterations = 0u64;
    let start = Instant::now();
    let mut summary = BTreeMap::new();
    while start.elapsed() < min_time {
        for m in &trees {
            let mut v = m.clone();
            redactor.node(&mut v, &mut summary);
            black_box(&v);
        }
        iterations += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Subtract the cost of cloning the trees, measured alone.
    let clone_start = Instant::now();
    for _ in 0..iterations {
        for m in &trees {
            black_box(m.clone());
        }
    }
    let net = (elapsed - clone_start.elapsed().as_secs_f64()).max(1e-9);
    let mb_s = (bytes as f64 * iterations as f64) / net / 1e6;
    let per_msg_us = net / (iterations as f64 * msgs.len() as f64) * 1e6;
    (mb_s, per_msg_us)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let secs: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    // Every detector on (IP addresses are off by default).
    let policy = mcp_ledger_crds::redaction::McpRedactionPolicySpec { redact_ip_addresses: true, ..Default::default() };
    let redactor = Redactor::new(&policy);
    let mix = vec![tools_list(), prose_result(), code_result(), with_secrets(), one_kib_clean()];
    let d = Duration::from_secs_f64(secs);
    println!("mcp-ledger redaction benchmark (one core, every detector on, {secs} s per measurement)");
    let (mb_s, _) = measure(&redactor, &mix, d);
    println!("  realistic MCP payload mix   {mb_s:>8.1} MB/s   (target >= 200 MB/s per core)");
    // Each payload of the mix alone, to see where the time goes.
    let names = ["tools/list result", "prose result", "code result", "secrets result", "1 KiB tools/call"];
    for (name, m) in names.iter().zip(&mix) {
        let bytes = m.to_string().len();
        let (mb_s, us) = measure(&redactor, std::slice::from_ref(m), d / 3);
        println!("    {name:<24} {bytes:>6} B {mb_s:>8.1} MB/s {us:>8.2} µs");
    }
    let (_, us) = measure(&redactor, &[one_kib_clean()], d);
    println!("  typical 1 KiB clean message {us:>8.2} µs    (target <= 5 µs)");
    let (mb_s, _) = measure(&redactor, &[with_secrets()], d);
    println!("  message full of secrets     {mb_s:>8.1} MB/s");
}
