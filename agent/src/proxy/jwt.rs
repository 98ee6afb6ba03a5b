//! Verified identity from bearer JWTs: the signature against configured keys (a JWKS file
//! or PEM public keys), the issuer, one of the audiences, `exp` and `nbf` (with leeway).
//! A token that fails any check gives no identity: the caller is recorded as unverified,
//! never as the user the token names. Symmetric (HS*) keys are not accepted.

use std::collections::HashMap;

use http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcp_ledger_crds::config::JwtConfig;
use serde_json::Value;

/// Why the JWT configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// A key file could not be read.
    #[error("identity.jwt: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A key file does not hold a usable key.
    #[error("identity.jwt: {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// A compiled verifier.
pub struct JwtVerifier {
    config: JwtConfig,
    keys: Vec<Key>,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verified {
    /// User id claim.
    pub user: String,
    /// Team id claim.
    pub team: Option<String>,
    /// Organisation id claim.
    pub org: Option<String>,
    /// Groups claim.
    pub groups: Vec<String>,
    /// Claims with text, number or boolean values, and string elements of array claims.
    pub claims: Vec<(String, String)>,
}

const RSA: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];

/// Whether `alg` is an asymmetric algorithm this verifier accepts (never HS*, never none).
fn asymmetric(alg: Algorithm) -> bool {
    RSA.contains(&alg) || EC.contains(&alg) || alg == Algorithm::EdDSA
}

impl JwtVerifier {
    /// Loads the keys.
    pub fn new(config: &JwtConfig) -> Result<Self, JwtConfigError> {
        let mut keys = Vec::new();
        let read =
            |path: &str| std::fs::read(path).map_err(|source| JwtConfigError::Read { path: path.to_owned(), source });
        if let Some(path) = &config.jwks_file {
            let set: JwkSet = serde_json::from_slice(&read(path)?)
                .map_err(|e| JwtConfigError::Key { path: path.clone(), reason: format!("not a JWKS document: {e}") })?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| JwtConfigError::Key { path: path.clone(), reason: format!("unusable key: {e}") })?;
                let algorithms = match jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok()) {
                    Some(a) if asymmetric(a) => vec![a],
                    Some(a) => {
                        return Err(JwtConfigError::Key {
                            path: path.clone(),
                            reason: format!("algorithm {a:?} is not accepted (asymmetric keys only)"),
                        });
                    }
                    None => algorithms_for(&key),
                };
                if algorithms.is_empty() {
                    return Err(JwtConfigError::Key {
                        path: path.clone(),
                        reason: "symmetric keys are not accepted".into(),
                    });
                }
                keys.push(Key { kid: jwk.common.key_id.clone(), algorithms, key });
            }
        }
        for path in &config.static_keys {
            let pem = read(path)?;
            let text = String::from_utf8_lossy(&pem);
            let key = if text.contains("BEGIN RSA PUBLIC KEY") || is_rsa(&pem) {
                DecodingKey::from_rsa_pem(&pem)
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                Ok(k)
            } else {
                DecodingKey::from_ed_pem(&pem)
            }
            .map_err(|e| JwtConfigError::Key {
                path: path.clone(),
                reason: format!("not an RSA, EC or Ed25519 public key in PEM: {e}"),
            })?;
            let algorithms = algorithms_for(&key);
            keys.push(Key { kid: None, algorithms, key });
        }
        if keys.is_empty() {
            return Err(JwtConfigError::Key { path: "keys".into(), reason: "no verification keys".into() });
        }
        Ok(Self { config: config.clone(), keys })
    }

    /// Verifies the bearer token of a request, if there is one.
    pub fn verify(&self, headers: &HeaderMap) -> Option<Verified> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.verify_token(token.trim())
    }

    /// Verifies one token.
    pub fn verify_token(&self, token: &str) -> Option<Verified> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if !asymmetric(header.alg) {
            return None;
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&self.config.audiences);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let candidates =
            self.keys.iter().filter(|k| k.algorithms.contains(&header.alg)).filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            });
        for key in candidates {
            if let Ok(data) = jsonwebtoken::decode::<HashMap<String, Value>>(token, &key.key, &validation) {
                let claims = data.claims;
                let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
                let user = text(&self.config.user_claim)?;
                let groups = self
                    .config
                    .groups_claim
                    .as_deref()
                    .and_then(|g| claims.get(g))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                return Some(Verified {
                    user,
                    team: self.config.team_claim.as_deref().and_then(text),
                    org: self.config.org_claim.as_deref().and_then(text),
                    groups,
                    claims: text_claims(&claims),
                });
            }
        }
        None
    }
}

/// Most claim values kept for access decisions.
const MAX_CLAIM_VALUES: usize = 256;

/// The claims an access policy can match: `name = value` for text, number and boolean
/// claims, one pair per string element of an array claim.
fn text_claims(claims: &HashMap<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in claims {
        let mut push = |v: &Value| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return,
            };
            if out.len() < MAX_CLAIM_VALUES {
                out.push((name.clone(), text));
            }
        };
        match value {
            Value::Array(items) => items.iter().for_each(&mut push),
            other => push(other),
        }
    }
    out.sort();
    out
}

fn is_rsa(pem: &[u8]) -> bool {
    DecodingKey::from_rsa_pem(pem).is_ok()
}

fn algorithms_for(key: &DecodingKey) -> Vec<Algorithm> {
    use jsonwebtoken::AlgorithmFamily;
    match key.family() {
        AlgorithmFamily::Rsa => RSA.to_vec(),
        AlgorithmFamily::Ec => EC.to_vec(),
        AlgorithmFamily::Ed => vec![Algorithm::EdDSA],
        AlgorithmFamily::Hmac => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use std::process::Command;

    /// Generates a key pair with openssl into a fresh directory: (private PEM, public PEM path).
    fn keypair(dir: &std::path::Path, name: &str, algorithm: &[&str]) -> (Vec<u8>, String) {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        let ok = Command::new("openssl")
            .arg("genpkey")
            .args(algorithm)
            .arg("-out")
            .arg(&private)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl genpkey");
        let ok = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl pkey -pubout");
        (std::fs::read(private).unwrap(), public.display().to_string())
    }

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    #[test]
    fn accepts_only_tokens_that_pass_every_check() {
        let dir = std::env::temp_dir().join(format!("mcp-ledger-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ed_private, ed_public) = keypair(&dir, "ed", &["-algorithm", "ed25519"]);
        let (rsa_private, rsa_public) =
            keypair(&dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        let (other_private, _) = keypair(&dir, "other", &["-algorithm", "ed25519"]);
        let config = JwtConfig {
            issuer: "https://issuer.test".into(),
            audiences: vec!["mcp".into()],
            static_keys: vec![ed_public, rsa_public.clone()],
            team_claim: Some("team".into()),
            groups_claim: Some("groups".into()),
            leeway_seconds: 5,
            user_claim: "sub".into(),
            ..Default::default()
        };
        let verifier = JwtVerifier::new(&config).unwrap();
        let claims = |iss: &str, aud: &str, exp: i64| json!({"sub": "alice", "iss": iss, "aud": aud, "exp": exp, "nbf": now() - 10, "team": "platform", "groups": ["devs", "oncall"]});
        let ed = EncodingKey::from_ed_pem(&ed_private).unwrap();
        let sign = |c: &Value, key: &EncodingKey, alg: Algorithm| encode(&Header::new(alg), c, key).unwrap();

        let good = sign(&claims("https://issuer.test", "mcp", now() + 60), &ed, Algorithm::EdDSA);
        let v = verifier.verify_token(&good).expect("a good token verifies");
        assert_eq!(
            (v.user.as_str(), v.team.as_deref(), v.org.as_deref(), v.groups.clone()),
            ("alice", Some("platform"), None, vec!["devs".to_owned(), "oncall".to_owned()])
        );
        for pair in [("groups", "devs"), ("groups", "oncall"), ("team", "platform"), ("sub", "alice"), ("aud", "mcp")] {
            assert!(v.claims.contains(&(pair.0.to_owned(), pair.1.to_owned())), "claim {pair:?} in {:?}", v.claims);
        }
        let rsa = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
        assert!(
            verifier
                .verify_token(&sign(&claims("https://issuer.test", "mcp", now() + 60), &rsa, Algorithm::RS256))
                .is_some()
        );

        let refused = [
            ("wrong issuer", sign(&claims("https://evil.test", "mcp", now() + 60), &ed, Algorithm::EdDSA)),
            ("wrong audience", sign(&claims("https://issuer.test", "other", now() + 60), &ed, Algorithm::EdDSA)),
            ("expired", sign(&claims("https://issuer.test", "mcp", now() - 120), &ed, Algorithm::EdDSA)),
            (
                "unknown key",
                sign(
                    &claims("https://issuer.test", "mcp", now() + 60),
                    &EncodingKey::from_ed_pem(&other_private).unwrap(),
                    Algorithm::EdDSA,
                ),
            ),
            // Algorithm confusion: the RSA public key used as an HMAC secret.
            (
                "hs256 with the public key",
                sign(
                    &claims("https://issuer.test", "mcp", now() + 60),
                    &EncodingKey::from_secret(&std::fs::read(&rsa_public).unwrap()),
                    Algorithm::HS256,
                ),
            ),
            ("not a token", "abc.def.ghi".to_owned()),
        ];
        for (case, token) in refused {
            assert_eq!(verifier.verify_token(&token), None, "{case}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {good}").parse().unwrap());
        assert!(verifier.verify(&headers).is_some());
        headers.insert(http::header::AUTHORIZATION, format!("Basic {good}").parse().unwrap());
        assert!(verifier.verify(&headers).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn refuses_configurations_it_cannot_use() {
        let config = JwtConfig {
            issuer: "i".into(),
            audiences: vec!["a".into()],
            static_keys: vec!["/nonexistent/key.pem".into()],
            ..Default::default()
        };
        let err = JwtVerifier::new(&config).err().unwrap().to_string();
        assert!(err.contains("cannot read /nonexistent/key.pem"), "{err}");
    }
}
