//! `McpRedactionPolicy`: what the agent removes from audit records before they leave the pod.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;

/// Name of the cluster default policy: the `McpRedactionPolicy` of this name in the
/// operator's namespace applies to every server; a server's `redactionPolicyRef` adds to it.
pub const CLUSTER_DEFAULT_POLICY: &str = "default";

/// What the agent redacts from MCP messages before a record leaves the pod: header rules,
/// built-in detector switches, JSON-path rules and custom patterns. The operator compiles
/// the cluster default plus the server's policy into the agent configuration; an invalid
/// policy is refused at admission with the rule and the reason.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "mcpledger.dev",
    version = "v1alpha1",
    kind = "McpRedactionPolicy",
    plural = "mcpredactionpolicies",
    singular = "mcpredactionpolicy",
    shortname = "mcpredact",
    category = "mcpledger",
    namespaced,
    derive = "PartialEq",
    doc = "Redaction rules for MCP audit records: headers, built-in secret/PII detectors, JSON-path rules and custom patterns.",
    printcolumn(name = "Default Action", type_ = "string", json_path = ".spec.defaultAction"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.hashKeySecretRef) || (self.defaultAction != 'hash' && self.jsonPaths.all(r, r.action != 'hash') && self.customPatterns.all(r, r.action != 'hash') && self.detectors.all(d, !has(d.action) || d.action != 'hash'))").message("spec.hashKeySecretRef is required when any action is 'hash': the HMAC key must come from a Secret"))]
#[x_kube(validation = Rule::new("self.jsonPaths.all(a, self.jsonPaths.exists_one(b, b.name == a.name)) && self.customPatterns.all(a, self.customPatterns.exists_one(b, b.name == a.name))").message("rule names must be unique within spec.jsonPaths and within spec.customPatterns"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpRedactionPolicySpec {
    /// How header values are treated.
    #[serde(default)]
    pub headers: HeaderRules,

    /// Switches for the built-in detectors, by family (for example `aws-access-key-id`,
    /// `email`) or group (`secrets`, `env`, `pii`). Every detector is on unless switched off
    /// here; a later entry overrides an earlier one.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub detectors: Vec<DetectorSwitch>,

    /// Rules for fields of the JSON body, by path (for example `$.params.arguments.password`
    /// or `$.result.content[*].text`).
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub json_paths: Vec<JsonPathRule>,

    /// Extra regular expressions to redact wherever they match a string.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub custom_patterns: Vec<CustomPattern>,

    /// The action for a detector hit that has no action of its own: `mask` replaces the
    /// value with `[REDACTED:<kind>]`, `hash` with a keyed HMAC-SHA256 (equal values
    /// correlate without being revealed), `drop` removes the field.
    #[serde(default)]
    pub default_action: Action,

    /// Whether IP addresses inside payloads are redacted. The record's own `clientIp`
    /// metadata is never affected.
    #[serde(default)]
    pub redact_ip_addresses: bool,

    /// The Secret key that holds the HMAC key for `hash` actions (at least 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key_secret_ref: Option<SecretKeyRef>,

    /// What to do with a message that cannot be parsed or scanned: `drop-payload` keeps the
    /// record's metadata and drops the body (the record says why); `drop-record` drops the
    /// whole record (counted). The raw payload is never passed through.
    #[serde(default)]
    pub on_unscannable: UnscannableAction,
}

/// How header values are redacted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderRules {
    /// `deny-list`: record every header except those named in `deny` (and the built-in
    /// list: authorization, proxy-authorization, cookie, set-cookie, x-api-key and any name
    /// containing token, secret, key or auth), whose values are redacted. `allow-list`:
    /// record only the headers named in `allow`; every other value is redacted.
    #[serde(default)]
    pub mode: HeaderMode,
    /// Extra header names whose values are redacted (case-insensitive).
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new("self.all(h, h.matches('^[A-Za-z0-9!#$%&\\'*+.^_`|~-]+$'))").message("spec.headers.deny entries must be HTTP header names"))]
    pub deny: Vec<String>,
    /// Header names recorded as they are in `allow-list` mode (case-insensitive).
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new("self.all(h, h.matches('^[A-Za-z0-9!#$%&\\'*+.^_`|~-]+$'))").message("spec.headers.allow entries must be HTTP header names"))]
    pub allow: Vec<String>,
    /// What happens to a redacted header value.
    #[serde(default)]
    pub action: Action,
}

impl Default for HeaderRules {
    fn default() -> Self {
        Self { mode: HeaderMode::DenyList, deny: Vec::new(), allow: Vec::new(), action: Action::Mask }
    }
}

/// Header redaction mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderMode {
    /// Redact the values of listed (and built-in sensitive) headers, keep the rest.
    #[default]
    DenyList,
    /// Keep the values of listed headers only, redact every other value.
    AllowList,
}

/// What happens to a value that a rule matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Replace the matched text with `[REDACTED:<kind>]`.
    #[default]
    Mask,
    /// Replace the matched text with `[HMAC:<kind>:<hex>]`, a keyed HMAC-SHA256.
    Hash,
    /// Remove the field that holds the match.
    Drop,
    /// Drop the whole body of the message; the record keeps its metadata.
    DropPayload,
}

impl Action {
    /// The name as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mask => "mask",
            Self::Hash => "hash",
            Self::Drop => "drop",
            Self::DropPayload => "drop-payload",
        }
    }
}

/// What to do with a message that cannot be scanned.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UnscannableAction {
    /// Keep the record's metadata, drop its body, say why.
    #[default]
    DropPayload,
    /// Drop the whole record (counted as an intended drop).
    DropRecord,
}

/// Turns a built-in detector family or group on or off.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectorSwitch {
    /// Family (for example `github-pat`, `email`, `ip-address`) or group (`secrets`, `env`,
    /// `pii`).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// Whether the detector runs.
    pub enabled: bool,
    /// The action for this detector's hits, overriding `defaultAction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// A rule for one field of the JSON body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonPathRule {
    /// Name of the rule, used in error messages and redaction summaries.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// A JSON path from the message root: `$`, then `.field`, `['field']`, `[N]`, `[*]` or
    /// `..field` (any depth). For example `$.params.arguments.password`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^\$"))]
    pub path: String,
    /// What happens to the field.
    pub action: Action,
}

/// An extra pattern to redact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomPattern {
    /// Name of the rule; also the `<kind>` in `[REDACTED:<kind>]`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// A regular expression (Rust `regex` syntax: no look-around or back-references).
    #[schemars(length(min = 1, max = 4096))]
    pub regex: String,
    /// Optional literal keywords (case-insensitive): the regex only runs on strings that
    /// contain one of them, which keeps scanning fast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub keywords: Vec<String>,
    /// What happens to a match.
    #[serde(default)]
    pub action: Action,
}
