//! The audit record as one line of compact JSON, written field by field.
//!
//! The agent writes every record it exports this way. Through serde, each field name is
//! scanned for characters to escape on every record, and each value goes through the
//! serializer's dispatch; here names are constants written as they are and strings are
//! escaped eight bytes at a time. The output is the record's serde form: the same names,
//! order and omissions (tested), so either reads back as the same record.

use std::io::Write as _;

use std::ops::Bound;
use std::sync::Arc;

use crate::record::{AuditRecord, HeaderSet, Headers, HexId, RecordError, RedactionSummary, RequestId, ServerIdentity};

/// A record field's name as [`Object::key`] writes it, put together at compile time.
macro_rules! k {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

impl AuditRecord {
    /// Appends the record as compact JSON (no newline), as `serde_json::to_writer` would.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_with(out, None);
    }

    /// As [`AuditRecord::write_json`], its headers from `texts` when their set was written
    /// there before: for a writer of many records, which share a few header sets.
    pub fn write_json_cached(&self, out: &mut Vec<u8>, texts: &mut HeaderTexts) {
        self.write_json_with(out, Some(texts));
    }

    fn write_json_with(&self, out: &mut Vec<u8>, texts: Option<&mut HeaderTexts>) {
        // Destructured whole, so that a new field does not compile until it is written here.
        let AuditRecord {
            timestamp,
            observed_timestamp,
            level,
            event_type,
            response_code,
            response_type,
            headers,
            user_id,
            team_id,
            org_id,
            identity_source,
            tool_id,
            tool_name,
            correlation_id,
            span_id,
            request_id,
            session_id,
            method,
            protocol_version,
            client_ip,
            direction,
            transport,
            server,
            duration_ns,
            body_bytes,
            body,
            body_truncated,
            redaction,
            error,
            governance,
        } = self;
        let mut o = Object::open(out);
        o.key(k!("timestamp"));
        write_timestamp(o.out, timestamp);
        o.key(k!("observedTimestamp"));
        write_timestamp(o.out, observed_timestamp);
        o.name(k!("level"), level.as_str());
        o.name(k!("eventType"), event_type.as_str());
        if let Some(code) = response_code {
            o.u64(k!("responseCode"), u64::from(*code));
        }
        o.opt_str(k!("responseType"), response_type);
        if !headers.is_empty() {
            o.key(k!("headers"));
            match texts {
                Some(texts) => texts.write(o.out, headers),
                None => {
                    let mut h = Object::open(o.out);
                    h.header_members(headers.iter());
                    h.close();
                }
            }
        }
        o.opt_str(k!("userId"), user_id);
        o.opt_str(k!("teamId"), team_id);
        o.opt_str(k!("orgId"), org_id);
        o.name(k!("identitySource"), identity_source.as_str());
        o.opt_str(k!("toolId"), tool_id);
        o.opt_str(k!("toolName"), tool_name);
        o.id(k!("correlationId"), correlation_id);
        o.id(k!("spanId"), span_id);
        let RequestId { jsonrpc, unique } = request_id;
        o.key(k!("requestId"));
        let mut r = Object::open(o.out);
        r.opt_str(k!("jsonrpc"), jsonrpc);
        r.key(k!("unique"));
        r.out.push(b'"');
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        r.out.extend_from_slice(unique.hyphenated().encode_lower(&mut text).as_bytes());
        r.out.push(b'"');
        r.close();
        o.opt_str(k!("sessionId"), session_id);
        o.opt_str(k!("method"), method);
        o.opt_str(k!("protocolVersion"), protocol_version);
        o.opt_str(k!("clientIp"), client_ip);
        o.name(k!("direction"), direction.as_str());
        o.name(k!("transport"), transport.as_str());
        let ServerIdentity { name, namespace, pod, version } = &**server;
        o.key(k!("server"));
        let mut s = Object::open(o.out);
        s.str(k!("name"), name);
        s.opt_str(k!("namespace"), namespace);
        s.opt_str(k!("pod"), pod);
        s.opt_str(k!("version"), version);
        s.close();
        if let Some(ns) = duration_ns {
            o.u64(k!("durationNs"), *ns);
        }
        o.u64(k!("bodyBytes"), *body_bytes);
        if let Some(body) = body {
            o.key(k!("body"));
            o.out.extend_from_slice(body.get().as_bytes());
        }
        o.key(k!("bodyTruncated"));
        o.out.extend_from_slice(if *body_truncated { b"true" } else { b"false" });
        let RedactionSummary { kinds, payload_dropped } = redaction;
        o.key(k!("redaction"));
        let mut d = Object::open(o.out);
        if !kinds.is_empty() {
            d.key(k!("kinds"));
            let mut k = Object::open(d.out);
            for (kind, n) in kinds {
                k.key_text(kind);
                write_u64(k.out, u64::from(*n));
            }
            k.close();
        }
        d.opt_str(k!("payloadDropped"), payload_dropped);
        d.close();
        if let Some(RecordError { kind, code, message }) = error {
            o.key(k!("error"));
            let mut e = Object::open(o.out);
            e.str(k!("type"), kind);
            if let Some(code) = code {
                e.key(k!("code"));
                write!(e.out, "{code}").expect("writing to a Vec cannot fail");
            }
            e.opt_str(k!("message"), message);
            e.close();
        }
        if let Some(governance) = governance {
            // Rare (policy decisions, tool changes, tools/list answers): through serde.
            o.key(k!("governance"));
            serde_json::to_writer(&mut *o.out, governance).expect("a governance detail always serializes");
        }
        o.close();
    }
}

/// The JSON text of the header sets a writer wrote last, by set. Records share a few sets
/// (the request headers of each client, the response headers of the server: see
/// [`Headers`]), and a set's text is the same every time, so it is escaped once and copied
/// after. Each set it has text for is held here, so no other set can take its address
/// while its text is kept.
#[derive(Default)]
pub struct HeaderTexts {
    texts: Vec<HeaderText>,
    /// The slot the next new set takes once all are used.
    next: usize,
}

struct HeaderText {
    set: HeaderSet,
    /// The members, comma-separated, without braces.
    members: Box<[u8]>,
    /// Where in `members` a `traceparent` held beside the set goes: the end of the last
    /// member whose name sorts before it.
    traceparent_at: usize,
}

/// Sets a [`HeaderTexts`] keeps text for: a few clients' request sets and the server's
/// responses.
const HEADER_TEXTS: usize = 8;

impl HeaderTexts {
    /// `headers` as a JSON object, as serde writes it.
    pub fn json(&mut self, headers: &Headers) -> String {
        let mut out = Vec::new();
        self.write(&mut out, headers);
        String::from_utf8(out).expect("JSON written from `str`s")
    }

    fn write(&mut self, out: &mut Vec<u8>, headers: &Headers) {
        let shared = headers.shared();
        let at = match self.texts.iter().position(|t| Arc::ptr_eq(&t.set, shared)) {
            Some(at) => at,
            None => self.keep(shared),
        };
        let text = &self.texts[at];
        out.push(b'{');
        match headers.traceparent() {
            None => out.extend_from_slice(&text.members),
            Some(value) => {
                let (before, after) = text.members.split_at(text.traceparent_at);
                out.extend_from_slice(before);
                // `after` starts with the comma of the member after it, unless nothing
                // comes before it.
                let mut h = Object { out, first: before.is_empty() };
                h.header_members([("traceparent", value)].into_iter());
                if before.is_empty() && !after.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(after);
            }
        }
        out.push(b'}');
    }

    /// Writes `set`'s text into a slot and says which.
    fn keep(&mut self, set: &HeaderSet) -> usize {
        let mut members = Vec::new();
        let mut h = Object { out: &mut members, first: true };
        fn line<'s>((name, value): (&'s Arc<str>, &'s Arc<str>)) -> (&'s str, &'s str) {
            (name, value)
        }
        let upto = (Bound::Unbounded, Bound::Included("traceparent"));
        h.header_members(set.range::<str, _>(upto).map(line));
        let traceparent_at = h.out.len();
        let past = (Bound::Excluded("traceparent"), Bound::Unbounded);
        h.header_members(set.range::<str, _>(past).map(line));
        let text = HeaderText { set: set.clone(), members: members.into(), traceparent_at };
        if self.texts.len() < HEADER_TEXTS {
            self.texts.push(text);
            return self.texts.len() - 1;
        }
        let at = self.next;
        self.texts[at] = text;
        self.next = (at + 1) % HEADER_TEXTS;
        at
    }
}

/// An object being written: members separated by commas.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// A field name of the record, as [`k!`] writes it: a comma, the name quoted (a
    /// constant with nothing to escape) and a colon, the comma left out for the first.
    fn key(&mut self, member: &'static str) {
        debug_assert!(member.starts_with(",\"") && member.ends_with("\":"), "{member}");
        debug_assert!(!member[2..member.len() - 2].bytes().any(needs_escape), "{member}");
        let member = if self.first { &member[1..] } else { member };
        self.first = false;
        self.out.extend_from_slice(member.as_bytes());
    }

    /// Header names and values, as members.
    fn header_members<'h>(&mut self, lines: impl Iterator<Item = (&'h str, &'h str)>) {
        for (name, value) in lines {
            self.key_text(name);
            string(self.out, value);
        }
    }

    /// A key from data (a header name, a redaction kind).
    fn key_text(&mut self, name: &str) {
        self.comma();
        string(self.out, name);
        self.out.push(b':');
    }

    fn str(&mut self, name: &'static str, value: &str) {
        self.key(name);
        string(self.out, value);
    }

    /// A value that is one of our own names (an enum's): nothing to escape.
    fn name(&mut self, name: &'static str, value: &'static str) {
        debug_assert!(!value.bytes().any(needs_escape), "{value}");
        self.key(name);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    /// A trace or span id: hex digits, nothing to escape.
    fn id<const N: usize>(&mut self, name: &'static str, id: &HexId<N>) {
        self.key(name);
        self.out.push(b'"');
        id.write_hex(self.out);
        self.out.push(b'"');
    }

    fn opt_str<S: AsRef<str>>(&mut self, name: &'static str, value: &Option<S>) {
        if let Some(v) = value {
            self.str(name, v.as_ref());
        }
    }

    fn u64(&mut self, name: &'static str, n: u64) {
        self.key(name);
        write_u64(self.out, n);
    }
}

/// Writes `n` in decimal, as `Display` does.
fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes a timestamp as a JSON string, as jiff's `Display` (and so its serde form)
/// writes it: RFC 3339 in UTC, the fraction of a second without its trailing zeros and
/// left out when zero. Written directly for the years 1970 to 9999, through `Display`
/// otherwise.
fn write_timestamp(out: &mut Vec<u8>, t: &jiff::Timestamp) {
    /// 10000-01-01T00:00:00Z.
    const YEAR_10000: i64 = 253_402_300_800;
    let (secs, nanos) = (t.as_second(), t.subsec_nanosecond());
    if !(0..YEAR_10000).contains(&secs) || nanos < 0 {
        write!(out, "\"{t}\"").expect("writing to a Vec cannot fail");
        return;
    }
    // A record's timestamps, and one record's and the next's, mostly fall in one second.
    let text = match LAST_SECOND.get() {
        (seen, text) if seen == secs => text,
        _ => {
            let text = second_text(secs);
            LAST_SECOND.set((secs, text));
            text
        }
    };
    out.extend_from_slice(&text);
    if nanos > 0 {
        // The nine digits with their leading zeros: those of 1_000_000_000 + nanos but the
        // first, which is a `1` and becomes the `.`.
        let mut digits = itoa::Buffer::new();
        let mut fraction: [u8; 10] =
            digits.format(1_000_000_000 + nanos.unsigned_abs()).as_bytes().try_into().expect("ten digits");
        fraction[0] = b'.';
        let end = fraction.iter().rposition(|&b| b != b'0').expect("the fraction is not zero") + 1;
        out.extend_from_slice(&fraction[..end]);
    }
    out.extend_from_slice(b"Z\"");
}

thread_local! {
    /// The last second written, and its text (a second no timestamp has: -1).
    static LAST_SECOND: std::cell::Cell<(i64, [u8; 20])> = const { std::cell::Cell::new((-1, [0; 20])) };
}

/// `"YYYY-MM-DDTHH:MM:SS` (the opening quote included) of a second from 1970 on.
fn second_text(secs: i64) -> [u8; 20] {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let mut text = *b"\"0000-00-00T00:00:00";
    fixed_digits(&mut text[1..5], year);
    fixed_digits(&mut text[6..8], month);
    fixed_digits(&mut text[9..11], day);
    fixed_digits(&mut text[12..14], of_day / 3600);
    fixed_digits(&mut text[15..17], of_day / 60 % 60);
    fixed_digits(&mut text[18..20], of_day % 60);
    text
}

/// Writes the last `slots.len()` decimal digits of `n` (not negative) into `slots`,
/// with leading zeros.
fn fixed_digits(slots: &mut [u8], mut n: i64) {
    for slot in slots.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The proleptic Gregorian date (year, month, day) of a day counted from 1970-01-01, by
/// Howard Hinnant's `civil_from_days`, for days from 0000-03-01 on.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Days since 0000-03-01: years start in March, so the leap day ends a year.
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    (era * 400 + year_of_era + i64::from(month <= 2), month, day)
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any of the eight bytes of `w` is a control character, `"` or `\`: what a
/// JSON string cannot hold unescaped (and so where a reader of one must stop and look).
pub fn any_needs_escape(w: u64) -> bool {
    escape_mask(w) != 0
}

/// Where in the eight bytes of `w` (read little-endian) the first control character, `"`
/// or `\` is, if any.
pub fn first_needing_escape(w: u64) -> Option<usize> {
    let mask = escape_mask(w);
    (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize)
}

/// The high bit of each byte of `w` that needs escaping, exact up to the first such byte
/// (above it a borrow may mark bytes that do not).
fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    // Below 0x20: subtracting 0x20 borrows into the high bit of a byte that had it clear.
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below_space | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')))
}

/// Writes `s` as a JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let word = |w: &[u8]| any_needs_escape(u64::from_le_bytes(w.try_into().expect("eight bytes")));
    // Word by word without stopping: the usual string has nothing to escape. The last
    // eight bytes are one more word (overlapping the one before), not a byte at a time.
    let dirty = match bytes.len() {
        0..8 => bytes.iter().copied().any(needs_escape),
        n => bytes.chunks_exact(8).fold(false, |d, w| d | word(w)) | word(&bytes[n - 8..]),
    };
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !dirty {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                let mut escape = *b"\\u0000";
                crate::ids::hex_into(&[b], &mut escape[4..]);
                out.extend_from_slice(&escape);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_numbers_are_written_as_display_writes_them() {
        let mut seconds: Vec<i64> = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,     // 2000-02-29
            951_868_800,     // 2000-03-01
            4_107_542_400,   // 2100-03-01 (2100 is not a leap year)
            1_798_761_599,   // 2026-12-31T23:59:59
            253_402_207_200, // 9999-12-30T22:00:00, the last second jiff has
            -1,
            -62_135_596_800,
        ];
        // A pseudo-random walk over the whole range, a day and a bit at a time.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seconds.push((x % 253_402_207_200) as i64);
        }
        let nanos = [0, 1, 10, 120_000_000, 500_000_000, 662_709_822, 999_999_999, 100];
        for (i, s) in seconds.iter().enumerate() {
            // Twice in the same second, with another fraction: the second's text is reused.
            for nano in [nanos[i % nanos.len()], nanos[(i + 3) % nanos.len()]] {
                let t = jiff::Timestamp::new(*s, nano).unwrap();
                let mut out = Vec::new();
                write_timestamp(&mut out, &t);
                assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&t).unwrap(), "{s}");
            }
        }
        for n in [0, 7, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn the_first_byte_to_escape_in_a_word_is_found_exactly() {
        // Every byte at every position, after clean bytes and before any bytes at all.
        for b in 0..=255u8 {
            for at in 0..8 {
                for after in [b' ', b'"', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xff] {
                    let mut word = [b'a'; 8];
                    word[at] = b;
                    word[at + 1..].fill(after);
                    let expected = word.iter().position(|&b| needs_escape(b));
                    assert_eq!(first_needing_escape(u64::from_le_bytes(word)), expected, "{word:?}");
                    assert_eq!(any_needs_escape(u64::from_le_bytes(word)), expected.is_some());
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every byte below 0x80 at every position of an eight-byte word, and UTF-8 around.
        for b in 0u8..0x80 {
            for at in 0..10 {
                let mut s = "é".repeat(at / 2) + &"a".repeat(at % 2);
                s.push(char::from(b));
                s.push_str("tail ünï ");
                let mut out = Vec::new();
                string(&mut out, &s);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&s).unwrap(),
                    "byte {b:#04x} at {at}"
                );
            }
        }
        // Strings of every length to three words, with one byte to escape anywhere in them
        // (the last word overlaps the one before).
        for len in 0..=24 {
            for at in 0..=len {
                for b in [b'"', b'\\', b'\n', 0x01, b'a'] {
                    let mut s = "x".repeat(len);
                    if at < len {
                        s.replace_range(at..=at, std::str::from_utf8(&[b]).unwrap());
                    }
                    let mut out = Vec::new();
                    string(&mut out, &s);
                    assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
        for s in ["", "plain ascii longer than one word", "\"\\\u{1}\u{1f}\u{7f}", "日本語のテキスト\n"] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
        }
    }
}
