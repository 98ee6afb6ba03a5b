//! The agent's JSON parser on untrusted bytes: never panics, accepts exactly what
//! serde_json accepts, and reads the same values (the last of a repeated key, as
//! `Value` keeps it).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_ledger_agent::json::Node;

fuzz_target!(|data: &[u8]| {
    let ours = Node::parse(data).ok().map(|n| n.to_value());
    let theirs = serde_json::from_slice::<serde_json::Value>(data).ok();
    assert_eq!(ours, theirs);
});
