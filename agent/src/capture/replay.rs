//! The replay guard: which SSE events were already recorded, so that events a server sends
//! again after `Last-Event-ID` are not recorded twice.
//!
//! Only a stream the client did not get to its end can be resumed: a client resumes from
//! the last event it received, and the server replays what came after it. So the events of
//! a stream that ended complete cannot come again, and are forgotten at its end; those of
//! a cut stream, or one the client left, are kept (the oldest go first past a bound). An
//! event is remembered by a keyed 64-bit hash of its session and id, not by the two texts.
//! Open streams are followed up to a bound too, so that streams whose end never reached
//! the processor cannot add up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// Events remembered, at most (each costs about 25 bytes: its hash in the set and in the
/// order, and in its stream's list while the stream is open).
pub(super) const MAX_SEEN_EVENTS: usize = 65_536;
/// Open streams with event ids followed, at most. A stream whose end was lost (its item
/// dropped on a full queue) would otherwise be followed for ever; past the bound the
/// older half (exchange ids grow) is let go as if cut.
const MAX_OPEN_STREAMS: usize = 16_384;

type Fast = foldhash::fast::RandomState;

/// See the module documentation.
pub(super) struct SeenEvents {
    /// Keyed with a random key: session ids and event ids come from the peers, and a
    /// collision would leave an event unrecorded.
    key: RandomState,
    /// The set holds hashes already randomised by `key`, so the fast hash is safe for it.
    seen: HashSet<u64, Fast>,
    /// Hashes in the order they were first seen; may also hold hashes already forgotten.
    order: VecDeque<u64>,
    /// Open streams whose events carried ids, by exchange: the hashes of the events first
    /// seen on each (up to the bound shared by all streams).
    streams: HashMap<u64, Vec<u64>, Fast>,
    /// Hashes held in `streams`, all together.
    tracked: usize,
}

impl Default for SeenEvents {
    fn default() -> Self {
        Self {
            key: RandomState::new(),
            seen: HashSet::default(),
            order: VecDeque::new(),
            streams: HashMap::default(),
            tracked: 0,
        }
    }
}

impl SeenEvents {
    /// An event with `id` arrived on `exchange`'s stream, in `session` (None: no session to
    /// resume in). True if it was seen before: the server replays it.
    pub(super) fn replayed(&mut self, exchange: u64, session: Option<&str>, id: &str) -> bool {
        if self.streams.len() >= MAX_OPEN_STREAMS && !self.streams.contains_key(&exchange) {
            self.let_older_half_go();
        }
        let stream = self.streams.entry(exchange).or_default();
        let Some(session) = session.filter(|s| !s.is_empty()) else {
            return false;
        };
        let hash = self.key.hash_one((session, id));
        if self.seen.contains(&hash) {
            return true;
        }
        if self.tracked < MAX_SEEN_EVENTS {
            stream.push(hash);
            self.tracked += 1;
        }
        // Room is made before the push, so that the order never holds more than the bound
        // (a deque one past a power of two would double its buffer).
        if self.order.len() >= MAX_SEEN_EVENTS
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(hash);
        self.order.push_back(hash);
        false
    }

    /// `exchange`'s stream ended, `complete` if the client got all of it. True if its
    /// events carried ids (the client can resume it with `Last-Event-ID`).
    pub(super) fn ended(&mut self, exchange: u64, complete: bool) -> bool {
        let Some(stream) = self.streams.remove(&exchange) else {
            return false;
        };
        self.tracked -= stream.len();
        if complete {
            for hash in &stream {
                self.seen.remove(hash);
            }
        }
        true
    }

    /// Stops following the older half of the open streams, as if they had been cut (their
    /// events stay remembered).
    fn let_older_half_go(&mut self) {
        let mut ids: Vec<u64> = self.streams.keys().copied().collect();
        let half = ids.len() / 2;
        let (_, &mut median, _) = ids.select_nth_unstable(half);
        let mut let_go = 0;
        self.streams.retain(|&exchange, stream| {
            let keep = exchange >= median;
            if !keep {
                let_go += stream.len();
            }
            keep
        });
        self.tracked -= let_go;
    }

    /// Events remembered now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_replayed_only_if_seen_in_the_same_session() {
        let mut g = SeenEvents::default();
        assert!(!g.replayed(1, Some("s1"), "e1"));
        assert!(g.replayed(2, Some("s1"), "e1"), "the same id in the same session comes again");
        assert!(!g.replayed(2, Some("s2"), "e1"), "another session's e1 is another event");
        assert!(!g.replayed(3, None, "e1"), "without a session nothing can be resumed");
        assert!(!g.replayed(3, Some(""), "e1"));
        assert!(!g.replayed(3, None, "e1"), "and nothing is remembered for it");
        // The session and the id are not run together: ("s1e", "1") is not ("s1", "e1").
        assert!(!g.replayed(4, Some("s1e"), "1"));
    }

    #[test]
    fn a_complete_stream_is_forgotten_and_a_cut_one_is_kept() {
        let mut g = SeenEvents::default();
        for i in 0..100 {
            assert!(!g.replayed(1, Some("s"), &format!("a{i}")));
            assert!(!g.replayed(2, Some("s"), &format!("b{i}")));
        }
        assert_eq!(g.len(), 200);
        assert!(g.ended(1, true), "stream 1 had ids: resumable");
        assert_eq!(g.len(), 100, "the complete stream's events are forgotten");
        assert!(g.ended(2, false));
        assert_eq!(g.len(), 100, "the cut stream's events are kept");
        assert!(g.replayed(3, Some("s"), "b7"), "and its replay is recognised");
        assert!(!g.ended(4, true), "a stream without ids is not resumable");
        assert!(g.ended(3, true), "a stream on which only replays came had ids too");
        assert_eq!(g.len(), 100, "a replay's events belong to the stream they first came on");
        assert_eq!(g.tracked, 0);
        assert!(g.streams.is_empty());
    }

    #[test]
    fn past_the_bound_the_oldest_events_are_forgotten_and_open_streams_stay_bounded() {
        let mut g = SeenEvents::default();
        let n = MAX_SEEN_EVENTS + 10;
        for i in 0..n {
            assert!(!g.replayed(1, Some("s"), &i.to_string()));
        }
        assert_eq!(g.len(), MAX_SEEN_EVENTS);
        assert_eq!(g.order.len(), MAX_SEEN_EVENTS);
        assert_eq!(g.order.capacity(), MAX_SEEN_EVENTS, "the order's buffer stays at the bound");
        assert_eq!(g.tracked, MAX_SEEN_EVENTS, "one open stream holds at most the bound");
        assert!(!g.replayed(2, Some("s"), "0"), "the oldest was forgotten");
        assert!(g.replayed(2, Some("s"), &(n - 1).to_string()), "the newest is remembered");
        assert!(g.ended(1, true));
        assert_eq!(g.tracked, 0);
        assert!(g.len() <= 11, "what stream 1 held is forgotten at its end: {} left", g.len());
    }

    #[test]
    fn streams_whose_end_never_comes_are_let_go_oldest_first_past_the_bound() {
        let mut g = SeenEvents::default();
        for exchange in 0..MAX_OPEN_STREAMS as u64 {
            assert!(!g.replayed(exchange, Some("s"), &exchange.to_string()));
        }
        assert_eq!(g.streams.len(), MAX_OPEN_STREAMS);
        assert!(!g.replayed(MAX_OPEN_STREAMS as u64, Some("s"), "new"));
        assert_eq!(g.streams.len(), MAX_OPEN_STREAMS / 2 + 1, "the older half let go, the new one followed");
        assert!(!g.streams.contains_key(&0) && g.streams.contains_key(&(MAX_OPEN_STREAMS as u64 - 1)));
        assert_eq!(g.tracked, g.streams.values().map(Vec::len).sum::<usize>());
        assert!(g.replayed(99_999, Some("s"), "0"), "a let-go stream's events are still remembered");
        assert!(!g.ended(0, true), "and it is no longer followed");
    }
}
