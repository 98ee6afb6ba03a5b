//! JSON-RPC parsing of untrusted bodies: never panics, and every accessor is total.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = mcp_ledger_agent::mcp::jsonrpc::parse(data) {
        for m in &messages {
            let _ = (m.method(), m.id_text(), m.tool_name(), m.meta_traceparent(), m.protocol_version(), m.server_info(), m.error());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mcp_ledger_agent::mcp::trace::TraceContext::parse(text);
    }
});
