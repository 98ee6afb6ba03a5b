//! Fast identifiers for the hot path: trace and span ids and UUID v7 record ids come from
//! a per-thread wyrand generator seeded once from the OS, instead of one `getrandom`
//! system call per id. These ids must be unique and unpredictable enough to correlate,
//! not secret (W3C Trace Context asks for randomness, not for a cryptographic source).

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) | 1
}

/// 64 random bits (wyrand).
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// 16 random bytes.
pub fn bytes16() -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&next_u64().to_le_bytes());
    out[8..].copy_from_slice(&next_u64().to_le_bytes());
    out
}

/// A UUID v7 (time-ordered) for something that happened at `at`.
pub fn uuid_v7(at: jiff::Timestamp) -> uuid::Uuid {
    let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
    let random = bytes16();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&random[..10]);
    uuid::Builder::from_unix_timestamp_millis(ms, &tail).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(next_u64()));
        }
        let now = jiff::Timestamp::now();
        let id = uuid_v7(now);
        assert_eq!(id.get_version_num(), 7);
        let (seconds, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!(seconds as i64 * 1000 + i64::from(nanos / 1_000_000), now.as_millisecond());
        assert_ne!(uuid_v7(now), id);
    }
}
