//! The redactor on untrusted JSON and text: never panics, and never leaves a value of a
//! secret-named key in place.
#![no_main]
use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_ledger_agent::redact::Redactor;

/// Compiled once: compiling every detector per input would measure regex compilation.
static REDACTOR: OnceLock<Redactor> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let redactor = REDACTOR.get_or_init(|| Redactor::new(&Default::default()));
    let mut summary = BTreeMap::new();
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(data) {
        redactor.json(&mut value, &mut summary);
        if let Some(obj) = value.as_object() {
            if let Some(p) = obj.get("password") {
                assert!(!p.is_string() || p == "[REDACTED:secret-key]");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = redactor.string(text, &mut summary);
    }
});
