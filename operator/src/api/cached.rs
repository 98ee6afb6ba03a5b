//! Caches the cluster's answers about callers, as the API server does for its own
//! authentication and authorisation webhooks: without it every inventory request and every
//! node agent's usage report costs a TokenReview and a SubjectAccessReview.
//!
//! Accepted tokens and allowed reviews are kept for `allowed` (default 60 s), refusals for
//! the shorter `denied` (default 10 s) so that a fixed RBAC binding takes effect quickly;
//! errors are never kept. Tokens are keyed by their SHA-256, never kept in the clear. The
//! cache holds at most `capacity` answers of each kind: expired ones go first, then the
//! oldest.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use mcp_ledger_crds::McpServer;
use mcp_ledger_crds::usage::UsageReport;
use sha2::{Digest, Sha256};

use super::{Backend, Identity};
use crate::inventory::RemovalRecord;

/// How long answers are kept.
#[derive(Clone, Copy, Debug)]
pub struct Ttl {
    /// Accepted tokens and allowed reviews.
    pub allowed: Duration,
    /// Refused tokens and denied reviews.
    pub denied: Duration,
    /// Most answers of each kind kept.
    pub capacity: usize,
}

impl Default for Ttl {
    fn default() -> Self {
        Self { allowed: Duration::from_secs(60), denied: Duration::from_secs(10), capacity: 4096 }
    }
}

/// A small map with per-entry expiry and a bound on its size.
struct Expiring<K, V> {
    entries: HashMap<K, (Instant, V)>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Expiring<K, V> {
    fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        // An expired answer stays until it is replaced or evicted (keeps `order` exact).
        self.entries.get(key).filter(|(until, _)| *until > now).map(|(_, v)| v.clone())
    }

    fn insert(&mut self, key: K, value: V, until: Instant, now: Instant) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (u, _)| *u > now);
            self.order.retain(|k| self.entries.contains_key(k));
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if self.entries.insert(key.clone(), (until, value)).is_none() {
            self.order.push_back(key);
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

type ReviewKey = (String, Vec<String>, BTreeMap<String, Vec<String>>, Option<String>, Option<String>);

/// A [`Backend`] that keeps the answers of another one about callers for a while.
pub struct Cached<B> {
    inner: Arc<B>,
    ttl: Ttl,
    tokens: Arc<Mutex<Expiring<[u8; 32], Option<Identity>>>>,
    reviews: Arc<Mutex<Expiring<ReviewKey, bool>>>,
}

impl<B: Backend> Cached<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, ttl: Ttl) -> Self {
        Self {
            inner: Arc::new(inner),
            ttl,
            tokens: Arc::new(Mutex::new(Expiring::new(ttl.capacity))),
            reviews: Arc::new(Mutex::new(Expiring::new(ttl.capacity))),
        }
    }

    /// How many answers are kept (tokens, reviews).
    pub fn kept(&self) -> (usize, usize) {
        (self.tokens.lock().expect("cache lock").len(), self.reviews.lock().expect("cache lock").len())
    }
}

impl<B: Backend> Backend for Cached<B> {
    fn authenticate(&self, token: String) -> BoxFuture<'static, Result<Option<Identity>, String>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some(answer) = self.tokens.lock().expect("cache lock").get(&key, now) {
            return futures::future::ready(Ok(answer)).boxed();
        }
        let (inner, tokens, ttl) = (self.inner.clone(), self.tokens.clone(), self.ttl);
        async move {
            let answer = inner.authenticate(token).await?;
            let keep = if answer.is_some() { ttl.allowed } else { ttl.denied };
            let now = Instant::now();
            tokens.lock().expect("cache lock").insert(key, answer.clone(), now + keep, now);
            Ok(answer)
        }
        .boxed()
    }

    fn may_list(&self, who: Identity, namespace: Option<String>) -> BoxFuture<'static, Result<bool, String>> {
        let key: ReviewKey =
            (who.username.clone(), who.groups.clone(), who.extra.clone(), who.uid.clone(), namespace.clone());
        let now = Instant::now();
        if let Some(answer) = self.reviews.lock().expect("cache lock").get(&key, now) {
            return futures::future::ready(Ok(answer)).boxed();
        }
        let (inner, reviews, ttl) = (self.inner.clone(), self.reviews.clone(), self.ttl);
        async move {
            let allowed = inner.may_list(who, namespace).await?;
            let keep = if allowed { ttl.allowed } else { ttl.denied };
            let now = Instant::now();
            reviews.lock().expect("cache lock").insert(key, allowed, now + keep, now);
            Ok(allowed)
        }
        .boxed()
    }

    fn servers(&self, namespace: Option<&str>) -> Vec<McpServer> {
        self.inner.servers(namespace)
    }

    fn history(&self) -> BoxFuture<'static, Result<Vec<RemovalRecord>, String>> {
        self.inner.history()
    }

    fn merge_usage(&self, report: UsageReport) -> BoxFuture<'static, Result<Vec<String>, String>> {
        self.inner.merge_usage(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the questions it is asked; `bad-token` is refused, `broken` fails, `eve` is
    /// denied.
    #[derive(Default)]
    struct Counting {
        reviews: AtomicUsize,
        tokens: AtomicUsize,
    }

    fn identity(name: &str) -> Identity {
        Identity { username: name.into(), groups: vec!["devs".into()], extra: BTreeMap::new(), uid: None }
    }

    impl Backend for Counting {
        fn authenticate(&self, token: String) -> BoxFuture<'static, Result<Option<Identity>, String>> {
            self.tokens.fetch_add(1, Ordering::SeqCst);
            let answer = match token.as_str() {
                "broken" => Err("the API server is away".to_owned()),
                "bad-token" => Ok(None),
                name => Ok(Some(identity(name))),
            };
            futures::future::ready(answer).boxed()
        }
        fn may_list(&self, who: Identity, _namespace: Option<String>) -> BoxFuture<'static, Result<bool, String>> {
            self.reviews.fetch_add(1, Ordering::SeqCst);
            futures::future::ready(Ok(who.username != "eve")).boxed()
        }
        fn servers(&self, _namespace: Option<&str>) -> Vec<McpServer> {
            Vec::new()
        }
        fn history(&self) -> BoxFuture<'static, Result<Vec<RemovalRecord>, String>> {
            futures::future::ready(Ok(Vec::new())).boxed()
        }
        fn merge_usage(&self, _report: UsageReport) -> BoxFuture<'static, Result<Vec<String>, String>> {
            futures::future::ready(Ok(Vec::new())).boxed()
        }
    }

    fn cached(allowed_ms: u64, denied_ms: u64, capacity: usize) -> Cached<Counting> {
        Cached::new(
            Counting::default(),
            Ttl { allowed: Duration::from_millis(allowed_ms), denied: Duration::from_millis(denied_ms), capacity },
        )
    }

    // Paused Tokio time: `advance` moves the cache's clock exactly.
    #[tokio::test(start_paused = true)]
    async fn answers_are_kept_for_their_time_and_errors_not_at_all() {
        let c = cached(300, 60, 16);
        for _ in 0..3 {
            assert_eq!(c.authenticate("alice".into()).await.unwrap(), Some(identity("alice")));
            assert!(c.may_list(identity("alice"), Some("tools".into())).await.unwrap());
            assert_eq!(c.authenticate("bad-token".into()).await.unwrap(), None);
            assert!(!c.may_list(identity("eve"), None).await.unwrap());
            assert!(c.authenticate("broken".into()).await.is_err());
        }
        // alice, bad-token once each; broken every time.
        assert_eq!(c.inner.tokens.load(Ordering::SeqCst), 2 + 3);
        assert_eq!(c.inner.reviews.load(Ordering::SeqCst), 2);
        // Another namespace, or other groups, is another question.
        assert!(c.may_list(identity("alice"), Some("other".into())).await.unwrap());
        let mut admin = identity("alice");
        admin.groups.push("system:masters".into());
        assert!(c.may_list(admin, Some("tools".into())).await.unwrap());
        assert_eq!(c.inner.reviews.load(Ordering::SeqCst), 4);

        // Refusals expire first; accepted answers later.
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(c.authenticate("bad-token".into()).await.unwrap(), None);
        assert!(!c.may_list(identity("eve"), None).await.unwrap());
        assert_eq!(c.authenticate("alice".into()).await.unwrap(), Some(identity("alice")));
        assert_eq!(c.inner.tokens.load(Ordering::SeqCst), 6, "only the refused token is asked again");
        assert_eq!(c.inner.reviews.load(Ordering::SeqCst), 5, "only the denial is asked again");
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(c.authenticate("alice".into()).await.unwrap(), Some(identity("alice")));
        assert_eq!(c.inner.tokens.load(Ordering::SeqCst), 7, "the accepted token expired too");
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_keeps_no_token_in_the_clear() {
        let c = cached(60_000, 60_000, 8);
        for i in 0..50 {
            c.authenticate(format!("user-{i}")).await.unwrap();
            c.may_list(identity(&format!("user-{i}")), None).await.unwrap();
        }
        assert_eq!(c.kept(), (8, 8));
        // The newest are kept, the oldest went.
        c.authenticate("user-49".into()).await.unwrap();
        assert_eq!(c.inner.tokens.load(Ordering::SeqCst), 50);
        c.authenticate("user-0".into()).await.unwrap();
        assert_eq!(c.inner.tokens.load(Ordering::SeqCst), 51);
        let tokens = c.tokens.lock().unwrap();
        let digest: [u8; 32] = Sha256::digest(b"user-49").into();
        assert!(tokens.entries.contains_key(&digest), "tokens are keyed by their SHA-256");
    }
}
