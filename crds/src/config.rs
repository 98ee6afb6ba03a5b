//! The agent configuration: what the operator renders into a ConfigMap and the agent
//! reads (and what `--mode local` reads from a file). One type serves both sides.
//!
//! Every struct denies unknown fields, so a typo in a hand-written file is an error that
//! names the field, not a silently ignored setting.

use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::access::McpAccessPolicySpec;
use crate::common::Transport;
use crate::redaction::McpRedactionPolicySpec;
use crate::server::ToolPolicy;

/// File name of the rendered configuration inside the agent ConfigMap.
pub const CONFIG_FILE_NAME: &str = "agent.json";

/// The whole agent configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the agent listens.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The MCP server the agent forwards to.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Identity and governance of the server behind the agent.
    pub server: ServerConfig,
    /// How much of each message is captured.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// The effective redaction policy (cluster default merged with the server's policy).
    #[serde(default)]
    pub redaction: RedactionConfig,
    /// The access policies that apply to this server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<NamedAccessPolicy>,
    /// Where caller identities come from.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Where records go.
    #[serde(default)]
    pub exporters: ExportersConfig,
    /// The queue between the proxy and the exporters.
    #[serde(default)]
    pub pipeline: PipelineConfig,
}

impl AgentConfig {
    /// Checks what serde cannot: addresses, URLs and bounds. Returns every problem found,
    /// each naming the field and what to do.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        for (field, value) in [("listen.proxy", &self.listen.proxy), ("listen.admin", &self.listen.admin)] {
            if value.parse::<SocketAddr>().is_err() {
                problems.push(format!("{field}: '{value}' is not an address like 0.0.0.0:8080"));
            }
        }
        if self.listen.proxy == self.listen.admin {
            problems.push(format!("listen.admin: must differ from listen.proxy ('{}')", self.listen.proxy));
        }
        if let Err(reason) = check_http_url(&self.upstream.url) {
            problems.push(format!("upstream.url: '{}' {reason}", self.upstream.url));
        }
        if self.server.name.is_empty() {
            problems.push("server.name: must not be empty".to_owned());
        }
        if !self.server.path.starts_with('/') {
            problems.push(format!("server.path: '{}' must start with '/'", self.server.path));
        }
        if self.capture.max_body_bytes == 0 {
            problems.push("capture.maxBodyBytes: must be at least 1".to_owned());
        }
        if self.capture.session_idle_seconds == 0 {
            problems.push("capture.sessionIdleSeconds: must be at least 1 (3600 if unset)".to_owned());
        }
        if self.pipeline.queue_capacity == 0 || self.pipeline.batch_size == 0 {
            problems.push("pipeline.queueCapacity and pipeline.batchSize: must be at least 1".to_owned());
        }
        if let Some(otlp) = &self.exporters.otlp
            && let Err(reason) = check_http_url(&otlp.endpoint)
        {
            problems.push(format!("exporters.otlp.endpoint: '{}' {reason}", otlp.endpoint));
        }
        for (i, cidr) in self.identity.trusted_proxies.iter().enumerate() {
            if Cidr::parse(cidr).is_none() {
                problems.push(format!("identity.trustedProxies[{i}]: '{cidr}' is not a CIDR like 10.0.0.0/8"));
            }
        }
        if let Some(gw) = &self.identity.trusted_gateway {
            if gw.cidrs.is_empty() {
                problems.push(
                    "identity.trustedGateway.cidrs: list the gateway addresses; an empty list would trust nobody"
                        .to_owned(),
                );
            }
            for (i, cidr) in gw.cidrs.iter().enumerate() {
                if Cidr::parse(cidr).is_none() {
                    problems
                        .push(format!("identity.trustedGateway.cidrs[{i}]: '{cidr}' is not a CIDR like 10.0.0.0/8"));
                }
            }
        }
        if let Some(jwt) = &self.identity.jwt {
            if jwt.jwks_file.is_none() && jwt.static_keys.is_empty() {
                problems.push(
                    "identity.jwt: set jwksFile or staticKeys: a token cannot be verified without keys".to_owned(),
                );
            }
            if jwt.issuer.is_empty() || jwt.audiences.is_empty() {
                problems.push(
                    "identity.jwt: issuer and audiences are required: they are checked on every token".to_owned(),
                );
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::InvalidConfig(problems)) }
    }

    /// Parses a configuration from JSON or YAML-as-JSON text and validates it.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let config: Self = serde_json::from_str(text).map_err(|e| Error::InvalidConfig(vec![e.to_string()]))?;
        config.validate()?;
        Ok(config)
    }
}

fn check_http_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host");
    }
    Ok(())
}

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6/n` or a bare address.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Self { addr, bits })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - self.bits) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - self.bits) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Listening addresses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenConfig {
    /// The proxy listener that MCP clients connect to.
    #[serde(default = "default_proxy_addr")]
    pub proxy: String,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_admin_addr")]
    pub admin: String,
}

fn default_proxy_addr() -> String {
    "0.0.0.0:8080".to_owned()
}
fn default_admin_addr() -> String {
    "0.0.0.0:9090".to_owned()
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self { proxy: default_proxy_addr(), admin: default_admin_addr() }
    }
}

/// The upstream MCP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the MCP server, normally on localhost in the same pod.
    #[serde(default = "default_upstream")]
    pub url: String,
    /// Connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
}

fn default_upstream() -> String {
    "http://127.0.0.1:8000".to_owned()
}
fn default_connect_timeout() -> u64 {
    2_000
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self { url: default_upstream(), connect_timeout_ms: default_connect_timeout() }
    }
}

/// Identity and governance of the server behind the agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// McpServer name.
    pub name: String,
    /// McpServer namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// MCP endpoint path.
    #[serde(default = "default_mcp_path")]
    pub path: String,
    /// MCP transport.
    #[serde(default)]
    pub transport: Transport,
    /// Tool pinning policy.
    #[serde(default)]
    pub tool_policy: ToolPolicy,
    /// Allowed server versions (exact or semver ranges); empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_versions: Vec<String>,
    /// The approved tool baseline (name and definition hash), from the McpServer status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_tools: Vec<crate::server::ToolFingerprint>,
}

fn default_mcp_path() -> String {
    "/mcp".to_owned()
}

/// Capture limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureConfig {
    /// Largest message body captured into a record, in bytes; larger messages are
    /// forwarded whole but recorded as truncated.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// A Streamable HTTP session with no answer or event seen for this many seconds stops
    /// counting as active (`mcp_ledger_active_sessions`) and is forgotten; the next request
    /// the server accepts in it counts it again. Clients often leave without the DELETE
    /// that ends a session, so without this the open sessions would only grow. No record
    /// is written: the agent cannot tell an idle session from an ended one.
    #[serde(default = "default_session_idle")]
    pub session_idle_seconds: u64,
}

fn default_max_body() -> usize {
    256 * 1024
}

fn default_session_idle() -> u64 {
    3600
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self { max_body_bytes: default_max_body(), session_idle_seconds: default_session_idle() }
    }
}

/// The effective redaction policy plus where the HMAC key is mounted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionConfig {
    /// The merged policy.
    #[serde(default)]
    pub policy: McpRedactionPolicySpec,
    /// Path of the file holding the HMAC key for `hash` actions (mounted from the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key_file: Option<String>,
}

/// An access policy with its name, for `policy-denied` records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedAccessPolicy {
    /// `namespace/name` of the McpAccessPolicy.
    pub name: String,
    /// Its spec.
    pub spec: McpAccessPolicySpec,
}

/// Sources of verified caller identity. With none configured, every caller is unverified.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConfig {
    /// Verify bearer JWTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Trust identity headers from a gateway at known addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_gateway: Option<GatewayConfig>,
    /// CIDRs of proxies whose `X-Forwarded-For` is believed for `clientIp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
}

/// JWT verification.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values (one must match).
    pub audiences: Vec<String>,
    /// Path of a JWKS file (mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// Paths of PEM public keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_keys: Vec<String>,
    /// Claim that holds the user id.
    #[serde(default = "default_sub")]
    pub user_claim: String,
    /// Claim that holds the team id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_claim: Option<String>,
    /// Claim that holds the organisation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_claim: Option<String>,
    /// Claim that holds the caller's groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// Allowed clock skew in seconds for `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_sub() -> String {
    "sub".to_owned()
}
fn default_leeway() -> u64 {
    30
}

/// Identity headers from a trusted gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// Peer CIDRs of the gateway; headers from any other peer are ignored.
    pub cidrs: Vec<String>,
    /// Header with the user id.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// Header with the team id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_header: Option<String>,
    /// Header with the organisation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_header: Option<String>,
    /// Header with comma-separated groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_header: Option<String>,
}

fn default_user_header() -> String {
    "x-forwarded-user".to_owned()
}

/// Record destinations. Several may be on at once.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportersConfig {
    /// OTLP logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpConfig>,
    /// JSON lines (`-` for stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_lines: Option<FileSinkConfig>,
    /// CSV rows for SIEM import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<FileSinkConfig>,
}

/// OTLP logs exporter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpConfig {
    /// Collector endpoint: for gRPC `http://host:4317`, for HTTP the base URL
    /// (`/v1/logs` is appended) such as `http://host:4318`.
    pub endpoint: String,
    /// `grpc` or `http-protobuf`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Per-export timeout in milliseconds.
    #[serde(default = "default_export_timeout")]
    pub timeout_ms: u64,
}

fn default_export_timeout() -> u64 {
    5_000
}

/// OTLP wire protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

/// A file sink.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File path, or `-` for stdout.
    pub path: String,
}

/// The bounded queue between the proxy and the exporters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineConfig {
    /// Records held at most; when full, new records are dropped and counted (traffic is
    /// never held back).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Records per export batch. Records wait in memory until their batch is full or
    /// `flushIntervalMs` has passed, so this bounds what the agent holds: 128 records of about
    /// 1.3 KB make a 170 KB OTLP request, large enough that batching costs little.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest wait before a partial batch is exported, in milliseconds.
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    /// Export attempts per batch before it is dropped (counted).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_queue() -> usize {
    8_192
}
fn default_batch() -> usize {
    128
}
fn default_flush() -> u64 {
    1_000
}
fn default_attempts() -> u32 {
    5
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: default_queue(),
            batch_size: default_batch(),
            flush_interval_ms: default_flush(),
            max_attempts: default_attempts(),
        }
    }
}
