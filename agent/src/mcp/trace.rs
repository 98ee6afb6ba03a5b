//! W3C Trace Context (`traceparent`): parsing and generation.

use std::fmt;

use mcp_ledger_crds::ids::hex_into;
use mcp_ledger_crds::record::{HexId, SpanId, TraceId};

/// A trace context: 16-byte trace id, 8-byte parent (span) id and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id, never all zeros.
    pub trace_id: [u8; 16],
    /// Span id of the caller, never all zeros.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`). Returns None for
    /// anything malformed, an all-zero id or the invalid version `ff`, as the W3C
    /// specification asks.
    pub fn parse(value: &str) -> Option<Self> {
        // The fields sit at fixed offsets: `vv-` `<32>-` `<16>-` `ff`, then (versions after
        // 00 only) more fields after a `-`. A `-` inside a field fails its hex digits.
        let text = value.trim();
        let b = text.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = &text[..2];
        if version.eq_ignore_ascii_case("ff") || b.len() > 55 && (version == "00" || b[55] != b'-') {
            return None;
        }
        HexId::<1>::parse(version)?;
        let trace_id = TraceId::parse(&text[3..35])?;
        let span_id = SpanId::parse(&text[36..52])?;
        let HexId([flags]) = HexId::<1>::parse(&text[53..55])?;
        if trace_id.is_zero() || span_id.is_zero() {
            return None;
        }
        Some(Self { trace_id: trace_id.0, span_id: span_id.0, flags })
    }

    /// A new random trace (sampled).
    pub fn random() -> Self {
        let mut trace_id = crate::ids::bytes16();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        Self { trace_id, span_id: random_span_id(), flags: 1 }
    }

    /// The same trace with a new span id: the context to send upstream from the agent.
    pub fn child(&self) -> Self {
        Self { span_id: random_span_id(), ..*self }
    }

    /// The `traceparent` value, `00-<32 hex>-<16 hex>-<2 hex>`, on the stack (one per
    /// proxied request).
    pub fn header_bytes(&self) -> [u8; 55] {
        let mut text = [b'-'; 55];
        text[..2].copy_from_slice(b"00");
        hex_into(&self.trace_id, &mut text[3..35]);
        hex_into(&self.span_id, &mut text[36..52]);
        hex_into(&[self.flags], &mut text[53..]);
        text
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.header_bytes()).expect("ASCII"))
    }
}

/// A random, non-zero span id.
pub fn random_span_id() -> [u8; 8] {
    loop {
        let id = crate::ids::next_u64().to_le_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Lower-case hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example_and_round_trips() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tc = TraceContext::parse(v).unwrap();
        assert_eq!(HexId(tc.trace_id).to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(HexId(tc.span_id).to_string(), "00f067aa0ba902b7");
        assert_eq!(tc.flags, 1);
        assert_eq!(tc.to_string(), v);
        let child = tc.child();
        assert_eq!(child.trace_id, tc.trace_id);
        assert_ne!(child.span_id, tc.span_id);
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A future version may carry more fields.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        // Surrounding whitespace is not part of the value.
        assert!(TraceContext::parse(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t").is_some());
    }

    #[test]
    fn random_contexts_are_valid_and_distinct() {
        let a = TraceContext::random();
        let b = TraceContext::random();
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
    }
}
