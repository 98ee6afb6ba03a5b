//! Redaction applied to every record before it leaves the process.
//!
//! UNFINISHED (issue 4): this is the first, deliberately small engine — header rules from
//! the policy (built-in deny list, extra names, allow-list mode), JSON object keys that
//! name a secret, the policy's custom keyword detection, and a handful of unmistakable
//! credential shapes (JWTs, bearer tokens, PEM private keys, AWS access key ids, `sk-`
//! API keys, credentials in URLs). The full detector families, JSON-path rules, keyed
//! hashing and the labelled corpus come with issue 4.

use std::collections::BTreeMap;

use mcp_ledger_crds::redaction::{HeaderMode, McpRedactionPolicySpec};
use serde_json::Value;

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

/// A compiled redaction policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    header_mode: HeaderMode,
    deny: Vec<String>,
    allow: Vec<String>,
}

impl Redactor {
    /// Compiles a policy.
    pub fn new(policy: &McpRedactionPolicySpec) -> Self {
        Self {
            header_mode: policy.headers.mode,
            deny: policy.headers.deny.iter().map(|h| h.to_ascii_lowercase()).collect(),
            allow: policy.headers.allow.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Redacts header values; names are kept (lower-cased).
    pub fn headers<'a>(
        &self,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
        summary: &mut BTreeMap<String, u32>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            let sensitive = match self.header_mode {
                HeaderMode::DenyList => {
                    BUILTIN_DENY.contains(&name.as_str())
                        || SENSITIVE_NAME_PARTS.iter().any(|p| name.contains(p)) && name != "mcp-session-id"
                        || self.deny.contains(&name)
                }
                HeaderMode::AllowList => !self.allow.contains(&name),
            };
            let text = if sensitive {
                *summary.entry("header".to_owned()).or_default() += 1;
                "[REDACTED:header]".to_owned()
            } else {
                match std::str::from_utf8(value) {
                    Ok(v) => self.string(v, summary).unwrap_or_else(|| v.to_owned()),
                    Err(_) => "[REDACTED:non-utf8]".to_owned(),
                }
            };
            match out.entry(name) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(text);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let joined = format!("{}, {text}", e.get());
                    e.insert(joined);
                }
            }
        }
        out
    }

    /// Redacts every string of a JSON value in place, and every value under a key that
    /// names a secret.
    pub fn json(&self, value: &mut Value, summary: &mut BTreeMap<String, u32>) {
        match value {
            Value::String(s) => {
                if let Some(r) = self.string(s, summary) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v, summary)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if is_secret_key(key) && !matches!(v, Value::Null | Value::Object(_) | Value::Array(_)) {
                        *summary.entry("secret-key".to_owned()).or_default() += 1;
                        *v = Value::String("[REDACTED:secret-key]".to_owned());
                    } else {
                        self.json(v, summary);
                    }
                }
            }
            _ => {}
        }
    }

    /// Redacts one string; None when nothing was found.
    pub fn string(&self, s: &str, summary: &mut BTreeMap<String, u32>) -> Option<String> {
        let mut out: Option<String> = None;
        for detector in DETECTORS {
            let current = out.as_deref().unwrap_or(s);
            if let Some(replaced) = detector.apply(current) {
                *summary.entry(detector.kind.to_owned()).or_default() += replaced.1;
                out = Some(replaced.0);
            }
        }
        out
    }
}

fn is_secret_key(key: &str) -> bool {
    let folded: String = key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
    const NOT_SECRET_TOKENS: &[&str] =
        &["progresstoken", "pagetoken", "nextpagetoken", "nexttoken", "continuationtoken", "synctoken"];
    SECRET_KEYS.contains(&folded.as_str())
        || SECRET_KEY_ENDINGS.iter().any(|k| folded.ends_with(k))
        || (folded.ends_with("token") && !NOT_SECRET_TOKENS.contains(&folded.as_str()))
}

/// A token-shaped detector: a prefix and the characters that may follow it.
struct Detector {
    kind: &'static str,
    prefixes: &'static [&'static str],
    min_tail: usize,
    tail: fn(u8) -> bool,
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
fn jwt_char(b: u8) -> bool {
    token_char(b) || b == b'.'
}
fn upper_alnum(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn b64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=_-.~".contains(&b)
}
fn pem_char(b: u8) -> bool {
    b != b'"'
}

const DETECTORS: &[Detector] = &[
    Detector { kind: "private-key", prefixes: &["-----BEGIN "], min_tail: 20, tail: pem_char },
    Detector { kind: "jwt", prefixes: &["eyJ"], min_tail: 20, tail: jwt_char },
    Detector { kind: "bearer-token", prefixes: &["Bearer ", "bearer "], min_tail: 8, tail: b64_char },
    Detector { kind: "aws-access-key-id", prefixes: &["AKIA", "ASIA"], min_tail: 16, tail: upper_alnum },
    Detector {
        kind: "api-key",
        prefixes: &["sk-", "ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-", "glpat-"],
        min_tail: 16,
        tail: token_char,
    },
];

impl Detector {
    fn apply(&self, s: &str) -> Option<(String, u32)> {
        let shortest = self.prefixes.iter().map(|p| p.len()).min().unwrap_or(0) + self.min_tail;
        if s.len() < shortest {
            return None; // too short to hold a match: most protocol strings end here
        }
        let bytes = s.as_bytes();
        let mut out = String::new();
        let mut last = 0;
        let mut count = 0;
        let mut from = 0;
        // Each prefix is searched with `str::find` (a vectorised substring search), so a
        // clean string costs one fast pass per prefix rather than a compare at every byte.
        while from < bytes.len() {
            let Some((at, prefix)) =
                self.prefixes.iter().filter_map(|p| s[from..].find(p).map(|i| (from + i, *p))).min_by_key(|(i, _)| *i)
            else {
                break;
            };
            let start = at + prefix.len();
            let mut end = start;
            while end < bytes.len() && (self.tail)(bytes[end]) {
                end += 1;
            }
            let boundary_ok = at == 0 || !token_char(bytes[at - 1]);
            if end - start >= self.min_tail && boundary_ok {
                out.push_str(&s[last..at]);
                out.push_str("[REDACTED:");
                out.push_str(self.kind);
                out.push(']');
                last = end;
                count += 1;
                from = end;
            } else {
                from = at + 1;
                while !s.is_char_boundary(from) {
                    from += 1;
                }
            }
        }
        if count == 0 {
            return None;
        }
        out.push_str(&s[last..]);
        Some((out, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(&McpRedactionPolicySpec::default())
    }

    #[test]
    fn sensitive_headers_are_masked_and_others_kept() {
        let mut summary = BTreeMap::new();
        let headers: Vec<(&str, &[u8])> = vec![
            ("Authorization", b"Bearer abc.def.ghi"),
            ("X-Upstream-Token", b"t0k3n"),
            ("Content-Type", b"application/json"),
            ("Mcp-Session-Id", b"abc123"),
        ];
        let out = redactor().headers(headers.into_iter(), &mut summary);
        assert_eq!(out["authorization"], "[REDACTED:header]");
        assert_eq!(out["x-upstream-token"], "[REDACTED:header]");
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["mcp-session-id"], "abc123");
        assert_eq!(summary["header"], 2);
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
    fn protocol_keys_are_not_secrets() {
        for key in ["progressToken", "nextCursor", "tokens", "keyword", "sessionId"] {
            assert!(!is_secret_key(key), "{key}");
        }
        for key in
            ["password", "GITHUB_TOKEN", "githubToken", "client_secret", "AWS_SECRET_ACCESS_KEY", "x-api-key", "apiKey"]
        {
            assert!(is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let mut summary = BTreeMap::new();
        assert_eq!(redactor().string("the sky is blue; AKIA is a prefix; sk-short", &mut summary), None);
        assert!(summary.is_empty());
    }
}
