//! The audit record: one per MCP message leg, and its mapping to OpenTelemetry names.
//!
//! Field names here are the JSON names of the record (JSON lines, CSV headers); [`attr`]
//! holds the OTLP attribute name of each field. The redactor runs before a record is
//! built, so nothing in a record is a credential, secret or PII.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Transport;
pub use crate::ids::{HexId, SpanId, TraceId};

/// A header map as records share it: lower-case names, values after redaction.
pub type HeaderSet = Arc<BTreeMap<Arc<str>, Arc<str>>>;

/// The headers of a leg: a set that every record with the same headers shares, and beside
/// it the request's own well-formed `traceparent`, which is new on every request and would
/// otherwise make each request's set a new one. Read, written and compared as one map in
/// name order, `traceparent` in its place.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    shared: HeaderSet,
    traceparent: Option<Traceparent>,
}

/// A `traceparent` value of the version-00 length (`00-<32 hex>-<16 hex>-<2 hex>`), held
/// inline.
#[derive(Clone, Copy)]
struct Traceparent([u8; TRACEPARENT_LEN]);

impl std::fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

const TRACEPARENT_LEN: usize = 55;
const TRACEPARENT: &str = "traceparent";

impl Headers {
    /// `shared` with `traceparent` beside it. Kept inline only when it has the version-00
    /// length and `shared` has no `traceparent`; otherwise the set is copied with it
    /// inserted, so the map read back is the same.
    pub fn with_traceparent(shared: HeaderSet, traceparent: &str) -> Self {
        let inline = <[u8; TRACEPARENT_LEN]>::try_from(traceparent.as_bytes())
            .ok()
            .filter(|_| !shared.contains_key(TRACEPARENT));
        match inline {
            Some(bytes) => Self { shared, traceparent: Some(Traceparent(bytes)) },
            None => {
                let mut set = BTreeMap::clone(&shared);
                set.insert(TRACEPARENT.into(), traceparent.into());
                Self::from(Arc::new(set))
            }
        }
    }

    /// The shared set (without the `traceparent` held beside it).
    pub fn shared(&self) -> &HeaderSet {
        &self.shared
    }

    /// The `traceparent` held beside the shared set, if one is.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_ref().map(Traceparent::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.shared.is_empty() && self.traceparent.is_none()
    }

    pub fn len(&self) -> usize {
        self.shared.len() + usize::from(self.traceparent.is_some())
    }

    /// The value of `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        match &self.traceparent {
            Some(t) if name == TRACEPARENT => Some(t.as_str()),
            _ => self.shared.get(name).map(|v| &**v),
        }
    }

    /// Every header in name order, `traceparent` in its place.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut beside = self.traceparent.as_ref().map(|t| (TRACEPARENT, t.as_str()));
        let mut shared = self.shared.iter().map(|(n, v)| (&**n, &**v)).peekable();
        std::iter::from_fn(move || match (shared.peek(), beside) {
            (Some(&(name, _)), Some(t)) if name > TRACEPARENT => {
                beside = None;
                Some(t)
            }
            (Some(_), _) => shared.next(),
            (None, t) => {
                beside = None;
                t
            }
        })
    }
}

impl Traceparent {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("copied from a whole `str`")
    }
}

impl From<HeaderSet> for Headers {
    fn from(shared: HeaderSet) -> Self {
        Self { shared, traceparent: None }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Serialize for Headers {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from(HeaderSet::deserialize(deserializer)?))
    }
}

/// A JSON value held as its compact text, written into JSON output as it is: the agent
/// builds a record's body once and never encodes it again.
#[derive(Clone, Debug, PartialEq)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// Keeps `text`, which the caller built as one compact JSON value (a JSON writer's
    /// output, not outside input): checked in debug builds only.
    pub fn from_written(text: String) -> Self {
        debug_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(), "not JSON: {text}");
        Self(text.into())
    }

    /// Keeps a copy of `text`, JSON the caller parsed whole and found compact (no
    /// whitespace outside its strings): checked in debug builds only.
    pub fn from_compact(text: &str) -> Self {
        debug_assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(), "not JSON: {text}");
        debug_assert!(!text.contains('\n'), "not compact: {text}");
        Self(text.into())
    }

    /// From a value (its compact text).
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self(value.to_string().into())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// Parsed into a `serde_json::Value`.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).expect("RawJson holds JSON")
    }
}

/// As the JSON it holds, not as a string (in serde_json output, verbatim).
impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(self.get()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(Self(raw.into()))
    }
}

/// One audit record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditRecord {
    /// When the message leg happened (RFC 3339, UTC, nanoseconds).
    #[schemars(with = "String")]
    pub timestamp: Timestamp,
    /// When the agent built the record.
    #[schemars(with = "String")]
    pub observed_timestamp: Timestamp,
    /// Severity.
    pub level: Level,
    /// What happened.
    pub event_type: EventType,
    // The text fields a record shares with other records (the method, tool, session, protocol
    // revision and client of one call, the kind of a body) are `Arc<str>`: the processor
    // keeps one copy of each and every record that names it holds a reference.
    /// HTTP status of the response that carried (or answered) the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u16>,
    /// Content type of the message's HTTP body: `json`, `sse`, `text`, `empty` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_type: Option<Arc<str>>,
    // Shared: every record of one HTTP message (each event of an SSE stream, each message
    // of a batch) carries the same map, redacted once.
    /// HTTP headers of the leg, after redaction (lower-case names).
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: Headers,
    /// Verified user id, from a verified JWT or a trusted gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Verified team id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Verified organisation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// Where the identity came from; `unverified` means the ids above are absent.
    pub identity_source: IdentitySource,
    /// `<server>/<tool>@<definitionHash>` for tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_id: Option<Arc<str>>,
    /// Tool name for `tools/call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<Arc<str>>,
    /// W3C trace id (32 lower-case hex digits), shared by every leg of a call.
    #[schemars(with = "String")]
    pub correlation_id: TraceId,
    /// W3C span id (16 lower-case hex digits) of this leg.
    #[schemars(with = "String")]
    pub span_id: SpanId,
    /// The JSON-RPC id (when the message has one) and a unique id for this message.
    pub request_id: RequestId,
    /// `Mcp-Session-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Arc<str>>,
    /// JSON-RPC method (for a response: the method of its request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Arc<str>>,
    /// MCP protocol revision in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<Arc<str>>,
    /// Peer address of the client (X-Forwarded-For only from trusted proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<Arc<str>>,
    /// Which way the message went.
    pub direction: Direction,
    /// MCP transport.
    pub transport: Transport,
    /// The server that handled the message.
    // Shared by the records of one agent until the server's version is learnt.
    pub server: Arc<ServerIdentity>,
    /// For a response: time from the request to this response, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// Size of the message as it crossed the wire, in bytes.
    pub body_bytes: u64,
    /// The message after redaction (absent when dropped; see `redaction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<RawJson>,
    /// True when the message was larger than the capture limit and `body` is partial or absent.
    #[serde(default)]
    pub body_truncated: bool,
    /// What the redactor did: kinds and counts, never values.
    #[serde(default)]
    pub redaction: RedactionSummary,
    /// Error details for error events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
    /// Governance detail: the decision of a `policy-denied` record, the change of a
    /// `tool-definition-changed` record, the tool fingerprints of a `tools/list` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<Governance>,
}

/// Governance detail of a record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Governance {
    /// The decision a `policy-denied` record reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The change a `tool-definition-changed` record reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_change: Option<ToolChange>,
    /// Every tool of a complete `tools/list` answer with its definition hash (what the
    /// server offered, before any filtering).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<crate::server::ToolFingerprint>,
}

/// What a policy decided about a call or a listed tool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Decision {
    /// Which control decided: `access` (an McpAccessPolicy), `tool-pinning` (toolPolicy)
    /// or `server-version` (allowedVersions).
    pub control: String,
    /// The McpAccessPolicy (`namespace/name`), for `access`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The rule that decided, or `defaultEffect` when no rule matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `observe`, `warn` or `enforce`/`block`: the mode the control runs in.
    pub mode: String,
    /// True when the agent refused the call or hid the tool; false when it only recorded
    /// what enforcement would have done.
    pub enforced: bool,
    /// `call` (a request) or `list` (a tool hidden from a list answer).
    pub action: String,
    /// Why, in words.
    pub reason: String,
}

/// A tool whose definition differs from the approved baseline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolChange {
    /// `changed`, `added` (not in the baseline) or `removed` (in the baseline, no longer listed).
    pub change: String,
    /// The approved definition hash (absent for an added tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_hash: Option<String>,
    /// The hash this agent saw before (absent when this is the first time it sees the tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hash: Option<String>,
    /// The new definition hash (absent for a removed tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The definition fields that differ from what this agent saw before (`description`,
    /// `inputSchema`, ...); empty when it saw no earlier definition of the tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<String>,
    /// What the agent does about it: `observe`, `warn` or `block`.
    pub policy: String,
}

/// Severity, with the OpenTelemetry severity numbers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Fine-grained detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal traffic.
    Info,
    /// Something a person should look at.
    Warn,
    /// A failed call.
    Error,
    /// The agent cannot work.
    Fatal,
}

impl Level {
    /// OpenTelemetry `SeverityNumber` (TRACE=1, DEBUG=5, INFO=9, WARN=13, ERROR=17, FATAL=21).
    pub fn severity_number(self) -> i32 {
        match self {
            Self::Trace => 1,
            Self::Debug => 5,
            Self::Info => 9,
            Self::Warn => 13,
            Self::Error => 17,
            Self::Fatal => 21,
        }
    }

    /// OpenTelemetry `SeverityText`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }
}

/// What a record is about.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// A JSON-RPC request.
    McpRequest,
    /// A JSON-RPC result (a tool result with `isError: true` is an error instead).
    McpResponseSuccess,
    /// A JSON-RPC error, or a tool result with `isError: true`.
    McpResponseError,
    /// A JSON-RPC notification.
    McpNotification,
    /// A session started (`initialize` answered with `Mcp-Session-Id`, or an SSE endpoint).
    McpSessionStart,
    /// A session ended (DELETE, or the SSE stream closed).
    McpSessionEnd,
    /// A tool appeared, disappeared or changed definition after approval.
    ToolDefinitionChanged,
    /// An access policy or tool pinning refused (or, in observe mode, would refuse) a call.
    PolicyDenied,
    /// The redactor changed a message (summary record when configured).
    RedactionApplied,
    /// The upstream MCP server could not be reached.
    UpstreamUnavailable,
    /// A body could not be parsed as MCP (the traffic itself went through untouched).
    ParseError,
    /// A line the MCP server wrote to stdout/stderr (node agent).
    LogLine,
}

impl EventType {
    /// The name as it appears in records and as the OTLP `EventName`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::McpRequest => "mcp-request",
            Self::McpResponseSuccess => "mcp-response-success",
            Self::McpResponseError => "mcp-response-error",
            Self::McpNotification => "mcp-notification",
            Self::McpSessionStart => "mcp-session-start",
            Self::McpSessionEnd => "mcp-session-end",
            Self::ToolDefinitionChanged => "tool-definition-changed",
            Self::PolicyDenied => "policy-denied",
            Self::RedactionApplied => "redaction-applied",
            Self::UpstreamUnavailable => "upstream-unavailable",
            Self::ParseError => "parse-error",
            Self::LogLine => "log-line",
        }
    }

    /// Every event type, in declaration order.
    pub const ALL: [EventType; 12] = [
        Self::McpRequest,
        Self::McpResponseSuccess,
        Self::McpResponseError,
        Self::McpNotification,
        Self::McpSessionStart,
        Self::McpSessionEnd,
        Self::ToolDefinitionChanged,
        Self::PolicyDenied,
        Self::RedactionApplied,
        Self::UpstreamUnavailable,
        Self::ParseError,
        Self::LogLine,
    ];
}

/// Where the caller's identity came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IdentitySource {
    /// A JWT whose signature, issuer, audience and expiry were verified.
    Jwt,
    /// Headers set by a gateway whose address is in the configured trusted CIDRs.
    TrustedGateway,
    /// Namespace or pod labels (node agent enrichment; team/org only).
    Labels,
    /// No verified identity: user, team and org are absent.
    #[default]
    Unverified,
}

impl IdentitySource {
    /// The name as it appears in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::TrustedGateway => "trusted-gateway",
            Self::Labels => "labels",
            Self::Unverified => "unverified",
        }
    }
}

/// Which way a message went.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From the MCP client to the server.
    ClientToServer,
    /// From the MCP server to the client.
    ServerToClient,
    /// Produced by the agent itself (policy decisions, upstream failures).
    Agent,
}

impl Direction {
    /// The name as it appears in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientToServer => "client-to-server",
            Self::ServerToClient => "server-to-client",
            Self::Agent => "agent",
        }
    }
}

/// The JSON-RPC id and a unique id of one message.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestId {
    /// The JSON-RPC `id` as text (a string id is kept as is, a number in decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonrpc: Option<String>,
    /// A unique id (UUID v7) for this message leg.
    #[schemars(with = "String")]
    pub unique: uuid::Uuid,
}

/// Which server handled the message.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerIdentity {
    /// McpServer name.
    pub name: String,
    /// Namespace of the McpServer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod that served the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// `serverInfo.version`, once seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What the redactor did to a record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionSummary {
    /// Number of redactions per kind (for example `aws-access-key-id: 1`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<String, u32>,
    /// Why the body was dropped, when it was (for example `unparseable`, `rule:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_dropped: Option<String>,
}

impl RedactionSummary {
    /// Total number of redactions.
    pub fn total(&self) -> u64 {
        self.kinds.values().map(|&n| u64::from(n)).sum()
    }
}

/// Error details of a record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordError {
    /// Low-cardinality error type: the JSON-RPC code as text, `tool_error`, `http_<status>`,
    /// `upstream_unavailable`, `parse_error`, ... (the OTel `error.type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// JSON-RPC error code, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Error message, after redaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// OpenTelemetry attribute names of record fields. MCP, JSON-RPC, GenAI, network and
/// client attributes follow the OpenTelemetry semantic conventions for MCP; fields
/// without a convention use the `mcpledger.` prefix.
pub mod attr {
    /// `method` (semconv).
    pub const MCP_METHOD_NAME: &str = "mcp.method.name";
    /// `sessionId` (semconv).
    pub const MCP_SESSION_ID: &str = "mcp.session.id";
    /// `protocolVersion` (semconv).
    pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
    /// Resource URI of `resources/*` requests (semconv).
    pub const MCP_RESOURCE_URI: &str = "mcp.resource.uri";
    /// `requestId.jsonrpc` (semconv).
    pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
    /// JSON-RPC version, `2.0` (semconv).
    pub const JSONRPC_PROTOCOL_VERSION: &str = "jsonrpc.protocol.version";
    /// `error.code` of a JSON-RPC error, as text (semconv).
    pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
    /// `toolName` (semconv).
    pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
    /// Prompt name of `prompts/get` (semconv).
    pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
    /// `execute_tool` for tool calls (semconv).
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    /// `error.type` (semconv).
    pub const ERROR_TYPE: &str = "error.type";
    /// `clientIp` (semconv).
    pub const CLIENT_ADDRESS: &str = "client.address";
    /// `tcp` (semconv).
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    /// `http` (semconv).
    pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
    /// `1.1` or `2` (semconv).
    pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
    /// `responseCode` (semconv, HTTP).
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// `userId` (semconv `user.id`).
    pub const USER_ID: &str = "user.id";
    /// `teamId`.
    pub const TEAM_ID: &str = "mcpledger.team.id";
    /// `orgId`.
    pub const ORG_ID: &str = "mcpledger.org.id";
    /// `identitySource`.
    pub const IDENTITY_SOURCE: &str = "mcpledger.identity.source";
    /// `eventType` (also the OTLP `EventName`).
    pub const EVENT_TYPE: &str = "mcpledger.event.type";
    /// `toolId`.
    pub const TOOL_ID: &str = "mcpledger.tool.id";
    /// `correlationId` (also the OTLP `TraceId`).
    pub const CORRELATION_ID: &str = "mcpledger.correlation.id";
    /// `requestId.unique`.
    pub const REQUEST_UID: &str = "mcpledger.request.uid";
    /// `responseType`.
    pub const RESPONSE_TYPE: &str = "mcpledger.response.type";
    /// `headers` (JSON text).
    pub const HEADERS: &str = "mcpledger.headers";
    /// `direction`.
    pub const DIRECTION: &str = "mcpledger.direction";
    /// `transport`.
    pub const TRANSPORT: &str = "mcpledger.transport";
    /// `server.name`.
    pub const SERVER_NAME: &str = "mcpledger.server.name";
    /// `server.namespace`.
    pub const SERVER_NAMESPACE: &str = "mcpledger.server.namespace";
    /// `server.version`.
    pub const SERVER_VERSION: &str = "mcpledger.server.version";
    /// `durationNs`.
    pub const DURATION_NS: &str = "mcpledger.duration_ns";
    /// `bodyBytes`.
    pub const BODY_BYTES: &str = "mcpledger.body.bytes";
    /// `bodyTruncated`.
    pub const BODY_TRUNCATED: &str = "mcpledger.body.truncated";
    /// `redaction.kinds` (JSON text).
    pub const REDACTION_KINDS: &str = "mcpledger.redaction.kinds";
    /// `redaction.payloadDropped`.
    pub const REDACTION_PAYLOAD_DROPPED: &str = "mcpledger.redaction.payload_dropped";
    /// `error.message`.
    pub const ERROR_MESSAGE: &str = "mcpledger.error.message";
    /// `governance.decision.control` (`access`, `tool-pinning`, `server-version`).
    pub const POLICY_CONTROL: &str = "mcpledger.policy.control";
    /// `governance.decision.policy`.
    pub const POLICY_NAME: &str = "mcpledger.policy.name";
    /// `governance.decision.rule`.
    pub const POLICY_RULE: &str = "mcpledger.policy.rule";
    /// `governance.decision.mode`.
    pub const POLICY_MODE: &str = "mcpledger.policy.mode";
    /// `governance.decision.enforced` (boolean).
    pub const POLICY_ENFORCED: &str = "mcpledger.policy.enforced";
    /// `governance.decision.action`.
    pub const POLICY_ACTION: &str = "mcpledger.policy.action";
    /// `governance.decision.reason`.
    pub const POLICY_REASON: &str = "mcpledger.policy.reason";
    /// `governance.toolChange.change`.
    pub const TOOL_CHANGE: &str = "mcpledger.tool.change";
    /// `governance.toolChange.approvedHash`.
    pub const TOOL_APPROVED_HASH: &str = "mcpledger.tool.approved_hash";
    /// `governance.toolChange.previousHash`.
    pub const TOOL_PREVIOUS_HASH: &str = "mcpledger.tool.previous_hash";
    /// `governance.toolChange.hash`.
    pub const TOOL_HASH: &str = "mcpledger.tool.hash";
    /// `governance.toolChange.changedFields` (comma-separated).
    pub const TOOL_CHANGED_FIELDS: &str = "mcpledger.tool.changed_fields";
    /// `governance.toolChange.policy`.
    pub const TOOL_POLICY: &str = "mcpledger.tool.policy";
    /// `governance.tools`: JSON array of `{name, definitionHash}`.
    pub const TOOLS: &str = "mcpledger.tools";

    /// Resource attributes (from the downward API).
    pub mod resource {
        /// Service name of the agent.
        pub const SERVICE_NAME: &str = "service.name";
        /// Agent version.
        pub const SERVICE_VERSION: &str = "service.version";
        /// Namespace of the pod.
        pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
        /// Pod name.
        pub const K8S_POD_NAME: &str = "k8s.pod.name";
        /// Pod UID.
        pub const K8S_POD_UID: &str = "k8s.pod.uid";
        /// Node name.
        pub const K8S_NODE_NAME: &str = "k8s.node.name";
        /// Container name of the MCP server.
        pub const K8S_CONTAINER_NAME: &str = "k8s.container.name";
        /// Owning Deployment, when there is one.
        pub const K8S_DEPLOYMENT_NAME: &str = "k8s.deployment.name";
    }
}
