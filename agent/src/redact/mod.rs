//! Redaction applied to every record before it leaves the process: header rules (deny or
//! allow list), JSON-path rules, keys that name a secret, and the built-in detector
//! families (secrets, environment dumps, personal data) plus custom patterns, each with
//! its action (mask, keyed hash, drop the field, drop the payload). A policy is compiled
//! once and swapped whole on reload; one that does not compile is refused with the rule
//! and the reason.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mcp_ledger_crds::record::Headers;
use mcp_ledger_crds::redaction::{Action, HeaderMode, McpRedactionPolicySpec};
use serde_json::Value;

use crate::json::{Node, Text};

/// Header names whose values are always redacted in deny-list mode.
const BUILTIN_DENY: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];
/// Substrings of header names (lower-case) that make a header sensitive.
const SENSITIVE_NAME_PARTS: &[&str] = &["token", "secret", "key", "auth", "password", "credential", "session-id"];
/// JSON object keys (lower-case, `-` and `_` removed) whose values are always redacted.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "credentials",
    "credential",
];
/// Key endings (same folding) that name a secret: `githubToken`, `client_secret`, `AWS_SECRET_ACCESS_KEY`, ...
/// `progressToken` and `nextCursor` (MCP protocol fields) end otherwise.
const SECRET_KEY_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "authtoken",
    "apitoken",
    "bearertoken",
    "sessiontoken",
    "secrettoken",
    "usertoken",
    "bottoken",
    "apikey",
    "secretkey",
    "privatekey",
    "accesskey",
    "secretaccesskey",
    "clientsecret",
    "connectionstring",
];

pub mod checks;
pub mod detectors;
pub mod jsonpath;

/// A policy that does not compile; each entry names the rule and the reason.
#[derive(Debug, thiserror::Error)]
#[error("redaction policy refused: {}", .0.join("; "))]
pub struct PolicyError(pub Vec<String>);

/// What the JSON walk decided about the whole message.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Set when a rule asked for the whole payload to be dropped (the rule's name).
    pub drop_payload: Option<String>,
    /// Whether anything in the message was replaced or removed: if not, the message's
    /// own text is its redacted form.
    pub changed: bool,
}

/// A compiled redaction policy, swapped whole on reload.
pub struct Redactor {
    header_mode: HeaderMode,
    deny: Vec<String>,
    allow: Vec<String>,
    header_action: Action,
    secret_key_action: Action,
    engine: detectors::Engine,
    json_paths: Vec<(String, jsonpath::Path, Action)>,
    hash_key: Option<Vec<u8>>,
    /// Tells this policy's entries in [`REMEMBERED`] from another's.
    id: u64,
}

/// Verdicts that repeat on every message, remembered so the next message does not pay
/// for them again: object keys (`jsonrpc`, `params`, a tool's argument names), header
/// lines (`content-type`, `user-agent`, …) and whole header sets the detectors found
/// nothing in, and header names. Per thread, so the node agent's threads share no lock.
/// The entries belong to the policy `policy` names, and are dropped when another policy
/// runs on the thread.
/// Nothing with a finding is remembered, and no value of a sensitive header.
///
/// The maps hash with foldhash, seeded at random per process: SipHash cost more than the
/// scan it saves on a short key. Keys come from clients, so the maps are also bounded
/// ([`REMEMBERED_PER_KIND`]): colliding keys, were the seed guessed, slow only a map of
/// that size.
struct Remembered {
    policy: u64,
    /// Clean keys, and whether each names a secret.
    keys: HashMap<Box<str>, bool>,
    /// Header names as received: the record's name (lower-cased) and whether the
    /// header is redacted whole by its name.
    header_names: HashMap<Box<str>, (Arc<str>, bool)>,
    /// Clean lines of headers that are not sensitive, as `name NUL value` (only lines
    /// whose name and value hold no NUL): the record's name and value, shared by every
    /// record.
    header_lines: HashMap<Box<[u8]>, SharedHeader>,
    /// Where a header line is put together for the lookup, kept between calls.
    scratch: Vec<u8>,
    /// Whole header sets with nothing found in them, by their lines (each name and value
    /// after its length; a well-formed `traceparent`'s value, new on every request, left
    /// out): most exchanges of a client send the same headers, and then a set costs one
    /// lookup.
    header_sets: HashMap<Box<[u8]>, SharedHeaders>,
    /// Hashes of the clean sets seen once: a set is remembered the second time it comes
    /// (one with a new `content-length` each time is not worth keeping).
    sets_seen_once: std::collections::HashSet<u64, foldhash::fast::RandomState>,
    /// Where a set's key is put together, kept between calls.
    set_key: Vec<u8>,
}

/// A header set as records share it (see [`Headers`]).
pub type SharedHeaders = mcp_ledger_crds::record::HeaderSet;

/// What a whole header set is remembered by ([`Redactor::header_set`]): the bytes of a
/// buffer that spells the set (the capture's `HeaderLines`), with the value of its
/// `traceparent` left out, since that is new on every request. The holder of the buffer
/// answers for it that, with where the value was left out and the number of lines, the
/// bytes spell no other set.
#[derive(Debug, Clone, Copy)]
pub struct SetKey<'a> {
    /// The bytes before the traceparent's value and after it (all of them in the first
    /// part when none was left out).
    pub parts: [&'a [u8]; 2],
    /// The value left out: the value of the set's first `traceparent` line that is a
    /// well-formed trace context.
    pub traceparent: Option<&'a str>,
    /// How many lines (name and value) the set has.
    pub lines: usize,
}

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A header's name and value as records hold them.
type SharedHeader = (Arc<str>, Arc<str>);

/// What may be remembered of a redacted header line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Nothing found, not a sensitive header: the line, and a set that holds it.
    Clean,
    /// A well-formed `traceparent`, new on every request: neither the line nor its value
    /// (a set that holds it is remembered without it).
    Fresh,
    /// Something redacted: nothing.
    Found,
}

impl Remembered {
    /// Runs `f` on this thread's entries for policy `id`, dropping another policy's.
    fn with<T>(id: u64, f: impl FnOnce(&mut Remembered) -> T) -> T {
        REMEMBERED.with_borrow_mut(|r| {
            if r.policy != id {
                r.keys.clear();
                r.header_names.clear();
                r.header_lines.clear();
                r.header_sets.clear();
                r.sets_seen_once.clear();
                r.policy = id;
            }
            f(r)
        })
    }
}

/// Adds an entry to a bounded map, which starts over when full.
fn remember<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    remember_up_to(map, REMEMBERED_PER_KIND, key, value);
}

/// Adds an entry to a map of at most `most` entries, which starts over when full.
fn remember_up_to<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, most: usize, key: K, value: V) {
    if map.len() >= most {
        map.clear();
    }
    map.insert(key, value);
}

thread_local! {
    static REMEMBERED: RefCell<Remembered> = RefCell::new(Remembered {
        policy: 0,
        keys: HashMap::default(),
        header_names: HashMap::default(),
        header_lines: HashMap::default(),
        scratch: Vec::new(),
        header_sets: HashMap::default(),
        sets_seen_once: Default::default(),
        set_key: Vec::new(),
    });
}

/// How many whole header sets this thread remembers (for tests).
#[cfg(test)]
pub(crate) fn remembered_header_sets() -> usize {
    REMEMBERED.with_borrow(|r| r.header_sets.len())
}

/// Most entries of each kind remembered per thread.
const REMEMBERED_PER_KIND: usize = 1024;
/// Longer keys and header lines are scanned every time: they rarely repeat.
const REMEMBERED_LONGEST: usize = 256;
/// Most whole header sets remembered per thread, and the longest (by their key).
const REMEMBERED_SETS: usize = 256;
const REMEMBERED_SET_LONGEST: usize = 4096;
/// The next policy id (0 is no policy).
static NEXT_POLICY: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the HMAC key.
        f.debug_struct("Redactor").field("detectors", &self.engine.detectors().len()).finish_non_exhaustive()
    }
}

impl Redactor {
    /// Compiles a policy; `hash_key` is the HMAC key for `hash` actions.
    pub fn compile(policy: &McpRedactionPolicySpec, hash_key: Option<Vec<u8>>) -> Result<Self, PolicyError> {
        let mut errors = Vec::new();
        let n = detectors::FAMILIES.len();
        let mut enabled: Vec<bool> = detectors::FAMILIES.iter().map(|f| !f.off_by_default).collect();
        let mut actions: Vec<Action> = vec![policy.default_action; n];
        if policy.redact_ip_addresses
            && let Some(i) = detectors::FAMILIES.iter().position(|f| f.kind == "ip-address")
        {
            enabled[i] = true;
        }
        for (i, switch) in policy.detectors.iter().enumerate() {
            let targets: Vec<usize> = detectors::FAMILIES
                .iter()
                .enumerate()
                .filter(|(_, f)| f.kind == switch.name || f.group.name() == switch.name)
                .map(|(j, _)| j)
                .collect();
            if targets.is_empty() {
                errors.push(format!(
                    "detectors[{i}] '{}': unknown detector; use a group (secrets, env, pii) or a family such as {}",
                    switch.name,
                    detectors::FAMILIES.iter().take(6).map(|f| f.kind).collect::<Vec<_>>().join(", ")
                ));
            }
            for j in targets {
                enabled[j] = switch.enabled;
                if let Some(a) = switch.action {
                    actions[j] = a;
                }
            }
        }
        let mut compiled = Vec::new();
        for (j, f) in detectors::FAMILIES.iter().enumerate() {
            if !enabled[j] {
                continue;
            }
            let regex = regex::Regex::new(f.pattern).expect("built-in patterns compile (tested)");
            compiled.push(detectors::Detector {
                kind: f.kind.to_owned(),
                keywords: f.keywords.iter().map(|k| (*k).to_owned()).collect(),
                exact_case: f.exact_case,
                word_start: f.word_start,
                regex,
                capture: f.capture,
                check: f.check,
                min_digits: f.min_digits,
                digit_window: f.digit_window,
                max_len: f.max_len,
                min_len: detectors::SHORTEST_BUILT_IN_MATCH,
                shape: f.shape,
                action: actions[j],
            });
        }
        for (i, c) in policy.custom_patterns.iter().enumerate() {
            match regex::RegexBuilder::new(&c.regex).size_limit(1 << 20).build() {
                Ok(regex) => compiled.push(detectors::Detector {
                    kind: c.name.clone(),
                    keywords: c.keywords.clone(),
                    exact_case: false,
                    word_start: false,
                    regex,
                    capture: 0,
                    check: None,
                    min_digits: 0,
                    digit_window: 0,
                    max_len: 0,
                    min_len: 1,
                    shape: None,
                    action: c.action,
                }),
                Err(e) => errors.push(format!(
                    "customPatterns[{i}] '{}': the regex does not compile: {}",
                    c.name,
                    e.to_string().lines().last().unwrap_or("invalid")
                )),
            }
        }
        let mut json_paths = Vec::new();
        for (i, rule) in policy.json_paths.iter().enumerate() {
            match jsonpath::Path::parse(&rule.path) {
                Ok(p) => json_paths.push((rule.name.clone(), p, rule.action)),
                Err(reason) => errors.push(format!("jsonPaths[{i}] '{}': path '{}' {reason}", rule.name, rule.path)),
            }
        }
        let uses_hash = policy.default_action == Action::Hash
            || policy.headers.action == Action::Hash
            || policy.detectors.iter().any(|d| d.action == Some(Action::Hash))
            || policy.custom_patterns.iter().any(|c| c.action == Action::Hash)
            || policy.json_paths.iter().any(|r| r.action == Action::Hash);
        if uses_hash && hash_key.as_ref().is_none_or(|k| k.len() < 32) {
            errors.push("a 'hash' action needs an HMAC key of at least 32 bytes (redaction.hashKeyFile)".to_owned());
        }
        if !errors.is_empty() {
            return Err(PolicyError(errors));
        }
        Ok(Self {
            header_mode: policy.headers.mode,
            deny: policy.headers.deny.iter().map(|h| h.to_ascii_lowercase()).collect(),
            allow: policy.headers.allow.iter().map(|h| h.to_ascii_lowercase()).collect(),
            header_action: policy.headers.action,
            secret_key_action: policy.default_action,
            engine: detectors::Engine::new(compiled),
            json_paths,
            hash_key,
            id: NEXT_POLICY.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The default policy (every default detector on, mask).
    /// Compiles the policy of an agent configuration, reading the HMAC key from
    /// `redaction.hashKeyFile` when one is set.
    pub fn from_config(config: &mcp_ledger_crds::AgentConfig) -> Result<Self, PolicyError> {
        let key = match &config.redaction.hash_key_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| PolicyError(vec![format!("redaction.hashKeyFile '{path}' cannot be read: {e}")]))?,
            ),
            None => None,
        };
        Self::compile(&config.redaction.policy, key)
    }

    pub fn new(policy: &McpRedactionPolicySpec) -> Self {
        Self::compile(policy, None).expect("policy compiles")
    }

    /// Redacts header values; names are kept (lower-cased). Names, and values the
    /// detectors found nothing in, repeat on every exchange: they are shared, not copied.
    pub fn headers<'a>(
        &self,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
        summary: &mut BTreeMap<String, u32>,
    ) -> BTreeMap<Arc<str>, Arc<str>> {
        Remembered::with(self.id, |remembered| self.header_lines(remembered, headers, summary).0)
    }

    /// The headers `lines()` yields, redacted as [`Redactor::headers`] redacts them, as
    /// records share them. A set with nothing found in it is remembered whole, by `key`,
    /// so that the next one costs a lookup; a set with anything found in it is not: its
    /// secrets are kept no longer than its records. `lines()` is read only when the set
    /// is new.
    pub fn header_set<'a, I: Iterator<Item = (&'a str, &'a [u8])>>(
        &self,
        key: SetKey<'_>,
        lines: impl FnOnce() -> I,
        summary: &mut BTreeMap<String, u32>,
    ) -> Headers {
        Remembered::with(self.id, |remembered| {
            let mut bytes = std::mem::take(&mut remembered.set_key);
            let set = self.header_set_keyed(remembered, &mut bytes, key, lines, summary);
            if bytes.capacity() <= 2 * REMEMBERED_SET_LONGEST {
                remembered.set_key = bytes;
            }
            set
        })
    }

    fn header_set_keyed<'a, I: Iterator<Item = (&'a str, &'a [u8])>>(
        &self,
        remembered: &mut Remembered,
        bytes: &mut Vec<u8>,
        key: SetKey<'_>,
        lines: impl FnOnce() -> I,
        summary: &mut BTreeMap<String, u32>,
    ) -> Headers {
        // The key's bytes, then where the traceparent's value was left out and how many
        // lines the set has: with those the bytes spell one set only.
        let [before, after] = key.parts;
        let omitted_at = if key.traceparent.is_some() { before.len() as u64 } else { u64::MAX };
        bytes.clear();
        bytes.extend_from_slice(before);
        bytes.extend_from_slice(after);
        bytes.extend_from_slice(&omitted_at.to_le_bytes());
        bytes.extend_from_slice(&(key.lines as u64).to_le_bytes());
        // A remembered set leaves the traceparent out: it is held beside.
        let beside = |set: SharedHeaders| match key.traceparent {
            None => Headers::from(set),
            Some(value) => Headers::with_traceparent(set, value),
        };
        if let Some(set) = remembered.header_sets.get(bytes.as_slice()) {
            return beside(set.clone());
        }
        let (mut headers, clean) = self.header_lines(remembered, lines(), summary);
        // Only a set of distinct names (repeated ones are joined into one value).
        if clean && headers.len() == key.lines && bytes.len() <= REMEMBERED_SET_LONGEST {
            let hash = std::hash::BuildHasher::hash_one(remembered.header_sets.hasher(), bytes.as_slice());
            let seen = &mut remembered.sets_seen_once;
            if seen.len() >= REMEMBERED_SETS {
                seen.clear();
            }
            if !seen.insert(hash) {
                if key.traceparent.is_some() {
                    headers.remove("traceparent");
                }
                let set = Arc::new(headers);
                remember_up_to(&mut remembered.header_sets, REMEMBERED_SETS, bytes.as_slice().into(), set.clone());
                return beside(set);
            }
        }
        Headers::from(Arc::new(headers))
    }

    /// Redacts `headers` with this thread's remembered lines, and says whether nothing was
    /// found in any of them.
    fn header_lines<'a>(
        &self,
        remembered: &mut Remembered,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
        summary: &mut BTreeMap<String, u32>,
    ) -> (BTreeMap<Arc<str>, Arc<str>>, bool) {
        let mut out: BTreeMap<Arc<str>, Arc<str>> = BTreeMap::new();
        let mut all_clean = true;
        let mut line = std::mem::take(&mut remembered.scratch);
        for (name, value) in headers {
            line.clear();
            line.extend_from_slice(name.as_bytes());
            line.push(0);
            line.extend_from_slice(value);
            let (name, text) = match remembered.header_lines.get(line.as_slice()) {
                Some((name, text)) => (name.clone(), text.clone()),
                None => {
                    // Only a line with one NUL is remembered, so no other name and
                    // value can spell it.
                    let one_nul = !name.as_bytes().contains(&0) && !value.contains(&0);
                    let (name, text, fate) = self.header_line(remembered, name, value, summary);
                    if fate == Line::Clean && one_nul && line.len() <= REMEMBERED_LONGEST {
                        let entry = (name.clone(), text.clone());
                        remember(&mut remembered.header_lines, line.as_slice().into(), entry);
                    }
                    all_clean &= fate != Line::Found;
                    (name, text)
                }
            };
            match out.entry(name) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(text);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let joined = format!("{}, {text}", e.get());
                    e.insert(joined.into());
                }
            }
        }
        if line.capacity() <= 4 * REMEMBERED_LONGEST {
            remembered.scratch = line;
        }
        (out, all_clean)
    }

    /// Redacts a JSON message in place: JSON-path rules, keys that name a secret, and every
    /// string (object keys included) through the detectors. Every member of an object is
    /// walked, a repeated key's included.
    pub fn node(&self, value: &mut Node<'_>, summary: &mut BTreeMap<String, u32>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut path = Vec::new();
        if self.walk(value, &mut path, summary, &mut outcome) == Fate::Drop {
            *value = Node::Null;
        }
        outcome
    }

    /// [`Redactor::node`] on a `serde_json::Value`.
    pub fn json(&self, value: &mut Value, summary: &mut BTreeMap<String, u32>) -> Outcome {
        let mut node = Node::from(std::mem::take(value));
        let outcome = self.node(&mut node, summary);
        *value = node.to_value();
        outcome
    }

    fn walk(
        &self,
        value: &mut Node<'_>,
        path: &mut Vec<jsonpath::Step>,
        summary: &mut BTreeMap<String, u32>,
        outcome: &mut Outcome,
    ) -> Fate {
        if !self.json_paths.is_empty() {
            for (name, rule, action) in &self.json_paths {
                if rule.matches(path) {
                    *summary.entry(format!("json-path:{name}")).or_default() += 1;
                    return self.apply_whole(value, name, *action, outcome);
                }
            }
        }
        match value {
            Node::String(s) => match self.scan(s.as_str(), summary) {
                Scan::Clean => Fate::Keep,
                Scan::Replaced(r) => {
                    *s = Text::owned(r);
                    outcome.changed = true;
                    Fate::Keep
                }
                Scan::Drop => {
                    outcome.changed = true;
                    Fate::Drop
                }
                Scan::DropPayload(kind) => {
                    outcome.drop_payload.get_or_insert(kind);
                    outcome.changed = true;
                    Fate::Keep
                }
            },
            Node::Array(items) => {
                let track = !self.json_paths.is_empty();
                for (i, item) in items.iter_mut().enumerate() {
                    if track {
                        path.push(jsonpath::Step::Index(i));
                    }
                    if self.walk(item, path, summary, outcome) == Fate::Drop {
                        *item = Node::Null;
                    }
                    if track {
                        path.pop();
                    }
                }
                Fate::Keep
            }
            Node::Object(members) => {
                let track = !self.json_paths.is_empty();
                let mut dropped = Vec::new();
                for (i, (key, v)) in members.iter_mut().enumerate() {
                    let secret_key = self.key(key, summary, outcome);
                    if track {
                        path.push(jsonpath::Step::Key(key.as_str().to_owned()));
                    }
                    let fate = if key.as_str() == "traceparent" && v.as_str().is_some_and(is_traceparent) {
                        // `_meta.traceparent`, as in the header.
                        Fate::Keep
                    } else if secret_key && !matches!(v, Node::Null | Node::Object(_) | Node::Array(_) | Node::Bool(_))
                    {
                        *summary.entry("secret-key".to_owned()).or_default() += 1;
                        self.apply_whole(v, "secret-key", self.secret_key_action, outcome)
                    } else {
                        self.walk(v, path, summary, outcome)
                    };
                    if track {
                        path.pop();
                    }
                    if fate == Fate::Drop {
                        dropped.push(i);
                    }
                }
                for i in dropped.into_iter().rev() {
                    members.remove(i);
                }
                Fate::Keep
            }
            _ => Fate::Keep,
        }
    }

    /// Redacts an object key as any string, and says whether (as redacted) it names a
    /// secret.
    fn key(&self, key: &mut Text<'_>, summary: &mut BTreeMap<String, u32>, outcome: &mut Outcome) -> bool {
        if let Some(secret) = Remembered::with(self.id, |r| r.keys.get(key.as_str()).copied()) {
            return secret;
        }
        match self.scan(key.as_str(), summary) {
            Scan::Clean => {
                let secret = is_secret_key(key.as_str());
                if key.as_str().len() <= REMEMBERED_LONGEST {
                    Remembered::with(self.id, |r| remember(&mut r.keys, key.as_str().into(), secret));
                }
                return secret;
            }
            Scan::Replaced(r) => *key = Text::owned(r),
            Scan::Drop | Scan::DropPayload(_) => *key = Text::from("[REDACTED]"),
        }
        outcome.changed = true;
        is_secret_key(key.as_str())
    }

    fn apply_whole(&self, value: &mut Node<'_>, kind: &str, action: Action, outcome: &mut Outcome) -> Fate {
        outcome.changed = true;
        match action {
            Action::Mask => {
                *value = Node::string(format!("[REDACTED:{kind}]"));
                Fate::Keep
            }
            Action::Hash => {
                let text = match &*value {
                    Node::String(s) => s.as_str().to_owned(),
                    other => other.to_json(),
                };
                *value = Node::string(self.hmac(kind, &text));
                Fate::Keep
            }
            Action::Drop => Fate::Drop,
            Action::DropPayload => {
                outcome.drop_payload.get_or_insert(format!("rule:{kind}"));
                Fate::Keep
            }
        }
    }

    /// Redacts one string; None when nothing was found. A `drop` or `drop-payload` hit in
    /// a free-standing string (a header value) is masked instead.
    pub fn string(&self, s: &str, summary: &mut BTreeMap<String, u32>) -> Option<String> {
        match self.scan(s, summary) {
            Scan::Clean => None,
            Scan::Replaced(r) => Some(r),
            Scan::Drop | Scan::DropPayload(_) => Some("[REDACTED]".to_owned()),
        }
    }

    /// One header line: the record's name and value, and what may be remembered of it.
    fn header_line(
        &self,
        remembered: &mut Remembered,
        name: &str,
        value: &[u8],
        summary: &mut BTreeMap<String, u32>,
    ) -> (Arc<str>, Arc<str>, Line) {
        let (name, sensitive) = match remembered.header_names.get(name) {
            Some(known) => known.clone(),
            None => {
                let known = self.header_name(name);
                if name.len() <= REMEMBERED_LONGEST {
                    remember(&mut remembered.header_names, name.into(), known.clone());
                }
                known
            }
        };
        if sensitive {
            *summary.entry("header".to_owned()).or_default() += 1;
            let text = match (self.header_action, std::str::from_utf8(value)) {
                (Action::Hash, Ok(v)) => self.hmac("header", v).into(),
                _ => "[REDACTED:header]".into(),
            };
            return (name, text, Line::Found);
        }
        let Ok(value) = std::str::from_utf8(value) else {
            return (name, "[REDACTED:non-utf8]".into(), Line::Found);
        };
        // A well-formed `traceparent` is new on every request: kept, not remembered.
        if &*name == "traceparent" && is_traceparent(value) {
            return (name, value.into(), Line::Fresh);
        }
        match self.string(value, summary) {
            Some(redacted) => (name, redacted.into(), Line::Found),
            None => (name, value.into(), Line::Clean),
        }
    }

    /// A header's name, lower-cased, and whether the header is redacted whole by its name.
    fn header_name(&self, name: &str) -> (Arc<str>, bool) {
        let name = name.to_ascii_lowercase();
        let sensitive = match self.header_mode {
            HeaderMode::DenyList => {
                BUILTIN_DENY.contains(&name.as_str())
                    || SENSITIVE_NAME_PARTS.iter().any(|p| name.contains(p)) && name != "mcp-session-id"
                    // 2026-07-28 `Mcp-Param-*` headers repeat tool arguments; the body
                    // carries them through the JSON rules, the copies are not kept.
                    || name.starts_with("mcp-param-")
                    || self.deny.contains(&name)
            }
            HeaderMode::AllowList => !self.allow.contains(&name),
        };
        (name.into(), sensitive)
    }

    fn scan(&self, s: &str, summary: &mut BTreeMap<String, u32>) -> Scan {
        let mut hits = Vec::new();
        self.engine.scan(s, &mut hits);
        if hits.is_empty() {
            return Scan::Clean;
        }
        let detectors = self.engine.detectors();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut fate = None;
        for h in &hits {
            let d = &detectors[h.detector];
            *summary.entry(d.kind.clone()).or_default() += 1;
            out.push_str(&s[last..h.start]);
            match d.action {
                Action::Mask => {
                    out.push_str("[REDACTED:");
                    out.push_str(&d.kind);
                    out.push(']');
                }
                Action::Hash => out.push_str(&self.hmac(&d.kind, &s[h.start..h.end])),
                Action::Drop => {
                    fate.get_or_insert(Scan::Drop);
                    out.push_str("[REDACTED]");
                }
                Action::DropPayload => {
                    fate = Some(Scan::DropPayload(format!("rule:{}", d.kind)));
                    out.push_str("[REDACTED]");
                }
            }
            last = h.end;
        }
        out.push_str(&s[last..]);
        fate.unwrap_or(Scan::Replaced(out))
    }

    fn hmac(&self, kind: &str, value: &str) -> String {
        use hmac::Mac;
        let Some(key) = &self.hash_key else { return format!("[REDACTED:{kind}]") };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("[HMAC:{kind}:{}]", crate::mcp::trace::to_hex(&digest[..12]))
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Fate {
    Keep,
    Drop,
}

enum Scan {
    Clean,
    Replaced(String),
    Drop,
    DropPayload(String),
}

/// A well-formed W3C `traceparent` is hex ids and flags: nothing to find (a trace id of
/// digits only would look like a card number), and new on every request.
pub(crate) fn is_traceparent(value: &str) -> bool {
    value.len() == 55 && crate::mcp::trace::TraceContext::parse(value).is_some()
}

/// Whether an object key names a secret (`api_key`, `clientSecret`, `X-Auth-Token`, …):
/// compared lower-cased without `_` and `-`. Called for every key of every message, so
/// ASCII keys are folded on the stack.
fn is_secret_key(key: &str) -> bool {
    const NOT_SECRET_TOKENS: &[&str] =
        &["progresstoken", "pagetoken", "nextpagetoken", "nexttoken", "continuationtoken", "synctoken"];
    let check = |folded: &str| {
        SECRET_KEYS.contains(&folded)
            || SECRET_KEY_ENDINGS.iter().any(|k| folded.ends_with(k))
            || (folded.ends_with("token") && !NOT_SECRET_TOKENS.contains(&folded))
    };
    let mut buf = [0u8; 64];
    let mut len = 0;
    for b in key.bytes() {
        if b == b'_' || b == b'-' {
            continue;
        }
        if !b.is_ascii() || len == buf.len() {
            let folded: String = key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
            return check(&folded);
        }
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    check(std::str::from_utf8(&buf[..len]).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(&McpRedactionPolicySpec::default())
    }

    #[test]
    fn a_well_formed_meta_traceparent_is_kept_and_anything_else_there_is_scanned() {
        let r = Redactor::new(&McpRedactionPolicySpec { redact_ip_addresses: true, ..Default::default() });
        // A trace id of digits only: the card and phone detectors would take it for one.
        let tp = "00-41111111111111114111111111111111-1111111111111111-01";
        let mut v = json!({"params": {"_meta": {"traceparent": tp}}});
        let mut summary = BTreeMap::new();
        r.json(&mut v, &mut summary);
        assert_eq!(v["params"]["_meta"]["traceparent"], tp, "{summary:?}");
        // Under the same key, a value that is not a trace context is scanned like any other.
        let mut v = json!({"params": {"_meta": {"traceparent": "card 4111 1111 1111 1111"}}});
        r.json(&mut v, &mut summary);
        assert_eq!(v["params"]["_meta"]["traceparent"], "card [REDACTED:payment-card]");
        // The shape prechecks: strings without the dots, capitals or dashes of a match.
        for (text, kind) in [("10.1.2.3", "ip-address"), ("GB82WEST12345698765432", "iban"), ("078-05-1120", "us-ssn")]
        {
            let mut summary = BTreeMap::new();
            assert!(r.string(&format!("see {text} here"), &mut summary).is_some(), "{kind}");
            assert!(summary.contains_key(kind), "{kind}: {summary:?}");
        }
        let mut summary = BTreeMap::new();
        assert_eq!(r.string("build 2026-11-24 10 1 2 3 gb82 west", &mut summary), None, "{summary:?}");
    }

    #[test]
    fn keyword_guards_only_skip_occurrences_that_cannot_start_a_match() {
        // What each guard relies on, for every family that has one.
        for f in detectors::FAMILIES {
            if f.word_start {
                let pattern = f.pattern.strip_prefix("(?i)").unwrap_or(f.pattern);
                assert!(pattern.starts_with(r"\b"), "{}: word_start needs a pattern that starts with \\b", f.kind);
                for k in f.keywords {
                    assert!(
                        k.as_bytes()[0].is_ascii_alphanumeric(),
                        "{}: keyword {k:?} must start with a word byte",
                        f.kind
                    );
                }
            }
            if f.exact_case {
                assert!(!f.pattern.contains("(?i)"), "{}: exact_case needs a case-sensitive pattern", f.kind);
            }
        }
        let r = redactor();
        let hex32 = "0123456789abcdef0123456789abcdef";
        let cases = [
            // Occurrences inside words and in the wrong case come first; the real one later.
            (format!("ask the task desk about SK{hex32}"), "twilio-api-key"),
            (format!("monkey-patched, then key-{hex32}"), "mailgun-api-key"),
            ("akia and Akia, then AKIAIOSFODNN7EXAMPLE".to_owned(), "aws-access-key-id"),
            ("a key, a token, a secret\nexport GITHUB_TOKEN=ghx-not-a-real-one".to_owned(), "env-secret"),
            ("Bearer-less text, then Authorization: Bearer abcdefghijklmnop1234".to_owned(), "bearer-token"),
            // After a byte past ASCII the guard keeps the occurrence (\b may hold there).
            (format!("é SK{hex32}"), "twilio-api-key"),
        ];
        for (text, kind) in cases {
            let mut summary = BTreeMap::new();
            let out = r.string(&text, &mut summary).unwrap_or_else(|| text.clone());
            assert!(summary.contains_key(kind), "{kind} not found in {text:?}: {out} {summary:?}");
        }
        // Occurrences that cannot start a match leave the string alone.
        for text in
            ["ask the task desk", "monkey-wrench and turkey-dinner", "the api key and the token", "eyjafjallajokull"]
        {
            let mut summary = BTreeMap::new();
            assert_eq!(r.string(text, &mut summary), None, "{text}: {summary:?}");
        }
    }

    #[test]
    fn digit_detectors_find_matches_anywhere_in_long_strings_and_nothing_in_scattered_digits() {
        let r = Redactor::new(&McpRedactionPolicySpec { redact_ip_addresses: true, ..Default::default() });
        let filler = "Rollout of 3 services took 12 minutes; 7 pods restarted and 2 alerts fired. ".repeat(6);
        // Long strings go through the dense-stretch search: at the start, middle and end,
        // next to other digits, and at the very edges of the string.
        let cases = [
            ("4111 1111 1111 1111", "payment-card"),
            ("078-05-1120", "us-ssn"),
            ("GB82 WEST 1234 5698 7654 32", "iban"),
            ("+44 20 7946 0958", "phone"),
            ("10.1.2.3", "ip-address"),
        ];
        for (value, kind) in cases {
            for text in [
                format!("{value} {filler}"),
                format!("{filler}see {value}, then {filler}"),
                format!("{filler}2026-11-24T10:00:00Z {value}"),
            ] {
                let mut summary = BTreeMap::new();
                let out = r.string(&text, &mut summary).unwrap_or_else(|| text.clone());
                assert!(!out.contains(value), "{kind} not found in a {}-byte string: {out}", text.len());
                assert!(summary.contains_key(kind), "{kind}: {summary:?}");
            }
        }
        // Digits that never cluster are left alone.
        let mut summary = BTreeMap::new();
        assert_eq!(r.string(&filler, &mut summary), None, "{summary:?}");
        // A digit run glued to letters is not split by a stretch boundary into a match.
        let glued = format!("{filler}build{}x", "4111111111111111");
        let mut summary = BTreeMap::new();
        assert_eq!(r.string(&glued, &mut summary), None, "{summary:?}");
    }

    #[test]
    fn header_values_are_scanned_once_when_clean_and_every_time_when_not() {
        let r = redactor();
        let key = ["AKIA", "IOSFODNN7", "EXAMPLE"].concat();
        let secret = format!("id={key}");
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace_with_more = format!("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-{key}");
        for round in 0..3 {
            let mut summary = BTreeMap::new();
            let headers: Vec<(&str, &[u8])> = vec![
                ("User-Agent", b"python-httpx/0.28.1"),
                ("X-Note", secret.as_bytes()),
                ("traceparent", trace.as_bytes()),
                ("tracestate", trace_with_more.as_bytes()),
                ("Authorization", b"Bearer not-a-real-token"),
            ];
            let out = r.headers(headers.into_iter(), &mut summary);
            assert_eq!(&*out["user-agent"], "python-httpx/0.28.1", "round {round}");
            assert_eq!(&*out["x-note"], "id=[REDACTED:aws-access-key-id]", "round {round}");
            assert_eq!(&*out["traceparent"], trace);
            assert!(!out["tracestate"].contains(&key), "round {round}: {}", out["tracestate"]);
            assert_eq!(&*out["authorization"], "[REDACTED:header]", "round {round}");
            assert_eq!(summary.get("aws-access-key-id"), Some(&2), "round {round}: {summary:?}");
            assert_eq!(summary.get("header"), Some(&1), "round {round}: {summary:?}");
        }
        Remembered::with(r.id, |remembered| {
            let lines: Vec<String> =
                remembered.header_lines.keys().map(|l| String::from_utf8_lossy(l).replace('\0', ": ")).collect();
            assert!(lines.iter().any(|l| l == "User-Agent: python-httpx/0.28.1"), "{lines:?}");
            assert!(!lines.iter().any(|l| l.contains(&key)), "values with findings are never remembered: {lines:?}");
            assert!(!lines.iter().any(|l| l.starts_with("traceparent")), "{lines:?}");
            assert!(!lines.iter().any(|l| l.contains("not-a-real-token")), "no sensitive value: {lines:?}");
        });
    }

    #[test]
    fn a_remembered_header_line_is_never_another_name_and_value() {
        // `name NUL value` is the lookup: a name or value holding a NUL could spell
        // another header's line, so such lines are not remembered.
        let r = redactor();
        let mut summary = BTreeMap::new();
        let first = r.headers([("x\0y", b"z".as_slice())].into_iter(), &mut summary);
        assert_eq!(first.keys().map(|k| &**k).collect::<Vec<_>>(), ["x\0y"]);
        let second = r.headers([("x", b"y\0z".as_slice())].into_iter(), &mut summary);
        assert_eq!(second.iter().map(|(k, v)| (&**k, &**v)).collect::<Vec<_>>(), [("x", "y\0z")]);
    }

    #[test]
    fn sensitive_headers_are_masked_and_others_kept() {
        let mut summary = BTreeMap::new();
        let headers: Vec<(&str, &[u8])> = vec![
            ("Authorization", b"Bearer abc.def.ghi"),
            ("X-Upstream-Token", b"t0k3n"),
            ("Content-Type", b"application/json"),
            ("Mcp-Session-Id", b"abc123"),
            ("Mcp-Param-Password", b"hunter2"),
            ("Mcp-Name", b"search"),
        ];
        let out = redactor().headers(headers.into_iter(), &mut summary);
        assert_eq!(&*out["authorization"], "[REDACTED:header]");
        assert_eq!(&*out["x-upstream-token"], "[REDACTED:header]");
        assert_eq!(&*out["content-type"], "application/json");
        assert_eq!(&*out["mcp-session-id"], "abc123");
        assert_eq!(&*out["mcp-param-password"], "[REDACTED:header]");
        assert_eq!(&*out["mcp-name"], "search");
        assert_eq!(summary["header"], 3);
    }

    #[test]
    fn secrets_in_json_are_removed() {
        let aws = "AKIAIOSFODNN7EXAMPLE";
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let mut v =
            json!({"params": {"arguments": {"password": "hunter2", "note": format!("key {aws} and {jwt}"), "n": 5}}});
        let mut summary = BTreeMap::new();
        redactor().json(&mut v, &mut summary);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains(aws) && !text.contains(&jwt[..20]), "{text}");
        assert_eq!(v["params"]["arguments"]["n"], 5);
        assert_eq!(summary["secret-key"], 1);
        assert_eq!(summary["aws-access-key-id"], 1);
        assert_eq!(summary["jwt"], 1);
    }

    #[test]
    fn every_copy_of_a_repeated_key_is_redacted() {
        // A server's parser keeps one of the copies (most keep the last); the record keeps
        // them all, so each is scanned, and a dropped one goes without its twin.
        let aws = "AKIAIOSFODNN7EXAMPLE";
        let text = format!(
            r#"{{"note":"key {aws}","note":"hello","password":"hunter2","password":null,"x":"\u0041KIAIOSFODNN7EXAMPLE"}}"#
        );
        let r = Redactor::new(&McpRedactionPolicySpec {
            detectors: vec![mcp_ledger_crds::redaction::DetectorSwitch {
                name: "aws-access-key-id".into(),
                enabled: true,
                action: Some(Action::Drop),
            }],
            ..Default::default()
        });
        let mut node = Node::parse(text.as_bytes()).unwrap();
        let mut summary = BTreeMap::new();
        r.node(&mut node, &mut summary);
        assert_eq!(node.to_json(), r#"{"note":"hello","password":"[REDACTED:secret-key]","password":null}"#);
        assert_eq!(summary["aws-access-key-id"], 2, "the escaped copy is found too");
    }

    #[test]
    fn the_keyword_automaton_stays_small() {
        // Every sidecar holds one (a DFA, for speed): it must not dominate the agent's memory.
        let bytes = redactor().engine.prefilter_bytes();
        assert!(bytes > 0 && bytes < 1024 * 1024, "keyword automaton takes {bytes} bytes");
    }

    #[test]
    fn protocol_keys_are_not_secrets() {
        for key in ["progressToken", "nextCursor", "tokens", "keyword", "sessionId"] {
            assert!(!is_secret_key(key), "{key}");
        }
        for key in
            ["password", "GITHUB_TOKEN", "githubToken", "client_secret", "AWS_SECRET_ACCESS_KEY", "x-api-key", "apiKey"]
        {
            assert!(is_secret_key(key), "{key}");
        }
        // Past the stack buffer and outside ASCII the same rules hold.
        let long = format!("{}_access_token", "x".repeat(80));
        assert!(is_secret_key(&long));
        assert!(!is_secret_key(&"x".repeat(80)));
        assert!(is_secret_key("Zugangs-Passwort-Ä_password"));
        assert!(!is_secret_key("Überschrift"));
    }

    #[test]
    fn a_policy_that_does_not_compile_is_refused_naming_the_rule() {
        use mcp_ledger_crds::redaction::{CustomPattern, DetectorSwitch, JsonPathRule};
        let policy = McpRedactionPolicySpec {
            detectors: vec![DetectorSwitch { name: "no-such-detector".into(), enabled: false, action: None }],
            custom_patterns: vec![CustomPattern {
                name: "employee-id".into(),
                regex: "EMP-(".into(),
                keywords: vec![],
                action: Action::Mask,
            }],
            json_paths: vec![JsonPathRule { name: "pw".into(), path: "params.password".into(), action: Action::Drop }],
            default_action: Action::Hash,
            ..Default::default()
        };
        let err = Redactor::compile(&policy, None).unwrap_err().to_string();
        for needle in [
            "detectors[0] 'no-such-detector': unknown detector",
            "customPatterns[0] 'employee-id': the regex does not compile",
            "jsonPaths[0] 'pw': path 'params.password' must start with '$'",
            "a 'hash' action needs an HMAC key",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
    }

    #[test]
    fn actions_mask_hash_drop_and_drop_payload() {
        use mcp_ledger_crds::redaction::{CustomPattern, DetectorSwitch, JsonPathRule};
        let key = b"0123456789abcdef0123456789abcdef-test-only".to_vec();
        let policy = McpRedactionPolicySpec {
            detectors: vec![DetectorSwitch { name: "email".into(), enabled: true, action: Some(Action::Hash) }],
            json_paths: vec![
                JsonPathRule { name: "card".into(), path: "$.params.arguments.card".into(), action: Action::Drop },
                JsonPathRule { name: "blob".into(), path: "$..attachment".into(), action: Action::DropPayload },
            ],
            custom_patterns: vec![CustomPattern {
                name: "employee-id".into(),
                regex: "EMP-[0-9]{6}".into(),
                keywords: vec!["emp-".into()],
                action: Action::Mask,
            }],
            ..Default::default()
        };
        let r = Redactor::compile(&policy, Some(key)).unwrap();
        let mut summary = BTreeMap::new();
        let mut v = json!({"params": {"arguments": {"card": "x", "who": "ana@example.com", "again": "ana@example.com", "id": "EMP-123456", "other": "bob@example.org"}}});
        assert_eq!(r.json(&mut v, &mut summary), Outcome { drop_payload: None, changed: true });
        let args = &v["params"]["arguments"];
        assert!(args.get("card").is_none(), "dropped field: {v}");
        let who = args["who"].as_str().unwrap();
        assert!(who.starts_with("[HMAC:email:"), "{who}");
        assert_eq!(args["again"], args["who"], "equal values hash equally");
        assert_ne!(args["other"], args["who"]);
        assert_eq!(args["id"], "[REDACTED:employee-id]");
        let mut v = json!({"result": {"content": [{"attachment": "..."}]}});
        assert_eq!(r.json(&mut v, &mut summary).drop_payload.as_deref(), Some("rule:blob"));
    }

    #[test]
    fn short_custom_matches_are_redacted() {
        use mcp_ledger_crds::redaction::CustomPattern;
        let policy = McpRedactionPolicySpec {
            custom_patterns: vec![CustomPattern {
                name: "pin".into(),
                regex: "^[0-9]{4}$".into(),
                keywords: vec![],
                action: Action::Mask,
            }],
            ..Default::default()
        };
        let r = Redactor::compile(&policy, None).unwrap();
        let mut summary = BTreeMap::new();
        assert_eq!(r.string("4821", &mut summary).as_deref(), Some("[REDACTED:pin]"));
    }

    #[test]
    fn remembered_clean_keys_belong_to_the_policy_that_scanned_them() {
        use mcp_ledger_crds::redaction::CustomPattern;
        let message = r#"{"region":"eu","apiKey":"not-a-real-key","nested":{"region":"us"}}"#;
        let run = |r: &Redactor| {
            let mut node = Node::parse(message.as_bytes()).unwrap();
            let mut summary = BTreeMap::new();
            r.node(&mut node, &mut summary);
            (node.to_json(), summary)
        };
        let plain = redactor();
        let expected = r#"{"region":"eu","apiKey":"[REDACTED:secret-key]","nested":{"region":"us"}}"#;
        // The second message is read with the keys remembered from the first.
        for _ in 0..2 {
            let (text, summary) = run(&plain);
            assert_eq!(text, expected);
            assert_eq!(summary["secret-key"], 1);
        }
        // A policy whose pattern matches a key the first one found clean.
        let strict = Redactor::compile(
            &McpRedactionPolicySpec {
                custom_patterns: vec![CustomPattern {
                    name: "region-key".into(),
                    regex: "^region$".into(),
                    keywords: vec![],
                    action: Action::Mask,
                }],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        for _ in 0..2 {
            let (text, summary) = run(&strict);
            assert_eq!(
                text,
                r#"{"[REDACTED:region-key]":"eu","apiKey":"[REDACTED:secret-key]","nested":{"[REDACTED:region-key]":"us"}}"#
            );
            assert_eq!(summary["region-key"], 2);
        }
        // And back: the first policy's verdicts are not taken from the second's.
        assert_eq!(run(&plain).0, expected);
    }
    #[test]
    fn detector_switches_turn_families_and_groups_off() {
        use mcp_ledger_crds::redaction::DetectorSwitch;
        let policy = McpRedactionPolicySpec {
            detectors: vec![
                DetectorSwitch { name: "pii".into(), enabled: false, action: None },
                DetectorSwitch { name: "email".into(), enabled: true, action: None },
            ],
            ..Default::default()
        };
        let r = Redactor::compile(&policy, None).unwrap();
        let mut summary = BTreeMap::new();
        let out = r.string("mail ana@example.com or call +44 20 7946 0958", &mut summary).unwrap();
        assert!(out.contains("[REDACTED:email]") && out.contains("+44 20 7946 0958"), "{out}");
    }

    #[test]
    fn a_message_is_called_changed_exactly_when_its_redacted_text_differs() {
        use mcp_ledger_crds::redaction::JsonPathRule;
        let policy = McpRedactionPolicySpec {
            json_paths: vec![JsonPathRule {
                name: "card".into(),
                path: "$.params.arguments.card".into(),
                action: Action::Drop,
            }],
            ..Default::default()
        };
        let with_path = Redactor::compile(&policy, None).unwrap();
        let cases = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"the sky is blue"}],"isError":false}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"x","params":{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"x","params":{"text":"mail ana@example.com"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"x","params":{"api_key":"abc"}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"x","params":{"ana@example.com":1}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"x","params":{"list":["AKIAIOSFODNN7EXAMPLE",2]}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"card":"4111","n":1}}}"#,
        ];
        for redactor in [redactor(), with_path] {
            for case in cases {
                let mut node = Node::parse(case.as_bytes()).unwrap();
                let before = node.to_json();
                let outcome = redactor.node(&mut node, &mut BTreeMap::new());
                assert_eq!(outcome.changed, node.to_json() != before, "{case} -> {}", node.to_json());
            }
        }
        // Each kind of change is seen (the cases above are not all clean).
        let changed = cases
            .iter()
            .filter(|c| redactor().node(&mut Node::parse(c.as_bytes()).unwrap(), &mut BTreeMap::new()).changed)
            .count();
        assert_eq!(changed, 4);
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let mut summary = BTreeMap::new();
        assert_eq!(redactor().string("the sky is blue; AKIA is a prefix; sk-short", &mut summary), None);
        assert!(summary.is_empty());
    }
}
