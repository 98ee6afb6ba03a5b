//! The incremental SSE parser on untrusted streams: never panics, respects its bound, and
//! gives the same events however the stream is split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_ledger_agent::mcp::sse::Parser;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let mut whole = Parser::new(64);
    let mut a = Vec::new();
    whole.push(stream, &mut a);
    let cut_a = whole.finish();
    let mut parts = Parser::new(64);
    let mut b = Vec::new();
    let at = usize::from(split).min(stream.len());
    parts.push(&stream[..at], &mut b);
    parts.push(&stream[at..], &mut b);
    let cut_b = parts.finish();
    assert_eq!(a, b);
    assert_eq!(cut_a, cut_b);
    assert!(a.iter().all(|e| e.data.len() <= 64));
});
