use std::io::Write;

use super::*;
use crate::export::proto::find_str as get;
use crate::node::buffer::{BufferConfig, FullPolicy};
use crate::node::enrich::PodFacts;

#[test]
fn server_container_lines_are_redacted_enriched_buffered_once() {
    let root = crate::node::test_dir("logs-root");
    let state = crate::node::test_dir("logs-state");
    let dir = root.join("tools_github-1_uid-1/server");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(root.join("tools_github-1_uid-1/mcp-ledger-agent")).unwrap();
    std::fs::create_dir_all(root.join("web_nginx-1_uid-2/nginx")).unwrap();
    let mut f = std::fs::File::create(dir.join("0.log")).unwrap();
    writeln!(f, r#"2026-11-24T10:00:00Z stdout F {{"level":"info","msg":"loaded","aws":"AKIAIOSFODNN7EXAMPLE"}}"#)
        .unwrap();
    writeln!(f, "2026-11-24T10:00:01Z stderr F mail ops@example.com about TICKET-4242").unwrap();
    std::fs::write(root.join("tools_github-1_uid-1/mcp-ledger-agent/0.log"), "2026-11-24T10:00:00Z stdout F agent\n")
        .unwrap();
    std::fs::write(root.join("web_nginx-1_uid-2/nginx/0.log"), "2026-11-24T10:00:00Z stdout F not mcp\n").unwrap();

    let mut cluster = Cluster::default();
    for (uid, server) in [("uid-1", Some("github")), ("uid-2", None)] {
        cluster.pods.insert(
            uid.into(),
            PodFacts {
                uid: uid.into(),
                server: server.map(Into::into),
                namespace: "tools".into(),
                ..Default::default()
            },
        );
    }
    let cluster = RwLock::new(cluster);
    let (buffer, _) = DiskBuffer::open(BufferConfig {
        dir: state.join("buffer"),
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
        full: FullPolicy::Block,
    })
    .unwrap();
    let buffer = Mutex::new(buffer);
    // github's own McpRedactionPolicy adds a rule to the built-in defaults.
    let policies = Mutex::new(crate::node::policies::Policies::new("mcp-ledger"));
    {
        let mut p = policies.lock().unwrap();
        p.relist_servers();
        p.apply_server("tools", "github", Some("github-extra".into()));
        p.servers_listed();
        p.relist_policies();
        let extra = mcp_ledger_crds::redaction::McpRedactionPolicySpec {
            custom_patterns: vec![mcp_ledger_crds::redaction::CustomPattern {
                name: "ticket".into(),
                regex: r"TICKET-\d{4}".into(),
                keywords: vec![],
                action: mcp_ledger_crds::redaction::Action::Mask,
            }],
            ..Default::default()
        };
        p.apply_policy("tools", "github-extra", extra);
    }
    let filter = |c: &RwLock<Cluster>| {
        let pods = c.read().unwrap().pods.clone();
        move |s: &Source| s.container != "mcp-ledger-agent" && pods.get(&s.uid).is_some_and(|p| p.server.is_some())
    };
    let mut tailer = Tailer::new(&root, load_positions(&state)).with_filter(filter(&cluster));
    let labels = IdentityLabels::default();
    // Not before the policies are listed: nothing read, the position stays.
    assert_eq!(tail_once(&mut tailer, &policies, &cluster, &labels, &buffer, &state).unwrap(), 0);
    assert_eq!(buffer.lock().unwrap().pending(), 0);
    policies.lock().unwrap().policies_listed();
    assert_eq!(tail_once(&mut tailer, &policies, &cluster, &labels, &buffer, &state).unwrap(), 2);
    assert_eq!(tail_once(&mut tailer, &policies, &cluster, &labels, &buffer, &state).unwrap(), 0);

    let entries = buffer.lock().unwrap().read(10).unwrap();
    assert_eq!(entries.len(), 1, "one request for the one container");
    let request = ExportLogsServiceRequest::decode(entries[0].1.as_slice()).unwrap();
    let rl = &request.resource_logs[0];
    let res = &rl.resource.as_ref().unwrap().attributes;
    assert_eq!(get(res, resource::K8S_CONTAINER_NAME), Some("server"));
    assert_eq!(get(res, attr::SERVER_NAME), Some("github"), "enriched from the pod map");
    let records = &rl.scope_logs[0].log_records;
    let wire = format!("{records:?}");
    assert!(!wire.contains("AKIAIOSFODNN7EXAMPLE"), "the key is redacted: {wire}");
    assert!(!wire.contains("ops@example.com"), "the email is redacted: {wire}");
    assert!(!wire.contains("TICKET-4242"), "the server's own rule applies: {wire}");
    assert!(wire.contains("loaded"), "the rest stays: {wire}");
    assert_eq!(get(&records[1].attributes, "log.iostream"), Some("stderr"));
    assert!(get(&records[0].attributes, attr::REDACTION_KINDS).is_some());

    // A restart resumes from the saved positions: nothing is repeated.
    let mut again = Tailer::new(&root, load_positions(&state)).with_filter(filter(&cluster));
    assert_eq!(tail_once(&mut again, &policies, &cluster, &labels, &buffer, &state).unwrap(), 0);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&state);
}
