//! The W3C trace and span ids of a record, held as their bytes: a record's ids cost no
//! allocation, and the OTLP exporter sends the bytes as they are. In every text form (JSON,
//! CSV, OTLP attributes) an id is its lower-case hex digits.

use std::fmt;

/// `N` bytes, written as `2 * N` lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexId<const N: usize>(pub [u8; N]);

/// A W3C trace id (16 bytes, 32 hex digits): a record's `correlationId`.
pub type TraceId = HexId<16>;

/// A W3C span id (8 bytes, 16 hex digits): a record's `spanId`.
pub type SpanId = HexId<8>;

/// The longest id's text (a trace id's 32 digits).
const MAX_DIGITS: usize = 32;

impl<const N: usize> HexId<N> {
    /// The id's bytes.
    pub fn bytes(&self) -> &[u8; N] {
        &self.0
    }

    /// True for the all-zero id, which W3C Trace Context calls invalid.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }

    /// Reads `2 * N` hex digits, lower-case as the W3C format has them.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.as_bytes();
        if digits.len() != 2 * N {
            return None;
        }
        let mut out = [0u8; N];
        // Any digit that is not one marks `seen` with a high bit: one test at the end
        // instead of a branch per digit (ids are parsed on every request).
        let mut seen = 0u8;
        for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (high, low) = (UNHEX[usize::from(pair[0])], UNHEX[usize::from(pair[1])]);
            seen |= high | low;
            *slot = high << 4 | low;
        }
        (seen < 16).then_some(Self(out))
    }

    /// `f` of the hex digits, written on the stack.
    fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        const { assert!(2 * N <= MAX_DIGITS, "ids are at most 16 bytes") };
        let mut text = [0u8; MAX_DIGITS];
        hex_into(&self.0, &mut text);
        f(std::str::from_utf8(&text[..2 * N]).expect("hex digits are ASCII"))
    }

    /// Appends the hex digits to `out`.
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        self.with_text(|text| out.extend_from_slice(text.as_bytes()));
    }
}

/// Writes the lower-case hex digits of `bytes` into `out` (twice as long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (&b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
}

/// Each byte's value as a lower-case hex digit, or 0xff for a byte that is not one.
const UNHEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl<const N: usize> fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

impl<const N: usize> fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl<const N: usize> std::str::FromStr for HexId<N> {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).ok_or_else(|| format!("expected {} lower-case hex digits, got {text:?}", 2 * N))
    }
}

impl<const N: usize> serde::Serialize for HexId<N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
    }
}

impl<'de, const N: usize> serde::Deserialize<'de> for HexId<N> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_write_lower_case_hex() {
        let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(id.0[0], 0x4b);
        assert_eq!(id.0[15], 0x36);
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"4bf92f3577b34da6a3ce929d0e0e4736\"");
        let mut out = b"x".to_vec();
        SpanId::parse("00f067aa0ba902b7").unwrap().write_hex(&mut out);
        assert_eq!(out, b"x00f067aa0ba902b7");
        assert!(SpanId::parse("0000000000000000").unwrap().is_zero());
        assert!(!id.is_zero());
    }

    #[test]
    fn every_ascii_pair_reads_as_its_lower_case_hex_value_or_not_at_all() {
        let is_digit = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        for high in 0..128u8 {
            for low in 0..128u8 {
                let text = String::from_utf8(vec![high, low]).unwrap();
                let expected = (is_digit(high) && is_digit(low)).then(|| u8::from_str_radix(&text, 16).unwrap());
                assert_eq!(HexId::<1>::parse(&text).map(|HexId([b])| b), expected, "{text:?}");
            }
        }
    }

    #[test]
    fn ids_of_the_wrong_length_or_case_are_refused() {
        for bad in
            ["", "00f067aa0ba902b", "00f067aa0ba902b77", "00F067AA0BA902B7", "00f067aa0ba902bg", "00f067aa0ba902é"]
        {
            assert!(SpanId::parse(bad).is_none(), "{bad:?}");
            let err = serde_json::from_str::<SpanId>(&serde_json::to_string(bad).unwrap()).unwrap_err();
            assert!(err.to_string().contains("expected 16 lower-case hex digits"), "{err}");
        }
        // An owned string (a JSON escape) reads as a borrowed one does.
        assert_eq!(
            serde_json::from_str::<SpanId>("\"00f067aa0ba902\\u0062\\u0037\"").unwrap().to_string(),
            "00f067aa0ba902b7"
        );
    }
}
