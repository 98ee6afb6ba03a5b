//! The redaction engine against a labelled corpus generated here (not hand-picked): for
//! every detector family, secrets of that family's real format embedded in realistic MCP
//! messages (tool arguments, results, error messages, SSE payloads, `_meta`, headers), and
//! hard negatives that look like secrets but are not (UUIDs, git SHAs, file hashes,
//! timestamps, order numbers failing Luhn, base64 images, prose, code). Prints recall and
//! false-positive rate per family; requires recall >= 99.5 % and FPR <= 1 %. Also a
//! generated property test: a secret placed anywhere in a JSON value never survives,
//! not even as an 8-character substring.

use std::collections::BTreeMap;

use mcp_ledger_agent::redact::Redactor;
use serde_json::{Value, json};

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn from(&mut self, alphabet: &str, n: usize) -> String {
        let a = alphabet.as_bytes();
        (0..n).map(|_| a[self.below(a.len())] as char).collect()
    }
    fn alnum(&mut self, n: usize) -> String {
        self.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", n)
    }
    fn hex(&mut self, n: usize) -> String {
        self.from("0123456789abcdef", n)
    }
    fn digits(&mut self, n: usize) -> String {
        self.from("0123456789", n)
    }
    fn b64(&mut self, n: usize) -> String {
        self.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", n)
    }
    fn b64url(&mut self, n: usize) -> String {
        self.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", n)
    }
}

fn luhn_complete(prefix: &str, len: usize, rng: &mut Rng) -> String {
    let mut digits: String = prefix.to_owned();
    digits.push_str(&rng.digits(len - prefix.len() - 1));
    for check in 0..10 {
        let candidate = format!("{digits}{check}");
        let sum: u32 = candidate
            .chars()
            .rev()
            .enumerate()
            .map(|(i, c)| {
                let d = c.to_digit(10).unwrap();
                if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
            })
            .sum();
        if sum.is_multiple_of(10) {
            return candidate;
        }
    }
    unreachable!()
}

fn iban_for(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let mut rem: u64 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).unwrap() as u64;
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

fn jwt(payload: &str, rng: &mut Rng) -> String {
    use std::fmt::Write;
    let enc = |s: &str| {
        // base64url without padding, enough for test payloads
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                let _ = write!(out, "{}", A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    format!("{}.{}.{}", enc(r#"{"alg":"RS256","typ":"JWT"}"#), enc(payload), rng.b64url(43))
}

/// (family, the secret text to find, the string it sits in)
fn positive(family: &str, rng: &mut Rng) -> (String, String) {
    let say = |rng: &mut Rng, s: &str| -> String {
        let t = rng.pick(&[
            "here is the key {}",
            "{}",
            "use {} for auth",
            "value: {} (rotate soon)",
            "config => {}",
            "token {} expired",
        ]);
        t.replace("{}", s)
    };
    match family {
        "private-key" => {
            let body = (0..6).map(|_| rng.b64(64)).collect::<Vec<_>>().join("\n");
            let kind = rng.pick(&["", "RSA ", "EC ", "OPENSSH "]);
            let s = format!("-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----");
            (s.clone(), format!("key file:\n{s}\n"))
        }
        "kubernetes-service-account-token" => {
            let s = jwt(
                &format!(
                    r#"{{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"ns{}","sub":"system:serviceaccount:x:y"}}"#,
                    rng.digits(3)
                ),
                rng,
            );
            (s.clone(), say(rng, &s))
        }
        "jwt" => {
            let s = jwt(&format!(r#"{{"sub":"user{}","iat":{}}}"#, rng.digits(5), rng.digits(10)), rng);
            (s.clone(), say(rng, &s))
        }
        "anthropic-api-key" => {
            let s = format!("sk-ant-api03-{}", rng.b64url(93));
            (s.clone(), say(rng, &s))
        }
        "openai-api-key" => {
            let s = format!("sk-proj-{}T3BlbkFJ{}", rng.b64url(74), rng.b64url(74));
            (s.clone(), say(rng, &s))
        }
        "aws-access-key-id" => {
            let s = format!("{}{}", rng.pick(&["AKIA", "ASIA"]), rng.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
            (s.clone(), say(rng, &s))
        }
        "aws-secret-access-key" => {
            let s = rng.b64(40);
            (
                s.clone(),
                format!("{}={s}", rng.pick(&["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey"])),
            )
        }
        "github-pat" => with(format!("ghp_{}", rng_alnum(rng, 36)), rng),
        "github-fine-grained-pat" => with(format!("github_pat_{}_{}", rng_alnum(rng, 22), rng_alnum(rng, 59)), rng),
        "github-oauth-token" => with(format!("gho_{}", rng_alnum(rng, 36)), rng),
        "github-app-token" => {
            let p = rng.pick(&["ghu_", "ghs_"]).to_owned();
            with(format!("{p}{}", rng_alnum(rng, 36)), rng)
        }
        "github-refresh-token" => with(format!("ghr_{}", rng_alnum(rng, 76)), rng),
        "gitlab-token" => with(format!("glpat-{}", rng.b64url(20)), rng),
        "slack-token" => {
            let p = rng.pick(&["xoxb", "xoxp"]).to_owned();
            with(format!("{p}-{}-{}-{}", rng.digits(12), rng.digits(13), rng_alnum(rng, 24)), rng)
        }
        "slack-app-token" => with(
            format!(
                "xapp-1-A{}-{}-{}",
                rng.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
                rng.digits(13),
                rng.hex(64)
            ),
            rng,
        ),
        "slack-webhook-url" => with(
            format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                rng.from("ABCDEFGHIJ0123456789", 8),
                rng.from("ABCDEFGHIJ0123456789", 10),
                rng_alnum(rng, 24)
            ),
            rng,
        ),
        "stripe-key" => {
            let p = rng.pick(&["sk_live_", "rk_live_", "sk_test_"]).to_owned();
            with(format!("{p}{}", rng_alnum(rng, 24)), rng)
        }
        "google-api-key" => with(format!("AIza{}", rng.b64url(35)), rng),
        "gcp-service-account-key-id" => {
            let s = rng.hex(40);
            (s.clone(), format!(r#"{{"type": "service_account", "private_key_id": "{s}"}}"#))
        }
        "azure-storage-key" => {
            let s = format!("{}==", rng.b64(86));
            (
                s.clone(),
                format!(
                    "DefaultEndpointsProtocol=https;AccountName=acct{};AccountKey={s};EndpointSuffix=core.windows.net",
                    rng.digits(3)
                ),
            )
        }
        "azure-shared-access-key" => {
            let s = format!("{}=", rng.b64(43));
            (
                s.clone(),
                format!(
                    "Endpoint=sb://ns{}.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={s}",
                    rng.digits(3)
                ),
            )
        }
        "database-connection-string" => {
            let s = rng_alnum(rng, 16);
            let scheme = rng.pick(&["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp"]).to_owned();
            (s.clone(), format!("{scheme}://app_user:{s}@db{}.internal:5432/prod", rng.digits(2)))
        }
        "url-credentials" => {
            let s = rng_alnum(rng, 14);
            (s.clone(), format!("fetch https://deploy:{s}@git.example.com/org/repo.git"))
        }
        "bearer-token" => {
            let s = rng.b64url(40);
            (s.clone(), format!("curl -H 'Authorization: Bearer {s}' https://api.example.com"))
        }
        "basic-auth" => {
            let s = rng.b64(28);
            (s.clone(), format!("Authorization: Basic {s}"))
        }
        "npm-token" => with(format!("npm_{}", rng_alnum(rng, 36)), rng),
        "pypi-token" => with(format!("pypi-AgEIcHlwaS5vcmc{}", rng.b64url(70)), rng),
        "twilio-api-key" => with(format!("SK{}", rng.hex(32)), rng),
        "twilio-auth-token" => {
            let s = rng.hex(32);
            (s.clone(), format!("twilio_auth_token = \"{s}\""))
        }
        "sendgrid-api-key" => with(format!("SG.{}.{}", rng.b64url(22), rng.b64url(43)), rng),
        "datadog-api-key" => {
            let s = rng.hex(32);
            (s.clone(), format!("{}: {s}", rng.pick(&["DD_API_KEY", "datadog_api_key", "dd-app-key"])))
        }
        "vault-token" => with(format!("hvs.{}", rng.b64url(90)), rng),
        "shopify-token" => with(format!("shpat_{}", rng.hex(32)), rng),
        "huggingface-token" => {
            with(format!("hf_{}", rng.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 34)), rng)
        }
        "digitalocean-token" => with(format!("dop_v1_{}", rng.hex(64)), rng),
        "mailgun-api-key" => with(format!("key-{}", rng.hex(32)), rng),
        "square-token" => with(format!("sq0atp-{}", rng.b64url(22)), rng),
        "atlassian-api-token" => with(format!("ATATT3{}", rng.b64url(186)), rng),
        "linear-api-key" => with(format!("lin_api_{}", rng_alnum(rng, 40)), rng),
        "doppler-token" => with(format!("dp.pt.{}", rng_alnum(rng, 43)), rng),
        "databricks-token" => with(format!("dapi{}", rng.hex(32)), rng),
        "discord-webhook-url" => {
            with(format!("https://discord.com/api/webhooks/{}/{}", rng.digits(18), rng.b64url(68)), rng)
        }
        "telegram-bot-token" => with(format!("{}:AA{}", rng.digits(10), rng.b64url(33)), rng),
        "generic-secret" => {
            let s = format!("{}{}!{}", rng_alnum(rng, 6), rng.digits(3), rng_alnum(rng, 4));
            let key = rng.pick(&["password", "secret", "api_key", "client_secret", "passwd", "auth_token"]).to_owned();
            let sep = rng.pick(&["=", ": ", " = ", "\": \""]).to_owned();
            (s.clone(), format!("{key}{sep}{s}"))
        }
        "env-secret" => {
            let s = format!("{}{}", rng_alnum(rng, 12), rng.digits(4));
            let name = rng
                .pick(&[
                    "GITHUB_TOKEN",
                    "OPENAI_API_KEY",
                    "DB_PASSWORD",
                    "STRIPE_SECRET",
                    "SERVICE_CREDENTIALS",
                    "MY_APP_AUTH",
                ])
                .to_owned();
            let sep = rng.pick(&["=", ": "]).to_owned();
            (s.clone(), format!("PATH=/usr/bin\nHOME=/home/app\n{name}{sep}{s}\nLANG=C.UTF-8"))
        }
        "email" => {
            let s = format!(
                "{}.{}@{}.{}",
                rng.pick(&["jane", "li", "omar", "ana"]),
                rng_alnum(rng, 5).to_lowercase(),
                rng.pick(&["example", "corp-mail", "uni"]),
                rng.pick(&["com", "org", "co.uk", "io"])
            );
            (s.clone(), format!("please contact {s} for access"))
        }
        "payment-card" => {
            let prefix = rng.pick(&["4", "51", "55", "37", "6011"]).to_owned();
            let len = if prefix == "37" { 15 } else { 16 };
            let s = luhn_complete(&prefix, len, rng);
            (s.clone(), format!("card on file {s} exp 12/29"))
        }
        "us-ssn" => {
            let s = format!("{}-{}-{}", 100 + rng.below(565), 10 + rng.below(89), 1000 + rng.below(8999));
            (s.clone(), format!("SSN {s} on record"))
        }
        "iban" => {
            let s = iban_for("DE", &rng.digits(18));
            (s.clone(), format!("transfer to {s} today"))
        }
        "phone" => {
            let s = match rng.below(3) {
                0 => format!("+1 {} {} {}", 200 + rng.below(799), 200 + rng.below(799), rng.digits(4)),
                1 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
                _ => format!("({}) {}-{}", 200 + rng.below(799), 200 + rng.below(799), rng.digits(4)),
            };
            (s.clone(), format!("call me at {s} tomorrow"))
        }
        "ip-address" => {
            let s = format!("{}.{}.{}.{}", 11 + rng.below(200), rng.below(255), rng.below(255), 1 + rng.below(250));
            (s.clone(), format!("connection from {s} refused"))
        }
        other => panic!("no generator for {other}"),
    }
}

fn rng_alnum(rng: &mut Rng, n: usize) -> String {
    rng.alnum(n)
}

fn with(s: String, rng: &mut Rng) -> (String, String) {
    let t = rng.pick(&["here is the key {}", "{}", "use {} for auth", "value: {} (rotate soon)", "config => {}"]);
    let text = t.replace("{}", &s);
    (s, text)
}

/// Hard negatives: strings that look technical but hold no secret.
fn negative(rng: &mut Rng) -> String {
    match rng.below(14) {
        0 => format!("{}-{}-4{}-a{}-{}", rng.hex(8), rng.hex(4), rng.hex(3), rng.hex(3), rng.hex(12)),
        1 => format!("commit {} merged", rng.hex(40)),
        2 => format!("sha256:{}", rng.hex(64)),
        3 => format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{}Z",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.digits(6)
        ),
        4 => {
            // a 16-digit order number that fails the Luhn check
            let good = luhn_complete("4", 16, rng);
            let last = good.chars().last().unwrap().to_digit(10).unwrap();
            format!("order {}{}", &good[..15], (last + 1) % 10)
        }
        5 => format!("data:image/png;base64,{}", rng.b64(400)),
        6 => rng
            .pick(&[
                "The quick brown fox jumps over the lazy dog while the build runs.",
                "Please summarise the quarterly report and list three action items.",
                "Tokens are counted per request; the secret to good prompts is clarity.",
                "The password policy requires rotation every ninety days.",
                "Use the search tool to find issues labelled bug in the last week.",
            ])
            .to_owned(),
        7 => rng
            .pick(&[
                "fn main() { let token = get_token(); println!(\"{}\", token.len()); }",
                "const secret = process.env.SECRET; // read at runtime",
                "SELECT id, email_verified FROM users WHERE created_at > now() - interval '1 day';",
                "if password == confirm { save(user) }",
                "def auth(request): return request.headers.get('x-api-key') is not None",
            ])
            .to_owned(),
        8 => format!("v{}.{}.{}", rng.below(20), rng.below(50), rng.below(100)),
        9 => format!("https://github.com/org/repo/pull/{}", rng.digits(5)),
        10 => format!("/var/lib/app/cache/{}.json", rng.hex(16)),
        11 => format!(
            "pod web-{}-{} restarted {} times",
            rng.hex(10),
            rng.from("abcdefghijklmnopqrstuvwxyz0123456789", 5),
            rng.below(9)
        ),
        12 => {
            format!("took {} ms for {} rows (ratio {}.{})", rng.digits(4), rng.digits(6), rng.below(9), rng.digits(3))
        }
        _ => format!("invoice INV-{}-{} total {}.{} EUR", rng.digits(4), rng.digits(6), rng.digits(3), rng.digits(2)),
    }
}

/// Puts `text` into a realistic MCP message; returns the message and the leg kind.
fn embed(text: &str, rng: &mut Rng) -> Value {
    let id = rng.below(1000);
    match rng.below(6) {
        0 => {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "run_query", "arguments": {"input": text, "limit": 10}}})
        }
        1 => {
            json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}], "isError": false}})
        }
        2 => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "internal error", "data": {"detail": text}}})
        }
        3 => json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": text}}),
        4 => {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "x", "arguments": {}, "_meta": {"note": text}}})
        }
        _ => json!({"jsonrpc": "2.0", "id": id, "result": {"structuredContent": {"rows": [{"col": text}]}}}),
    }
}

fn families() -> Vec<&'static str> {
    mcp_ledger_agent::redact::detectors::FAMILIES.iter().map(|f| f.kind).collect()
}

#[test]
fn labelled_corpus_recall_and_false_positive_rate_per_family() {
    let policy = mcp_ledger_crds::redaction::McpRedactionPolicySpec { redact_ip_addresses: true, ..Default::default() };
    let redactor = Redactor::new(&policy);
    let mut rng = Rng(0x5eed_0001);
    let per_family = 50;
    let mut total_pos = 0;
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for family in families() {
        let mut found = 0;
        for i in 0..per_family {
            let (secret, text) = positive(family, &mut rng);
            let mut summary = BTreeMap::new();
            let redacted = if i % 10 == 9 {
                // in a header value too
                let h = redactor.headers([("x-debug-context", text.as_bytes())].into_iter(), &mut summary);
                Value::String(h["x-debug-context"].to_string())
            } else {
                let mut msg = embed(&text, &mut rng);
                redactor.json(&mut msg, &mut summary);
                msg
            };
            let out = redacted.to_string();
            if !out.contains(&secret)
                && !out.contains(&serde_json::to_string(&secret).unwrap()[1..secret.len().min(20)])
            {
                found += 1;
            } else if failures.len() < 20 {
                failures.push(format!("{family}: missed in {text:?}"));
            }
            total_pos += 1;
        }
        report.push((family, found, per_family));
    }
    // Hard negatives.
    let negatives = 2500;
    let mut fp_by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut fp_total = 0;
    let mut fp_examples = Vec::new();
    for _ in 0..negatives {
        let text = negative(&mut rng);
        let mut msg = embed(&text, &mut rng);
        let mut summary = BTreeMap::new();
        redactor.json(&mut msg, &mut summary);
        if !summary.is_empty() {
            fp_total += 1;
            for k in summary.keys() {
                *fp_by_kind.entry(k.clone()).or_default() += 1;
            }
            if fp_examples.len() < 10 {
                fp_examples.push(format!("{summary:?} in {text:?}"));
            }
        }
    }
    println!("family                             recall   false positives (of {negatives} negatives)");
    for (family, found, n) in &report {
        let fp = fp_by_kind.get(*family).copied().unwrap_or(0);
        println!(
            "{family:<34} {:>6.1} %  {:>5.2} %",
            *found as f64 / *n as f64 * 100.0,
            fp as f64 / negatives as f64 * 100.0
        );
    }
    let found: usize = report.iter().map(|r| r.1).sum();
    let recall = found as f64 / total_pos as f64;
    let fpr = fp_total as f64 / negatives as f64;
    println!(
        "overall: {total_pos} positives, recall {:.2} %; {negatives} negatives, false-positive rate {:.2} %",
        recall * 100.0,
        fpr * 100.0
    );
    assert!(total_pos >= 2000 && negatives >= 2000);
    assert!(recall >= 0.995, "recall {recall:.4} below 99.5 %: {failures:#?}");
    for (family, found, n) in &report {
        assert!(*found as f64 / *n as f64 >= 0.98, "{family}: recall {found}/{n}: {failures:#?}");
    }
    assert!(fpr <= 0.01, "false-positive rate {fpr:.4} above 1 %: {fp_examples:#?}");
}

/// Generated property test: a known secret placed anywhere in a random JSON value never
/// survives redaction, not even as any 8-character substring.
#[test]
fn a_secret_placed_anywhere_never_survives() {
    let redactor = Redactor::new(&Default::default());
    let mut rng = Rng(0x5eed_0002);
    let secret_families = [
        "aws-access-key-id",
        "github-pat",
        "jwt",
        "private-key",
        "stripe-key",
        "slack-token",
        "google-api-key",
        "sendgrid-api-key",
        "npm-token",
        "vault-token",
    ];
    for case in 0..1500 {
        let family = secret_families[case % secret_families.len()];
        let (secret, text) = positive(family, &mut rng);
        let mut value = random_json(&mut rng, 4);
        place(&mut value, &text, &mut rng);
        let mut summary = BTreeMap::new();
        redactor.json(&mut value, &mut summary);
        let out = value.to_string();
        for start in 0..secret.len().saturating_sub(8) {
            let window = &secret[start..start + 8];
            if window.contains('\n')
                || window.starts_with("-----")
                || window.contains("BEGIN")
                || window.contains("PRIVATE")
                || window.contains("END ")
            {
                continue; // the PEM armour lines are not secret
            }
            assert!(!out.contains(window), "case {case} ({family}): {window:?} of the secret survived in {out}");
        }
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match if depth == 0 { rng.below(3) } else { rng.below(5) } {
        0 => json!(rng.below(1000)),
        1 => {
            let n = rng.below(12);
            Value::String(rng.alnum(n))
        }
        2 => Value::Bool(rng.below(2) == 1),
        3 => {
            let n = rng.below(4);
            Value::Array((0..n).map(|_| random_json(rng, depth - 1)).collect())
        }
        _ => {
            let n = rng.below(4);
            Value::Object((0..n).map(|i| (format!("k{i}{}", rng.alnum(3)), random_json(rng, depth - 1))).collect())
        }
    }
}

/// Puts `text` at a random place: a new member, an array element, or as an object key.
fn place(value: &mut Value, text: &str, rng: &mut Rng) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.below(2) == 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            place(map.get_mut(k).unwrap(), text, rng);
        }
        Value::Object(map) => {
            if rng.below(4) == 0 {
                map.insert(text.to_owned(), json!(1));
            } else {
                map.insert(format!("field{}", rng.below(100)), Value::String(text.to_owned()));
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(2) == 0 => {
            let i = rng.below(items.len());
            place(&mut items[i], text, rng);
        }
        Value::Array(items) => items.push(Value::String(text.to_owned())),
        other => *other = json!({"wrapped": text}),
    }
}
