//! `make bench` (governance part): the cost of the access decision for one `tools/call`
//! with 100 rules (target under 2 µs), measured in the worst case (no rule matches, every
//! rule is tried) and a typical case, plus the whole per-request check in the proxy
//! (JSON-RPC parse + decision) next to a plain parse of the same body measured in the same
//! run, because this machine is shared and noisy.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_ledger_agent::govern::access::AccessRules;
use mcp_ledger_agent::govern::{Caller, Governance, Rules};
use mcp_ledger_agent::proxy::govern::plan;
use mcp_ledger_crds::AgentConfig;
use mcp_ledger_crds::access::{AccessRule, Effect, EnforcementMode, McpAccessPolicySpec, Subject, SubjectKind};
use mcp_ledger_crds::config::NamedAccessPolicy;

/// 100 rules over 4 policies: users, groups, service accounts and claims, exact tool names
/// and globs, allow and deny; none of them matches `nobody`.
fn config() -> AgentConfig {
    let mut c = AgentConfig::default();
    c.server.name = "github-issues".into();
    c.access = (0..4)
        .map(|p| NamedAccessPolicy {
            name: format!("tools/policy-{p}"),
            spec: McpAccessPolicySpec {
                mode: if p == 0 { EnforcementMode::Enforce } else { EnforcementMode::Observe },
                servers: vec!["github-*".into()],
                default_effect: Effect::Deny,
                rules: (0..25)
                    .map(|i| {
                        let n = p * 25 + i;
                        let subject = match n % 4 {
                            0 => Subject { kind: SubjectKind::User, name: format!("user-{n}"), claim: None },
                            1 => Subject { kind: SubjectKind::Group, name: format!("team-{n}"), claim: None },
                            2 => Subject {
                                kind: SubjectKind::ServiceAccount,
                                name: format!("agents/bot-{n}"),
                                claim: None,
                            },
                            _ => Subject {
                                kind: SubjectKind::Claim,
                                name: format!("dept-{n}"),
                                claim: Some("department".into()),
                            },
                        };
                        AccessRule {
                            name: format!("rule-{n}"),
                            effect: if n % 5 == 0 { Effect::Deny } else { Effect::Allow },
                            subjects: vec![subject],
                            servers: vec![],
                            tools: vec![format!("tool_{n}"), format!("prefix_{n}_*")],
                        }
                    })
                    .collect(),
            },
        })
        .collect();
    c
}

fn per_call(d: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let secs: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let d = Duration::from_secs_f64(secs);
    let config = config();
    let gov = Governance::new(Rules::from_config(&config));
    let rules = AccessRules::new(&config.access, &config.server.name);
    let groups: Vec<String> = ["devs", "oncall", "team-1"].iter().map(|s| (*s).to_owned()).collect();
    let claims: Vec<(String, String)> = (0..10)
        .map(|i| (format!("claim{i}"), format!("value{i}")))
        .chain([("department".into(), "dept-3".into())])
        .collect();
    let nobody = Caller { user: Some("nobody"), groups: &groups, claims: &claims };
    let member = Caller { user: Some("carol"), groups: &groups, claims: &claims };

    println!("mcp-ledger governance benchmark (one core, 100 access rules in 4 policies, {secs} s per measurement)");
    let worst = per_call(d, || {
        rules.denials(black_box(&nobody), black_box("search_issues"), |v| {
            black_box(v);
        });
    });
    println!("  decision, no rule matches (all 100 tried)   {worst:>8.0} ns   (target < 2000 ns)");
    let typical = per_call(d, || {
        rules.denials(black_box(&member), black_box("tool_1"), |v| {
            black_box(v);
        });
    });
    println!("  decision, a group rule allows               {typical:>8.0} ns");
    let with_records = per_call(d, || {
        black_box(gov.check_request(black_box(&nobody), "tools/call", Some(black_box("search_issues"))));
    });
    println!("  decision + the 4 denial records it yields   {with_records:>8.0} ns");

    let body = br#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"flaky test in payments","limit":20},"_meta":{"progressToken":17}}}"#;
    let parse = per_call(d, || {
        black_box(mcp_ledger_agent::mcp::jsonrpc::parse(black_box(body)).unwrap());
    });
    let whole = per_call(d, || {
        black_box(plan(&gov, black_box(body), &nobody));
    });
    println!("  JSON-RPC parse of the request (baseline)    {parse:>8.0} ns");
    println!("  proxy check: parse + decide + refusal       {whole:>8.0} ns   ({:.2}x the parse alone)", whole / parse);
}
