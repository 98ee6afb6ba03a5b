//! The built-in detector families and the scanning engine: an Aho-Corasick keyword
//! prefilter (case-insensitive) picks the few families whose keywords occur in a string,
//! and only their regular expressions run; a validity check (Luhn, mod-97, SSN rules,
//! entropy) confirms a match where the pattern alone would be too loose.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::Regex;

use super::checks;

/// Detector groups, switchable as a whole in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Credentials, API keys, tokens, private keys.
    Secrets,
    /// Environment-variable dumps with sensitive names.
    Env,
    /// Personal data.
    Pii,
}

impl Group {
    /// The group's policy name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Secrets => "secrets",
            Self::Env => "env",
            Self::Pii => "pii",
        }
    }
}

/// A built-in family.
pub struct Family {
    /// Kind name: `[REDACTED:<kind>]`, metrics, policy switches.
    pub kind: &'static str,
    /// Group.
    pub group: Group,
    /// Literal keywords (case-insensitive unless `exact_case`); empty means "always a
    /// candidate" (then `min_digits` is the prefilter).
    pub keywords: &'static [&'static str],
    /// The pattern is case-sensitive and holds each keyword as written: an occurrence in
    /// another case cannot be part of a match.
    pub exact_case: bool,
    /// Every match starts with one of the keywords right after a `\b`: an occurrence
    /// inside a word ("task" for `sk`) cannot start a match.
    pub word_start: bool,
    /// The regular expression.
    pub pattern: &'static str,
    /// Which capture group is the secret (0: the whole match).
    pub capture: usize,
    /// A check the matched text must pass.
    pub check: Option<fn(&str) -> bool>,
    /// For keyword-less families: a match holds at least this many digits ...
    pub min_digits: usize,
    /// ... within this many bytes (0: anywhere); only the stretches of a string where
    /// that holds are searched, as far around as `max_len` reaches.
    pub digit_window: usize,
    /// The longest match of a family with a digit window, in bytes.
    pub max_len: usize,
    /// Bytes every match holds (the dots of an IPv4 address, say): a short string without
    /// them is not searched.
    pub shape: Option<fn(&str) -> bool>,
    /// Off unless the policy turns it on.
    pub off_by_default: bool,
}

const fn fam(kind: &'static str, group: Group, keywords: &'static [&'static str], pattern: &'static str) -> Family {
    Family {
        kind,
        group,
        keywords,
        exact_case: false,
        word_start: false,
        pattern,
        capture: 0,
        check: None,
        min_digits: 0,
        digit_window: 0,
        max_len: 0,
        shape: None,
        off_by_default: false,
    }
}

/// A case-sensitive family whose matches start with a keyword at a word boundary.
const fn lit(f: Family) -> Family {
    word(exact(f))
}

/// A family whose pattern holds its keywords case-sensitively, as written.
const fn exact(mut f: Family) -> Family {
    f.exact_case = true;
    f
}

/// A family whose matches start with a keyword at a word boundary.
const fn word(mut f: Family) -> Family {
    f.word_start = true;
    f
}

const fn cap(mut f: Family, capture: usize) -> Family {
    f.capture = capture;
    f
}

const fn checked(mut f: Family, check: fn(&str) -> bool) -> Family {
    f.check = Some(check);
    f
}

fn generic_value(v: &str) -> bool {
    const PLACEHOLDERS: &[&str] =
        &["null", "none", "true", "false", "undefined", "redacted", "example", "changeme", "required", "optional"];
    let lower = v.to_ascii_lowercase();
    // Code reads like `token = getToken()` or `secret = config.value`: identifiers without
    // digits or symbols are not secrets unless long.
    let identifier_like = v.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == '.' || c == '(' || c == ')');
    v.len() >= 6
        && !v.starts_with('[')
        && !v.starts_with('$')
        && !v.starts_with('<')
        && !v.starts_with('{')
        && !v.chars().all(|c| c == '*' || c == 'x' || c == 'X')
        && !PLACEHOLDERS.contains(&lower.as_str())
        && !(identifier_like && (v.len() < 16 || v.contains('.')))
        && !v.contains('(')
        && checks::entropy(v) >= 2.5
}

fn env_value(v: &str) -> bool {
    let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
    !v.is_empty() && !v.starts_with("[REDACTED") && !v.starts_with("${") && v != "\"\""
}

fn card(v: &str) -> bool {
    checks::luhn(v) && checks::card_prefix(v)
}

fn count_byte(s: &str, byte: u8) -> usize {
    s.bytes().filter(|&b| b == byte).count()
}

/// An IPv4 match has three dots, an IPv6 match (the full form the pattern takes) seven colons.
fn ip_shape(s: &str) -> bool {
    count_byte(s, b'.') >= 3 || count_byte(s, b':') >= 7
}

/// An IBAN match starts with a two-letter country code in capitals.
fn iban_shape(s: &str) -> bool {
    s.bytes().filter(u8::is_ascii_uppercase).nth(1).is_some()
}

/// An SSN match has two dashes.
fn ssn_shape(s: &str) -> bool {
    count_byte(s, b'-') >= 2
}

/// Every built-in family, in priority order (earlier families win overlapping matches).
pub static FAMILIES: &[Family] = &[
    // --- private keys and structured tokens first: they contain shapes later families also match
    exact(fam(
        "private-key",
        Group::Secrets,
        &["-----BEGIN"],
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
    )),
    lit(fam(
        "kubernetes-service-account-token",
        Group::Secrets,
        &["eyJ"],
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]*(?:a3ViZXJuZXRlcy5pby9zZXJ2aWNlYWNjb3VudC|t1YmVybmV0ZXMuaW8vc2VydmljZWFjY291bn|rdWJlcm5ldGVzLmlvL3NlcnZpY2VhY2NvdW50)[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{8,}",
    )),
    lit(fam("jwt", Group::Secrets, &["eyJ"], r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    lit(fam("anthropic-api-key", Group::Secrets, &["sk-ant-"], r"\bsk-ant-(?:api|admin|oat)\d{2}-[A-Za-z0-9_-]{32,}")),
    lit(fam(
        "openai-api-key",
        Group::Secrets,
        &["sk-"],
        r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}|\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}",
    )),
    lit(fam(
        "aws-access-key-id",
        Group::Secrets,
        &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
    )),
    cap(
        fam(
            "aws-secret-access-key",
            Group::Secrets,
            &["secret_access_key", "secretaccesskey", "aws_secret", "secret-access-key"],
            r#"(?i)(?:aws[_-]?)?secret[_-]?access[_-]?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})\b"#,
        ),
        1,
    ),
    lit(fam("github-pat", Group::Secrets, &["ghp_"], r"\bghp_[A-Za-z0-9]{36}\b")),
    lit(fam(
        "github-fine-grained-pat",
        Group::Secrets,
        &["github_pat_"],
        r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b",
    )),
    lit(fam("github-oauth-token", Group::Secrets, &["gho_"], r"\bgho_[A-Za-z0-9]{36}\b")),
    lit(fam("github-app-token", Group::Secrets, &["ghu_", "ghs_"], r"\bgh[us]_[A-Za-z0-9]{36}\b")),
    lit(fam("github-refresh-token", Group::Secrets, &["ghr_"], r"\bghr_[A-Za-z0-9]{36,76}\b")),
    lit(fam(
        "gitlab-token",
        Group::Secrets,
        &["glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glcbt-", "glffct-"],
        r"\bgl(?:pat|dt|rt|ptt|soat|cbt|ffct)-[A-Za-z0-9_-]{20,}",
    )),
    lit(fam(
        "slack-token",
        Group::Secrets,
        &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe"],
        r"\bxox(?:[abprs]|e(?:\.xox[bp])?)-[A-Za-z0-9-]{10,}",
    )),
    lit(fam("slack-app-token", Group::Secrets, &["xapp-"], r"\bxapp-\d-[A-Z0-9]+-\d+-[a-f0-9]{20,}")),
    exact(fam(
        "slack-webhook-url",
        Group::Secrets,
        &["hooks.slack.com"],
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_+-]{20,}",
    )),
    lit(fam(
        "stripe-key",
        Group::Secrets,
        &["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"],
        r"\b(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})",
    )),
    lit(fam("google-api-key", Group::Secrets, &["AIza"], r"\bAIza[0-9A-Za-z_-]{35}")),
    cap(
        exact(fam(
            "gcp-service-account-key-id",
            Group::Secrets,
            &["private_key_id"],
            r#""private_key_id"\s*:\s*"([a-f0-9]{40})""#,
        )),
        1,
    ),
    cap(fam("azure-storage-key", Group::Secrets, &["accountkey="], r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)"), 1),
    cap(
        fam(
            "azure-shared-access-key",
            Group::Secrets,
            &["sharedaccesskey=", "sharedaccesssignature=", "sig="],
            r"(?i)(?:SharedAccessKey|SharedAccessSignature|[?&]sig)=([A-Za-z0-9+/%=]{20,})",
        ),
        1,
    ),
    cap(
        word(fam(
            "database-connection-string",
            Group::Secrets,
            &["postgres", "mysql", "mongodb", "redis", "amqp", "mssql", "sqlserver", "jdbc"],
            r"(?i)\b(?:jdbc:)?(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver)://[^\s:@/]*:([^\s@/]+)@",
        )),
        1,
    ),
    cap(fam("url-credentials", Group::Secrets, &["://"], r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:@/]+:([^\s@/]{3,})@"), 1),
    cap(word(fam("bearer-token", Group::Secrets, &["bearer"], r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)")), 1),
    cap(word(fam("basic-auth", Group::Secrets, &["basic "], r"(?i)\bbasic\s+([A-Za-z0-9+/]{12,}={0,2})")), 1),
    lit(fam("npm-token", Group::Secrets, &["npm_"], r"\bnpm_[A-Za-z0-9]{36}\b")),
    lit(fam("pypi-token", Group::Secrets, &["pypi-AgEIcHlwaS5vcmc"], r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}")),
    lit(fam("twilio-api-key", Group::Secrets, &["SK"], r"\bSK[0-9a-f]{32}\b")),
    cap(fam("twilio-auth-token", Group::Secrets, &["twilio"], r#"(?i)twilio[\w\s"':=-]{0,30}?\b([0-9a-f]{32})\b"#), 1),
    lit(fam("sendgrid-api-key", Group::Secrets, &["SG."], r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")),
    cap(
        fam(
            "datadog-api-key",
            Group::Secrets,
            &["datadog", "dd_api", "dd-api", "dd_app", "dd-app", "ddapi", "ddapp"],
            r#"(?i)(?:datadog|dd)[_-]?(?:api|app(?:lication)?)[_-]?key["']?\s*[:=]\s*["']?([a-f0-9]{32,40})\b"#,
        ),
        1,
    ),
    lit(fam("vault-token", Group::Secrets, &["hvs.", "hvb.", "hvr."], r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}")),
    lit(fam(
        "shopify-token",
        Group::Secrets,
        &["shpat_", "shpss_", "shpca_", "shppa_"],
        r"\bshp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b",
    )),
    lit(fam("huggingface-token", Group::Secrets, &["hf_"], r"\bhf_[A-Za-z]{34}\b")),
    lit(fam("digitalocean-token", Group::Secrets, &["dop_v1_", "doo_v1_", "dor_v1_"], r"\bdo[opr]_v1_[a-f0-9]{64}\b")),
    lit(fam("mailgun-api-key", Group::Secrets, &["key-"], r"\bkey-[0-9a-f]{32}\b")),
    lit(fam(
        "square-token",
        Group::Secrets,
        &["sq0atp-", "sq0csp-", "EAAA"],
        r"\b(?:sq0atp-[0-9A-Za-z_-]{22}|sq0csp-[0-9A-Za-z_-]{43}|EAAA[0-9A-Za-z_-]{60})",
    )),
    lit(fam("atlassian-api-token", Group::Secrets, &["ATATT3"], r"\bATATT3[A-Za-z0-9_=-]{180,}")),
    lit(fam("linear-api-key", Group::Secrets, &["lin_api_"], r"\blin_api_[A-Za-z0-9]{40}\b")),
    lit(fam(
        "doppler-token",
        Group::Secrets,
        &["dp.pt.", "dp.st.", "dp.sa."],
        r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}\b",
    )),
    lit(fam("databricks-token", Group::Secrets, &["dapi"], r"\bdapi[a-f0-9]{32}(?:-\d)?\b")),
    exact(fam(
        "discord-webhook-url",
        Group::Secrets,
        &["discord.com/api/webhooks", "discordapp.com/api/webhooks"],
        r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{60,}",
    )),
    exact(fam("telegram-bot-token", Group::Secrets, &[":AA"], r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}\b")),
    checked(
        cap(
            fam(
                "generic-secret",
                Group::Secrets,
                &["password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "api-key", "access_key", "auth"],
                r#"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|auth[_-]?token|client[_-]?secret|private[_-]?key)\b["']?\s*(?:[:=]|is\b)\s*["']?([^\s"',;}\]]{6,})"#,
            ),
            1,
        ),
        generic_value,
    ),
    // --- environment dumps: NAME=value lines and NAME: value maps with sensitive names
    checked(
        cap(
            exact(fam(
                "env-secret",
                Group::Env,
                &["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "PWD", "AUTH"],
                r"(?m)^[ \t]*(?:export[ \t]+)?[A-Z][A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PWD|AUTH)[A-Z0-9_]*[ \t]*(?:=|:[ \t])[ \t]*(.+?)[ \t]*$",
            )),
            1,
        ),
        env_value,
    ),
    // --- personal data
    fam("email", Group::Pii, &["@"], r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    checked(
        Family {
            min_digits: 13,
            digit_window: 26,
            max_len: 37,
            ..fam("payment-card", Group::Pii, &[], r"\b(?:\d[ -]?){12,18}\d\b")
        },
        card,
    ),
    checked(
        Family {
            min_digits: 9,
            digit_window: 11,
            max_len: 11,
            shape: Some(ssn_shape),
            ..fam("us-ssn", Group::Pii, &[], r"\b\d{3}-\d{2}-\d{4}\b")
        },
        checks::ssn,
    ),
    checked(
        Family {
            min_digits: 10,
            digit_window: 43,
            max_len: 43,
            shape: Some(iban_shape),
            ..fam("iban", Group::Pii, &[], r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
        },
        checks::iban,
    ),
    Family {
        min_digits: 8,
        digit_window: 24,
        max_len: 40,
        ..fam(
            "phone",
            Group::Pii,
            &[],
            r"(?:\+[1-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}\b|\(\d{3}\) ?\d{3}[ .-]\d{4}\b|\b\d{3}[.-]\d{3}[.-]\d{4}\b|\b0\d{2,4} \d{3,4} \d{3,4}\b)",
        )
    },
    Family {
        min_digits: 4,
        digit_window: 39,
        max_len: 39,
        shape: Some(ip_shape),
        off_by_default: true,
        ..fam(
            "ip-address",
            Group::Pii,
            &[],
            r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b|\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b",
        )
    },
];

/// One compiled detector (built-in or custom).
pub struct Detector {
    /// Kind name.
    pub kind: String,
    /// Prefilter keywords (case-insensitive unless `exact_case`); empty: a candidate for
    /// every string.
    pub keywords: Vec<String>,
    /// Only an occurrence of a keyword in the case written makes it a candidate.
    pub exact_case: bool,
    /// Only an occurrence of a keyword that starts a word makes it a candidate.
    pub word_start: bool,
    /// The pattern.
    pub regex: Regex,
    /// The capture group that holds the secret (0: the whole match).
    pub capture: usize,
    /// A check the match must pass.
    pub check: Option<fn(&str) -> bool>,
    /// For keyword-less detectors: digits a match holds ...
    pub min_digits: usize,
    /// ... within this many bytes (0: anywhere in the string) ...
    pub digit_window: usize,
    /// ... and is at most this long.
    pub max_len: usize,
    /// The shortest text this detector can match.
    pub min_len: usize,
    /// Bytes every match holds (see [`Family::shape`]).
    pub shape: Option<fn(&str) -> bool>,
    /// What happens to a match.
    pub action: mcp_ledger_crds::redaction::Action,
}

/// A match to redact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Byte range in the scanned string.
    pub start: usize,
    /// End of the range.
    pub end: usize,
    /// Detector index.
    pub detector: usize,
}

/// The compiled set of detectors.
pub struct Engine {
    detectors: Vec<Detector>,
    prefilter: Option<AhoCorasick>,
    keyword_owner: Vec<usize>,
    /// Per keyword: its bytes as written when only that case counts, and whether it
    /// must start a word.
    keyword_guard: Vec<(Option<Box<[u8]>>, bool)>,
    always: Vec<usize>,
    /// The fewest digits any keyword-less detector with a digit window needs (none:
    /// `usize::MAX`).
    fewest_digits: usize,
    shortest: usize,
}

/// Strings up to this long are searched whole by the keyword-less detectors.
const WHOLE_UP_TO: usize = 256;

/// The stretches of `s` (byte ranges, sorted, not overlapping) that can hold a match of
/// at most `longest` bytes with `min` digits within `window` bytes: around each such
/// cluster of digits, as far as such a match can reach, then widened to the nearest
/// non-word characters and char boundaries, so a search of the stretch finds what a
/// search of the whole string finds there (`\b` sees the same neighbours).
fn dense_regions(s: &str, digits: &[u32], min: usize, window: usize, longest: usize, out: &mut Vec<(usize, usize)>) {
    out.clear();
    if min == 0 || digits.len() < min {
        return;
    }
    for i in 0..=digits.len() - min {
        let (first, last) = (digits[i] as usize, digits[i + min - 1] as usize);
        if last - first >= window {
            continue;
        }
        // A match holding the cluster starts at most `longest` bytes before its end and
        // ends at most `longest` bytes after its start.
        let start = (last + 1).saturating_sub(longest).min(first);
        let end = (first + longest).max(last + 1).min(s.len());
        match out.last_mut() {
            Some(prev) if start <= prev.1 => prev.1 = prev.1.max(end),
            _ => out.push((start, end)),
        }
    }
    // Widen each stretch to non-word neighbours and char boundaries, then merge again.
    let bytes = s.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    let mut merged = 0;
    for k in 0..out.len() {
        let (mut start, mut end) = out[k];
        while start > 0 && (word(bytes[start - 1]) || !s.is_char_boundary(start)) {
            start -= 1;
        }
        while end < s.len() && (word(bytes[end]) || !s.is_char_boundary(end)) {
            end += 1;
        }
        if merged > 0 && start <= out[merged - 1].1 {
            out[merged - 1].1 = out[merged - 1].1.max(end);
        } else {
            out[merged] = (start, end);
            merged += 1;
        }
    }
    out.truncate(merged);
}

fn is_ascii_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// No built-in family matches fewer bytes than this (the shortest is an email address
/// like `a@b.io`), so shorter strings are not scanned unless a custom pattern is set.
pub const SHORTEST_BUILT_IN_MATCH: usize = 6;

impl Engine {
    /// Compiles `detectors`.
    pub fn new(compiled: Vec<Detector>) -> Self {
        let shortest = compiled.iter().map(|d| d.min_len).min().unwrap_or(usize::MAX);
        let mut keywords = Vec::new();
        let mut keyword_owner = Vec::new();
        let mut keyword_guard = Vec::new();
        let mut always = Vec::new();
        for (i, d) in compiled.iter().enumerate() {
            if d.keywords.is_empty() {
                always.push(i);
            }
            for k in &d.keywords {
                keywords.push(k.to_ascii_lowercase());
                keyword_owner.push(i);
                keyword_guard.push((d.exact_case.then(|| k.as_bytes().into()), d.word_start));
            }
        }
        let prefilter = (!keywords.is_empty()).then(|| {
            // A DFA: the overlapping search runs over every string of every message, and a
            // DFA does it in about half the time of the default NFA for a few hundred KiB.
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .match_kind(MatchKind::Standard)
                .build(&keywords)
                .expect("keywords compile")
        });
        let fewest_digits = always
            .iter()
            .map(|&i| &compiled[i])
            .filter(|d| d.digit_window > 0)
            .map(|d| d.min_digits)
            .min()
            .unwrap_or(usize::MAX);
        Self { detectors: compiled, prefilter, keyword_owner, keyword_guard, always, fewest_digits, shortest }
    }

    /// Heap bytes of the keyword automaton.
    pub fn prefilter_bytes(&self) -> usize {
        self.prefilter.as_ref().map_or(0, AhoCorasick::memory_usage)
    }

    /// The detectors.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// Finds every detection in `s`, non-overlapping, earlier detectors winning ties.
    pub fn scan(&self, s: &str, hits: &mut Vec<Hit>) {
        hits.clear();
        if s.len() < self.shortest {
            return;
        }
        // Candidate detectors as a bit set on the stack (heap only past 256 detectors).
        let mut small = [0u64; 4];
        let mut large = Vec::new();
        let words: &mut [u64] = if self.detectors.len() <= 256 {
            &mut small
        } else {
            large.resize(self.detectors.len().div_ceil(64), 0);
            &mut large
        };
        let mut any = false;
        if let Some(ac) = &self.prefilter {
            let bytes = s.as_bytes();
            for m in ac.find_overlapping_iter(s) {
                let k = m.pattern().as_usize();
                let i = self.keyword_owner[k];
                let (exact, word_start) = &self.keyword_guard[k];
                // Inside a word (an ASCII word byte before it) `\b` cannot hold; a byte
                // past ASCII may be a Unicode letter or not, so it does not rule out.
                if *word_start && m.start() > 0 && is_ascii_word(bytes[m.start() - 1]) {
                    continue;
                }
                if exact.as_deref().is_some_and(|e| &bytes[m.start()..m.end()] != e) {
                    continue;
                }
                words[i / 64] |= 1 << (i % 64);
                any = true;
            }
        }
        // Keyword-less detectors: only where enough digits lie close together. Most strings
        // have too few digits for any of them, and allocate nothing here.
        let mut regions: Vec<Vec<(usize, usize)>> = Vec::new();
        if !self.always.is_empty() {
            let count = s.bytes().filter(u8::is_ascii_digit).count();
            let mut digits: Vec<u32> = Vec::new();
            // A short string is searched whole: finding its dense stretches costs more than
            // the search it would save.
            let windowed = s.len() > WHOLE_UP_TO;
            if count >= self.fewest_digits && windowed {
                digits.extend(s.bytes().enumerate().filter(|(_, b)| b.is_ascii_digit()).map(|(i, _)| i as u32));
                regions.resize(self.always.len(), Vec::new());
            }
            for (slot, &i) in self.always.iter().enumerate() {
                let d = &self.detectors[i];
                // The shape is checked where the whole string would be searched: a long
                // one is searched only in its dense stretches.
                let candidate = if count < d.min_digits || !windowed && d.shape.is_some_and(|shape| !shape(s)) {
                    false
                } else if d.digit_window == 0 || !windowed {
                    true
                } else {
                    dense_regions(s, &digits, d.min_digits, d.digit_window, d.max_len, &mut regions[slot]);
                    !regions[slot].is_empty()
                };
                if candidate {
                    words[i / 64] |= 1 << (i % 64);
                    any = true;
                }
            }
        }
        if !any {
            return;
        }
        for (i, d) in self.detectors.iter().enumerate() {
            if words[i / 64] & (1 << (i % 64)) == 0 {
                continue;
            }
            // The whole string, or only the dense stretches of a keyword-less detector.
            let whole = [(0, s.len())];
            let ranges: &[(usize, usize)] = match self.always.iter().position(|&a| a == i) {
                Some(slot) if d.digit_window > 0 && !regions.is_empty() => &regions[slot],
                _ => &whole,
            };
            for &(from, to) in ranges {
                let part = &s[from..to];
                let mut push = |m: regex::Match<'_>| {
                    if m.start() == m.end() || d.check.is_some_and(|check| !check(m.as_str())) {
                        return;
                    }
                    hits.push(Hit { start: from + m.start(), end: from + m.end(), detector: i });
                };
                if d.capture == 0 {
                    // No capture slots needed: the faster search.
                    d.regex.find_iter(part).for_each(&mut push);
                } else {
                    for caps in d.regex.captures_iter(part) {
                        if let Some(m) = caps.get(d.capture).or_else(|| caps.get(0)) {
                            push(m);
                        }
                    }
                }
            }
        }
        if hits.len() > 1 {
            hits.sort_by_key(|h| (h.start, h.detector));
            let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
            for h in hits.drain(..) {
                match kept.last_mut() {
                    Some(last) if h.start < last.end => {
                        // Overlap: keep the earlier-priority detector, and cover both ranges.
                        if h.detector < last.detector {
                            last.detector = h.detector;
                        }
                        last.end = last.end.max(h.end);
                    }
                    _ => kept.push(h),
                }
            }
            *hits = kept;
        }
    }
}
