//! What the proxy hands to the record processor, and the processor itself: it parses
//! captured bodies as MCP, correlates responses with requests, redacts, and builds one
//! audit record per message leg. It runs off the request path, fed by a bounded queue.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jiff::Timestamp;
use mcp_ledger_crds::common::Transport;
use mcp_ledger_crds::record::{
    AuditRecord, Direction, EventType, Governance as GovernanceDetail, HexId, IdentitySource, Level, RawJson,
    RecordError, RedactionSummary, RequestId, ServerIdentity,
};

use crate::govern;
use crate::json::Node;
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::mcp::trace::TraceContext;
use crate::metrics::Metrics;
use crate::redact::{Redactor, SetKey};

mod replay;

/// How the body of an HTTP message is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// `application/json`.
    Json,
    /// `text/event-stream`.
    Sse,
    /// Anything else (text, HTML, ...).
    Other,
    /// No body / no content type.
    Empty,
}

impl ContentKind {
    /// From a Content-Type header value.
    pub fn from_content_type(ct: Option<&str>) -> Self {
        let Some(ct) = ct else { return Self::Empty };
        // The values servers send most, known before any reading (one per response).
        match ct {
            "application/json" => return Self::Json,
            "text/event-stream" => return Self::Sse,
            _ => {}
        }
        let essence = ct.split(';').next().unwrap_or("").trim();
        let is = |name: &str| essence.eq_ignore_ascii_case(name);
        let json_suffix = essence.len() >= 5
            && essence.is_char_boundary(essence.len() - 5)
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json");
        if is("application/json") || json_suffix {
            Self::Json
        } else if is("text/event-stream") {
            Self::Sse
        } else if essence.is_empty() {
            Self::Empty
        } else {
            Self::Other
        }
    }

    /// The record's `responseType`, one copy shared by every record.
    pub fn shared(self) -> Arc<str> {
        // In declaration order, so that a kind's discriminant is its index.
        static SHARED: LazyLock<[Arc<str>; 4]> = LazyLock::new(|| {
            [ContentKind::Json, ContentKind::Sse, ContentKind::Other, ContentKind::Empty].map(|k| k.as_str().into())
        });
        SHARED[self as usize].clone()
    }

    /// The record's `responseType`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Sse => "sse",
            Self::Other => "other",
            Self::Empty => "empty",
        }
    }
}

/// A caller identity, as established by the proxy from a trusted source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// Where it came from.
    pub source: IdentitySource,
    /// User id.
    pub user: Option<String>,
    /// Team id.
    pub team: Option<String>,
    /// Organisation id.
    pub org: Option<String>,
    /// Groups (for access policies).
    pub groups: Vec<String>,
    /// Verified JWT claims with text values (for `Claim` subjects of access policies);
    /// never recorded.
    pub claims: Vec<(String, String)>,
}

impl Identity {
    /// The caller as access policies see it (nobody, unless verified).
    pub fn caller(&self) -> govern::Caller<'_> {
        let verified = self.source != IdentitySource::Unverified;
        govern::Caller {
            user: self.user.as_deref().filter(|_| verified),
            groups: if verified { &self.groups } else { &[] },
            claims: if verified { &self.claims } else { &[] },
        }
    }
}

pub use crate::redact::SharedHeaders;

/// Headers after redaction, computed once per HTTP message and shared by its records, and
/// what the redaction found in them (kind → count).
pub type RedactedHeaders = (mcp_ledger_crds::record::Headers, BTreeMap<String, u32>);

/// One HTTP exchange through the proxy.
#[derive(Debug)]
pub struct Exchange {
    /// Unique per agent process.
    pub id: u64,
    /// When the request arrived.
    pub started: Instant,
    /// The same, as wall-clock time.
    pub started_at: Timestamp,
    /// HTTP method.
    pub http_method: http::Method,
    /// `Mcp-Session-Id` sent by the client.
    pub session_id: Option<String>,
    /// Session of the 2024-11-05 HTTP+SSE transport (`?session_id=` / `?sessionId=`).
    pub legacy_session: Option<String>,
    /// Client address.
    pub client_ip: Option<std::net::IpAddr>,
    /// The trace this exchange belongs to (the client's, or one the agent created).
    pub trace: TraceContext,
    /// Request headers, raw: redacted by the processor before they go anywhere.
    pub request_headers: HeaderLines,
    /// The request headers after redaction, computed once by the processor.
    pub redacted_request_headers: OnceLock<RedactedHeaders>,
    /// The caller.
    pub identity: Identity,
}

impl Exchange {
    /// Where this exchange's JSON-RPC ids are unique: its session, or itself.
    pub fn scope(&self) -> Scope {
        match (&self.session_id, &self.legacy_session) {
            (Some(s), _) => Scope::Session(s.clone()),
            (None, Some(s)) => Scope::Legacy(s.clone()),
            (None, None) => Scope::Exchange(self.id),
        }
    }

    /// The `MCP-Protocol-Version` header.
    pub fn protocol_header(&self) -> Option<&str> {
        self.request_headers.text("mcp-protocol-version")
    }

    /// The `Mcp-Method` header (2026-07-28).
    pub fn method_header(&self) -> Option<&str> {
        self.request_headers.text("mcp-method")
    }
}

/// Where a JSON-RPC id is unique: a Streamable HTTP session (`Mcp-Session-Id`), a
/// 2024-11-05 HTTP+SSE session, or, without a session, one exchange. Written
/// `mcp:<id>`, `sse:<id>` and `ex:<n>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Session(String),
    Legacy(String),
    Exchange(u64),
}

impl Scope {
    /// The session id, when the scope is a session.
    fn into_session_id(self) -> Option<String> {
        match self {
            Scope::Session(s) | Scope::Legacy(s) => Some(s),
            Scope::Exchange(_) => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Session(s) => write!(f, "mcp:{s}"),
            Scope::Legacy(s) => write!(f, "sse:{s}"),
            Scope::Exchange(n) => write!(f, "ex:{n}"),
        }
    }
}

/// Headers as captured for the record, every value of every name in the map's order,
/// copied into one buffer. The processor only reads them, to redact them; a `HeaderMap`
/// clone costs more, and each custom name it holds (`mcp-*`) allocates when cloned.
#[derive(Debug, Default)]
pub struct HeaderLines {
    /// Per header where its name and its value end (two little-endian `u32`s, counted
    /// from the end of this table), then each name (text: a whole `&str`) and its value
    /// (bytes: a value need not be UTF-8). One allocation per capture, filled in one pass
    /// over the map: the proxy makes two captures per request and the processor, on its
    /// own thread, frees them.
    buf: Vec<u8>,
    /// How many headers the table holds (where it ends: `lines * END_PAIR`).
    lines: usize,
}

/// Bytes per header in the table of ends.
const END_PAIR: usize = 8;

/// Room made per header before any is copied: most names and values are shorter together
/// (a longer set grows the buffer).
const LINE_ROOM: usize = 48;

impl HeaderLines {
    pub fn capture(headers: &http::HeaderMap) -> Self {
        // `len` counts every value of every name: as many lines as `iter` yields.
        Self::from_lines(headers.len(), headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())))
    }

    /// The `count` headers `lines` yields. Header blocks are far below 4 GiB (hyper refuses
    /// heads over a few hundred KiB), so ends fit a `u32`.
    #[inline]
    fn from_lines<'a>(count: usize, lines: impl Iterator<Item = (&'a str, &'a [u8])>) -> Self {
        let table = count * END_PAIR;
        let mut buf = Vec::with_capacity(table + count * LINE_ROOM);
        buf.resize(table, 0);
        let mut n = 0;
        for (name, value) in lines.take(count) {
            buf.extend_from_slice(name.as_bytes());
            let name_end = (buf.len() - table) as u32;
            buf.extend_from_slice(value);
            let value_end = (buf.len() - table) as u32;
            buf[n * END_PAIR..][..4].copy_from_slice(&name_end.to_le_bytes());
            buf[n * END_PAIR + 4..][..4].copy_from_slice(&value_end.to_le_bytes());
            n += 1;
        }
        // Fewer lines than counted: the table closes up (its ends are counted from its end).
        buf.drain(n * END_PAIR..table);
        Self { buf, lines: n }
    }

    /// The first value of `name` (lower case), read as `HeaderValue::to_str` reads it:
    /// only when it is all visible ASCII (or tabs). Names are compared as bytes: nothing
    /// is read as text but the value found.
    pub fn text(&self, name: &str) -> Option<&str> {
        let (_, value) = self.spans().find(|(n, _)| self.buf[n.clone()] == *name.as_bytes())?;
        let value = &self.buf[value];
        let visible = value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
        visible.then(|| std::str::from_utf8(value).ok()).flatten()
    }

    /// What the redactor remembers this set by: the whole buffer, the value of the first
    /// `traceparent` that is a well-formed trace context left out. With where that value
    /// was and the number of headers, the bytes spell one set: the table of ends opens
    /// the buffer, and says where each name and value begins and ends.
    pub fn set_key(&self) -> SetKey<'_> {
        let lines = self.lines;
        let traceparent = self.spans().find_map(|(name, value)| {
            let text = (&self.buf[name] == b"traceparent").then(|| std::str::from_utf8(&self.buf[value.clone()]));
            text?.ok().filter(|v| crate::redact::is_traceparent(v)).map(|v| (value, v))
        });
        match traceparent {
            Some((value, text)) => {
                SetKey { parts: [&self.buf[..value.start], &self.buf[value.end..]], traceparent: Some(text), lines }
            }
            None => SetKey { parts: [&self.buf, &[]], traceparent: None, lines },
        }
    }

    /// Each header's name and value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.spans().map(|(name, value)| {
            let name = std::str::from_utf8(&self.buf[name]).expect("names were copied from whole `&str`s");
            (name, &self.buf[value])
        })
    }

    /// Where each header's name and value are in `buf`.
    fn spans(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> {
        let base = self.lines * END_PAIR;
        let (table, _) = self.buf[..base].as_chunks::<END_PAIR>();
        let mut start = base;
        table.iter().map(move |&[a, b, c, d, e, f, g, h]| {
            let name_end = base + u32::from_le_bytes([a, b, c, d]) as usize;
            let value_end = base + u32::from_le_bytes([e, f, g, h]) as usize;
            let span = (start..name_end, name_end..value_end);
            start = value_end;
            span
        })
    }
}

/// The response head of an exchange.
#[derive(Debug)]
pub struct ResponseHead {
    /// HTTP status.
    pub status: u16,
    /// Body framing.
    pub content: ContentKind,
    /// Response headers, raw.
    pub headers: HeaderLines,
    /// `Mcp-Session-Id` set by the server.
    pub session_id: Option<String>,
    /// The response headers after redaction, computed once by the processor.
    pub redacted_headers: OnceLock<RedactedHeaders>,
}

impl ResponseHead {
    /// The session this answer belongs to: the one it names, else the request's.
    fn session<'a>(&'a self, ex: &'a Exchange) -> Option<&'a str> {
        self.session_id.as_deref().or(ex.session_id.as_deref())
    }
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    /// All of it was delivered.
    Complete,
    /// The client closed an event stream between events (normal for GET streams).
    ClientClosed,
    /// Cut inside a message: upstream error, client gone mid-body, or a partial SSE event.
    Cut(&'static str),
}

/// A captured piece of traffic.
#[derive(Debug)]
pub enum Captured {
    /// The client's request body (possibly empty).
    Request {
        /// The exchange.
        ex: Arc<Exchange>,
        /// Up to the capture limit.
        body: Bytes,
        /// Larger than the limit.
        truncated: bool,
        /// Total size.
        wire_bytes: u64,
    },
    /// One message of the response: the whole JSON body, or one SSE event.
    Response {
        /// The exchange.
        ex: Arc<Exchange>,
        /// Its response head.
        head: Arc<ResponseHead>,
        /// Up to the capture limit.
        body: Bytes,
        /// Larger than the limit.
        truncated: bool,
        /// Size on the wire.
        wire_bytes: u64,
        /// SSE `event:` type (None for JSON bodies).
        sse_event: Option<String>,
        /// SSE `id:`.
        sse_id: Option<String>,
    },
    /// A whole JSON response body, and with it the end of the response (complete): one
    /// item for the `Response` and `End` that would follow each other.
    Whole {
        /// The exchange.
        ex: Arc<Exchange>,
        /// Its response head.
        head: Arc<ResponseHead>,
        /// Up to the capture limit.
        body: Bytes,
        /// Larger than the limit.
        truncated: bool,
        /// Size on the wire.
        wire_bytes: u64,
    },
    /// The response body ended.
    End {
        /// The exchange.
        ex: Arc<Exchange>,
        /// Its response head.
        head: Arc<ResponseHead>,
        /// How it ended.
        outcome: EndOutcome,
    },
    /// A governance decision or tool change (see [`crate::govern`]).
    Governance {
        /// The exchange it happened in.
        ex: Arc<Exchange>,
        /// The JSON-RPC method concerned (`tools/call`, `tools/list`, `initialize`).
        method: Option<String>,
        /// The JSON-RPC id of the request concerned.
        jsonrpc_id: Option<String>,
        /// What to record.
        event: govern::Event,
    },
    /// The client went away before the server's answer began: the proxy gave the exchange
    /// up with no response to tap.
    Abandoned {
        /// The exchange.
        ex: Arc<Exchange>,
    },
    /// The upstream could not be reached; the client got a 502.
    UpstreamUnavailable {
        /// The exchange.
        ex: Arc<Exchange>,
        /// What failed (low cardinality).
        reason: &'static str,
    },
}

struct Pending {
    method: Arc<str>,
    tool: Option<Arc<str>>,
    started: Instant,
    trace: TraceContext,
    exchange: u64,
}

/// Which headers a record carries.
#[derive(Clone, Copy)]
enum Headers<'a> {
    /// The exchange's request headers.
    Request(&'a Exchange),
    /// A response's headers.
    Response(&'a ResponseHead),
}

/// Static facts about the server behind the agent.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// McpServer name.
    pub name: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Pod name.
    pub pod: Option<String>,
    /// Transport.
    pub transport: Transport,
}

/// The pending-map id of a request the server sent to the client (sampling, elicitation,
/// roots): JSON-RPC ids are chosen by each side, so the client's request 1 and the server's
/// request 1 are different requests.
fn server_request_id(id: &str) -> String {
    format!("server:{id}")
}

const MAX_PENDING: usize = 65_536;
const PENDING_TTL: Duration = Duration::from_secs(600);
/// How often unanswered requests and idle sessions are looked over for expired ones.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long a session without traffic counts as open, unless configured.
const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Items processed between two readings of the clock for expiry.
const EXPIRY_CHECK_EVERY: u32 = 64;
const MAX_TOOL_LABELS: usize = 256;

/// The texts that one record after another repeats (the client's address, the protocol
/// revision, the session, the method and tool called), each kept as the last record had
/// it: the next record that names the same one shares it instead of copying it.
#[derive(Default)]
struct Repeated {
    client_ip: RefCell<Option<(IpAddr, Arc<str>)>>,
    protocol: LastText,
    session: LastText,
    method: LastText,
    tool: LastText,
}

impl Repeated {
    fn client_ip(&self, ip: IpAddr) -> Arc<str> {
        let mut last = self.client_ip.borrow_mut();
        match &*last {
            Some((seen, text)) if *seen == ip => text.clone(),
            _ => last.insert((ip, ip_text(ip).into())).1.clone(),
        }
    }
}

/// A tool's id and the definition hash it was made with.
type ToolId = (Option<String>, Arc<str>);

/// The last text of one kind, shared while it repeats.
#[derive(Default)]
struct LastText(RefCell<Option<Arc<str>>>);

impl LastText {
    fn get(&self, text: &str) -> Arc<str> {
        let mut last = self.0.borrow_mut();
        match &*last {
            Some(seen) if **seen == *text => seen.clone(),
            _ => last.insert(text.into()).clone(),
        }
    }
}

/// A map by exchange number. The agent counts exchanges itself, so a client cannot pick
/// colliding keys: a fast hash is enough (the maps keyed by what clients send keep
/// SipHash).
type ByExchange<V> = HashMap<u64, V, foldhash::fast::RandomState>;

/// Turns captured traffic into audit records.
pub struct Processor {
    transport: Transport,
    redactor: Arc<Redactor>,
    metrics: Metrics,
    /// Requests waiting for their answer, and nothing else: an answer takes its request
    /// out, and expiry sweeps this map rather than keeping a second record of every key.
    pending: HashMap<(Scope, String), Pending>,
    /// Items processed since the clock was last read for expiry, and when the pending
    /// requests were last swept for expired ones.
    since_expiry_check: u32,
    last_sweep: Instant,
    stream_sessions: ByExchange<String>,
    /// SSE events already recorded, and which open streams carried event ids.
    seen_events: replay::SeenEvents,
    /// Streamable HTTP sessions the server accepted, each with when an answer or event
    /// of it was last seen: a session ends with its DELETE (or the server's 404), or is
    /// forgotten after `session_idle` without one.
    sessions: HashMap<String, Instant>,
    session_idle: Duration,
    /// 2024-11-05 HTTP+SSE sessions: each lasts as long as its event stream.
    legacy_sessions: HashSet<String>,
    exchange_requests: ByExchange<Vec<String>>,
    tool_labels: HashSet<String>,
    /// The server as records name it (shared by them; its version is learnt from
    /// `initialize`).
    identity: Arc<ServerIdentity>,
    protocol_version: Option<Arc<str>>,
    /// Texts of the last records, shared by the next ones that repeat them.
    repeated: Repeated,
    /// Tool ids by tool name (bounded like the tool labels: clients name the tools, but
    /// past the bound nothing is added, so colliding names cannot grow a chain without
    /// limit; the fast hash is safe here, unlike for `pending`, whose ids clients pick).
    tool_ids: RefCell<HashMap<String, ToolId, foldhash::fast::RandomState>>,
    governance: Arc<govern::Governance>,
}

impl Processor {
    /// A processor for one server.
    pub fn new(
        server: ServerFacts,
        redactor: Arc<Redactor>,
        metrics: Metrics,
        governance: Arc<govern::Governance>,
    ) -> Self {
        let identity =
            Arc::new(ServerIdentity { name: server.name, namespace: server.namespace, pod: server.pod, version: None });
        Self {
            transport: server.transport,
            identity,
            redactor,
            metrics,
            pending: HashMap::new(),
            since_expiry_check: 0,
            last_sweep: Instant::now(),
            stream_sessions: ByExchange::default(),
            seen_events: replay::SeenEvents::default(),
            sessions: HashMap::new(),
            session_idle: DEFAULT_SESSION_IDLE,
            legacy_sessions: HashSet::new(),
            exchange_requests: ByExchange::default(),
            tool_labels: HashSet::new(),
            protocol_version: None,
            repeated: Repeated::default(),
            tool_ids: RefCell::default(),
            governance,
        }
    }

    /// Sets how long a session without traffic counts as open (`capture.sessionIdleSeconds`).
    pub fn set_session_idle(&mut self, idle: Duration) {
        self.session_idle = idle;
    }

    /// Replaces the redactor (policy reload).
    pub fn set_redactor(&mut self, redactor: Arc<Redactor>) {
        self.redactor = redactor;
    }

    /// Processes one captured item, appending the records it yields.
    pub fn process(&mut self, item: Captured, out: &mut Vec<AuditRecord>) {
        match item {
            Captured::Request { ex, body, truncated, wire_bytes } => {
                self.on_request(&ex, &body, truncated, wire_bytes, out)
            }
            Captured::Response { ex, head, body, truncated, wire_bytes, sse_event, sse_id } => {
                self.on_response(
                    &ex,
                    &head,
                    &body,
                    truncated,
                    wire_bytes,
                    sse_event.as_deref(),
                    sse_id.as_deref(),
                    out,
                );
                // An event keeps its session open (after an initialize answer opened it).
                if head.status < 300 {
                    self.session_seen(head.session(&ex), false);
                }
            }
            Captured::Whole { ex, head, body, truncated, wire_bytes } => {
                self.on_response(&ex, &head, &body, truncated, wire_bytes, None, None, out);
                self.on_end(&ex, &head, EndOutcome::Complete, out);
            }
            Captured::End { ex, head, outcome } => self.on_end(&ex, &head, outcome, out),
            Captured::UpstreamUnavailable { ex, reason } => self.on_upstream_unavailable(&ex, reason, out),
            Captured::Abandoned { ex } => self.on_abandoned(&ex, out),
            Captured::Governance { ex, method, jsonrpc_id, event } => {
                self.on_governance(&ex, method, jsonrpc_id, event, out)
            }
        }
        self.expire_pending();
    }

    fn key_for(&self, ex: &Exchange) -> Scope {
        match self.stream_sessions.get(&ex.id) {
            Some(s) => Scope::Legacy(s.clone()),
            None => ex.scope(),
        }
    }

    fn on_request(
        &mut self,
        ex: &Arc<Exchange>,
        body: &Bytes,
        truncated: bool,
        wire_bytes: u64,
        out: &mut Vec<AuditRecord>,
    ) {
        if ex.http_method == http::Method::DELETE {
            return; // recorded as mcp-session-end when the server answers
        }
        if body.is_empty() && !truncated {
            return; // a GET that opens a stream: the stream's events are the records
        }
        let head_headers = Headers::Request(ex);
        let messages = match self.parse(body, truncated) {
            Ok(m) => m,
            Err(reason) => {
                let mut r = self.parse_error_record(ex, Direction::ClientToServer, None, "parse_error", Some(reason));
                r.body_bytes = wire_bytes;
                r.body_truncated = truncated;
                out.push(r);
                return;
            }
        };
        let key = self.key_for(ex);
        let per_message = wire_bytes / messages.len().max(1) as u64;
        for msg in messages {
            let method = self.repeated.method.get(msg.method().unwrap_or_default());
            let (event, level) = match msg.kind {
                Kind::Request => (EventType::McpRequest, Level::Info),
                Kind::Notification => (EventType::McpNotification, Level::Info),
                Kind::Result | Kind::Error => {
                    // The client answering a server-to-client request.
                    self.on_answer(ex, None, msg, per_message, false, Direction::ClientToServer, head_headers, out);
                    continue;
                }
            };
            let trace = msg.meta_traceparent().and_then(TraceContext::parse).unwrap_or(ex.trace);
            let mut r = self.record(ex, event, level, Direction::ClientToServer, trace, head_headers);
            r.method = Some(method.clone());
            r.request_id.jsonrpc = msg.id_text();
            r.tool_name = msg.tool_name().map(|t| self.repeated.tool.get(t));
            r.tool_id = r.tool_name.as_deref().map(|t| self.tool_id(t));
            if let Some(v) = msg.protocol_version() {
                r.protocol_version = Some(self.repeated.protocol.get(v));
            }
            r.body_bytes = per_message;
            r.body_truncated = truncated;
            if let Some(id) = r.request_id.jsonrpc.clone() {
                self.add_pending(
                    (key.clone(), id.clone()),
                    Pending {
                        method: method.clone(),
                        tool: r.tool_name.clone(),
                        started: ex.started,
                        trace,
                        exchange: ex.id,
                    },
                );
                self.exchange_requests.entry(ex.id).or_default().push(id);
            }
            self.finish_body(&mut r, msg.value, msg.text);
            out.push(r);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        ex: &Arc<Exchange>,
        head: &Arc<ResponseHead>,
        body: &Bytes,
        truncated: bool,
        wire_bytes: u64,
        sse_event: Option<&str>,
        sse_id: Option<&str>,
        out: &mut Vec<AuditRecord>,
    ) {
        if let Some(id) = sse_id
            && self.seen_events.replayed(ex.id, head.session(ex), id)
        {
            self.metrics.dropped("replayed_event", true);
            return; // replayed after Last-Event-ID: already recorded
        }
        if sse_event == Some("endpoint") {
            // 2024-11-05 HTTP+SSE: the stream names the URL the client posts to.
            let text = String::from_utf8_lossy(body);
            let session = query_session(&text).unwrap_or_else(|| text.to_string());
            self.stream_sessions.insert(ex.id, session.clone());
            if self.legacy_sessions.insert(session.clone()) {
                self.metrics.active_sessions.inc();
            }
            let mut r = self.record(
                ex,
                EventType::McpSessionStart,
                Level::Info,
                Direction::ServerToClient,
                ex.trace,
                Headers::Response(head),
            );
            r.session_id = Some(session.into());
            r.response_code = Some(head.status);
            r.response_type = Some(head.content.shared());
            r.body_bytes = wire_bytes;
            out.push(r);
            return;
        }
        if body.is_empty() && !truncated {
            return; // an SSE priming event with an id and no data
        }
        let messages = match self.parse(body, truncated) {
            Ok(m) => m,
            Err(reason) => {
                let mut r =
                    self.parse_error_record(ex, Direction::ServerToClient, Some(head), "parse_error", Some(reason));
                r.body_bytes = wire_bytes;
                r.body_truncated = truncated;
                out.push(r);
                return;
            }
        };
        let per_message = wire_bytes / messages.len().max(1) as u64;
        for msg in messages {
            match msg.kind {
                Kind::Result | Kind::Error => self.on_answer(
                    ex,
                    Some(head),
                    msg,
                    per_message,
                    truncated,
                    Direction::ServerToClient,
                    Headers::Response(head),
                    out,
                ),
                Kind::Request | Kind::Notification => {
                    // Server-to-client requests (sampling, elicitation, roots) and notifications.
                    let event =
                        if msg.kind == Kind::Request { EventType::McpRequest } else { EventType::McpNotification };
                    let mut r = self.record(
                        ex,
                        event,
                        Level::Info,
                        Direction::ServerToClient,
                        ex.trace,
                        Headers::Response(head),
                    );
                    r.method = msg.method().map(Arc::from);
                    r.request_id.jsonrpc = msg.id_text();
                    r.response_code = Some(head.status);
                    r.response_type = Some(head.content.shared());
                    r.body_bytes = per_message;
                    r.body_truncated = truncated;
                    if let (Some(id), Some(method)) = (msg.id_text(), msg.method()) {
                        let key = head.session_id.clone().map(Scope::Session).unwrap_or_else(|| self.key_for(ex));
                        self.add_pending(
                            (key, server_request_id(&id)),
                            Pending {
                                method: method.into(),
                                tool: None,
                                started: Instant::now(),
                                trace: ex.trace,
                                exchange: ex.id,
                            },
                        );
                    }
                    if msg.method() == Some("notifications/tools/list_changed") {
                        self.tool_labels.clear();
                    }
                    self.finish_body(&mut r, msg.value, msg.text);
                    out.push(r);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_answer(
        &mut self,
        ex: &Arc<Exchange>,
        head: Option<&Arc<ResponseHead>>,
        msg: Message,
        wire_bytes: u64,
        truncated: bool,
        direction: Direction,
        headers: Headers<'_>,
        out: &mut Vec<AuditRecord>,
    ) {
        let id = msg.id_text();
        // Each side numbers its own requests: an answer from the client names a request
        // of the server's, which is kept apart from the client's requests with the same id.
        let pending = id.as_ref().and_then(|id| match direction {
            Direction::ClientToServer => self.take_pending(ex, &server_request_id(id)),
            _ => self.take_pending(ex, id),
        });
        let trace = pending.as_ref().map(|p| p.trace).unwrap_or(ex.trace);
        let error = msg.error();
        let (event, level) = if error.is_some() {
            (EventType::McpResponseError, Level::Error)
        } else {
            (EventType::McpResponseSuccess, Level::Info)
        };
        let mut r = self.record(ex, event, level, direction, trace, headers);
        r.request_id.jsonrpc = id;
        if let Some(head) = head {
            r.response_code = Some(head.status);
            r.response_type = Some(head.content.shared());
        }
        r.body_bytes = wire_bytes;
        r.body_truncated = truncated;
        let method = pending.as_ref().map(|p| p.method.clone());
        if method.as_deref() == Some("initialize") || method.as_deref() == Some("server/discover") {
            if let Some((_, version)) = msg.server_info() {
                let version = Some(version.to_owned()).filter(|v| !v.is_empty());
                if version != self.identity.version {
                    Arc::make_mut(&mut self.identity).version = version;
                }
            }
            if let Some(v) = msg.protocol_version() {
                self.protocol_version = Some(v.into());
            }
        }
        if method.as_deref() == Some("tools/list")
            && let Some(result) = msg.result()
        {
            for tool in result.get("tools").and_then(Node::as_array).into_iter().flatten() {
                if self.tool_labels.len() < MAX_TOOL_LABELS
                    && let Some(name) = tool.get("name").and_then(Node::as_str)
                {
                    self.tool_labels.insert(name.to_owned());
                }
            }
            // The last page: the whole list the server offered (before any filtering), for
            // the inventory.
            if result.get("nextCursor").is_none_or(Node::is_null)
                && let Some(tools) = self.governance.complete_list()
            {
                r.governance = Some(GovernanceDetail { tools, ..Default::default() });
            }
        }
        r.server = self.identity.clone();
        r.protocol_version = self.protocol_version.clone();
        r.method = method.clone();
        if let Some(p) = &pending {
            let elapsed = p.started.elapsed();
            r.duration_ns = Some(saturating_nanos(elapsed));
            r.tool_name = p.tool.clone();
            r.tool_id = p.tool.as_deref().map(|t| self.tool_id(t));
            let method_label = jsonrpc::method_label(&p.method);
            if direction == Direction::ServerToClient {
                let tool_label = p.tool.as_deref().map(|t| self.tool_label(t)).unwrap_or("");
                let outcome = match &error {
                    None => "success",
                    Some((Some(_), _)) => "error",
                    Some((None, _)) => "tool_error",
                };
                self.metrics
                    .requests
                    .with_label_values(&[&self.identity.name, method_label, tool_label, outcome])
                    .inc();
                self.metrics
                    .duration
                    .with_label_values(&[&self.identity.name, method_label])
                    .observe(elapsed.as_secs_f64());
            }
        }
        if let Some((code, _)) = error {
            r.error = Some(RecordError {
                kind: code.map(|c| c.to_string()).unwrap_or_else(|| "tool_error".to_owned()),
                code,
                message: None,
            });
        }
        // Session start: the server assigned a session in its answer to initialize.
        let new_session = head.and_then(|h| h.session_id.clone()).filter(|_| method.as_deref() == Some("initialize"));
        self.finish_body(&mut r, msg.value, msg.text);
        out.push(r);
        if let Some(session) = new_session
            && self.sessions.insert(session.clone(), Instant::now()).is_none()
        {
            self.metrics.active_sessions.inc();
            let mut s =
                self.record(ex, EventType::McpSessionStart, Level::Info, Direction::ServerToClient, trace, headers);
            s.session_id = Some(session.into());
            s.protocol_version = self.protocol_version.clone();
            s.response_code = head.map(|h| h.status);
            out.push(s);
        }
    }

    fn on_end(
        &mut self,
        ex: &Arc<Exchange>,
        head: &Arc<ResponseHead>,
        outcome: EndOutcome,
        out: &mut Vec<AuditRecord>,
    ) {
        // Requests of this exchange that got no JSON-RPC answer on it.
        let unanswered: Vec<String> = self.exchange_requests.remove(&ex.id).unwrap_or_default();
        // A stream with event ids the client left can be resumed with `Last-Event-ID`.
        let resumable = self.seen_events.ended(ex.id, outcome == EndOutcome::Complete);
        let key = self.key_for(ex);
        // A complete 2xx without the answer (a 202 of the legacy transport, an SSE stream
        // that ends early) means the answer comes on another stream; so does a stream with
        // event ids the client left: it may resume with Last-Event-ID and get the answer
        // there (a disconnection is not a cancellation). Unresumed requests expire.
        let elsewhere = head.status < 300
            && (outcome == EndOutcome::Complete || (outcome == EndOutcome::ClientClosed && resumable));
        for id in unanswered.into_iter().filter(|_| !elsewhere) {
            let Some((id, p)) = self.take_waiting_on(ex, key.clone(), id) else { continue };
            let kind = match outcome {
                EndOutcome::Complete => format!("http_{}", head.status),
                EndOutcome::ClientClosed => "client_disconnected".to_owned(),
                EndOutcome::Cut(reason) => reason.to_owned(),
            };
            let mut r = self.unanswered(ex, id, p, Direction::ServerToClient, Headers::Response(head), kind);
            r.response_code = Some(head.status);
            r.response_type = Some(head.content.shared());
            out.push(r);
        }
        if let EndOutcome::Cut(reason) = outcome {
            self.metrics.parse_errors.with_label_values(&[reason]).inc();
            out.push(self.parse_error_record(ex, Direction::ServerToClient, Some(head), reason, None));
        }
        let deleted = ex.http_method == http::Method::DELETE && head.status < 300;
        if head.status == 404 && !deleted {
            // The server no longer knows the session (it ended or expired there).
            if let Some(session) = &ex.session_id
                && self.sessions.remove(session).is_some()
            {
                self.metrics.active_sessions.dec();
            }
        } else if head.status < 300 && !deleted {
            // A request the server accepted in the session: it is open. The end of a GET
            // stream is not such a request: the server closes a deleted session's stream.
            let accepted = ex.http_method == http::Method::POST;
            self.session_seen(head.session(ex), accepted);
        }
        let ended = if deleted {
            ex.session_id.clone().map(Scope::Session)
        } else {
            self.stream_sessions.remove(&ex.id).map(Scope::Legacy)
        };
        if let Some(session) = ended {
            let was_open = match &session {
                Scope::Session(s) => self.sessions.remove(s).is_some(),
                Scope::Legacy(s) => self.legacy_sessions.remove(s),
                Scope::Exchange(_) => false,
            };
            if was_open {
                self.metrics.active_sessions.dec();
            }
            let mut r = self.record(
                ex,
                EventType::McpSessionEnd,
                Level::Info,
                Direction::ClientToServer,
                ex.trace,
                Headers::Request(ex),
            );
            r.session_id = session.into_session_id().map(Arc::from);
            r.response_code = Some(head.status);
            out.push(r);
        }
    }

    /// The record of request `id`, which got no answer on its exchange: `kind` says why.
    fn unanswered(
        &self,
        ex: &Exchange,
        id: String,
        p: Pending,
        direction: Direction,
        headers: Headers<'_>,
        kind: String,
    ) -> AuditRecord {
        let mut r = self.record(ex, EventType::McpResponseError, Level::Error, direction, p.trace, headers);
        r.request_id.jsonrpc = Some(id);
        r.tool_id = p.tool.as_deref().map(|t| self.tool_id(t));
        r.method = Some(p.method.clone());
        r.duration_ns = Some(saturating_nanos(p.started.elapsed()));
        r.error = Some(RecordError { kind, code: None, message: None });
        let tool_label = p.tool.as_deref().map(|t| self.tool_label(t)).unwrap_or("");
        self.metrics
            .requests
            .with_label_values(&[&self.identity.name, jsonrpc::method_label(&p.method), tool_label, "unanswered"])
            .inc();
        r.tool_name = p.tool;
        r
    }

    /// The client left before the server's answer began (see [`Captured::Abandoned`]):
    /// each request of the exchange still waiting is recorded as unanswered.
    fn on_abandoned(&mut self, ex: &Arc<Exchange>, out: &mut Vec<AuditRecord>) {
        self.seen_events.ended(ex.id, false);
        let key = self.key_for(ex);
        for id in self.exchange_requests.remove(&ex.id).unwrap_or_default() {
            let Some((id, p)) = self.take_waiting_on(ex, key.clone(), id) else { continue };
            let kind = "client_disconnected".to_owned();
            out.push(self.unanswered(ex, id, p, Direction::Agent, Headers::Request(ex), kind));
        }
    }

    /// Takes request `id` of `key` out of the waiting ones if it still waits on `ex` (a
    /// request of the same id sent since, on another exchange, is that exchange's).
    fn take_waiting_on(&mut self, ex: &Exchange, key: Scope, id: String) -> Option<(String, Pending)> {
        match self.pending.entry((key, id)) {
            std::collections::hash_map::Entry::Occupied(e) if e.get().exchange == ex.id => {
                let ((_, id), p) = e.remove_entry();
                Some((id, p))
            }
            _ => None,
        }
    }

    /// A message of `session` was seen, in an answer the server accepted: the session is
    /// still open. With `accepted_request` (the server accepted a POST in it) it is open
    /// again if it had been forgotten idle or began before this agent started.
    fn session_seen(&mut self, session: Option<&str>, accepted_request: bool) {
        let Some(session) = session.filter(|s| !s.is_empty()) else {
            return;
        };
        let now = Instant::now();
        match self.sessions.get_mut(session) {
            Some(seen) => *seen = now,
            None if accepted_request => {
                self.sessions.insert(session.to_owned(), now);
                self.metrics.active_sessions.inc();
            }
            None => {}
        }
    }

    fn on_upstream_unavailable(&mut self, ex: &Arc<Exchange>, reason: &'static str, out: &mut Vec<AuditRecord>) {
        let key = self.key_for(ex);
        self.seen_events.ended(ex.id, true);
        for id in self.exchange_requests.remove(&ex.id).unwrap_or_default() {
            self.pending.remove(&(key.clone(), id));
        }
        let mut r = self.record(
            ex,
            EventType::UpstreamUnavailable,
            Level::Error,
            Direction::Agent,
            ex.trace,
            Headers::Request(ex),
        );
        r.response_code = Some(502);
        r.response_type = Some(ContentKind::Json.shared());
        r.method = ex.method_header().map(Arc::from);
        r.error =
            Some(RecordError { kind: "upstream_unavailable".into(), code: None, message: Some(reason.to_owned()) });
        out.push(r);
    }

    /// A `parse-error` record: the body could not be read as MCP (or the stream was cut);
    /// the payload is never recorded raw.
    fn parse_error_record(
        &self,
        ex: &Exchange,
        direction: Direction,
        head: Option<&ResponseHead>,
        kind: &str,
        reason: Option<String>,
    ) -> AuditRecord {
        let headers = match head {
            Some(h) => Headers::Response(h),
            None => Headers::Request(ex),
        };
        let mut r = self.record(ex, EventType::ParseError, Level::Warn, direction, ex.trace, headers);
        if let Some(h) = head {
            r.response_code = Some(h.status);
            r.response_type = Some(h.content.shared());
        }
        r.redaction.payload_dropped = reason.clone();
        r.error = Some(RecordError { kind: kind.to_owned(), code: None, message: reason });
        r
    }

    fn parse<'b>(&self, body: &'b Bytes, truncated: bool) -> Result<Vec<Message<'b>>, String> {
        if truncated {
            self.metrics.parse_errors.with_label_values(&["truncated"]).inc();
            return Err("body larger than capture.maxBodyBytes: payload not recorded".to_owned());
        }
        jsonrpc::parse(body).map_err(|e| {
            self.metrics.parse_errors.with_label_values(&[e.kind()]).inc();
            // The parser's message can quote the body: keep only the kind (fail closed).
            format!("unparseable body ({})", e.kind())
        })
    }

    /// `<server>/<tool>@<definitionHash>`, or `<server>/<tool>` before the tool was listed.
    fn tool_id(&self, tool: &str) -> Arc<str> {
        self.governance.with_tool_hash(tool, |hash| {
            let mut ids = self.tool_ids.borrow_mut();
            if let Some((made_with, id)) = ids.get(tool)
                && made_with.as_deref() == hash
            {
                return id.clone();
            }
            let server = &self.identity.name;
            let mut id = String::with_capacity(server.len() + tool.len() + hash.map_or(1, |h| h.len() + 2));
            id.push_str(server);
            id.push('/');
            id.push_str(tool);
            if let Some(hash) = hash {
                id.push('@');
                id.push_str(hash);
            }
            let id = Arc::<str>::from(id);
            // Tool names come from clients too: past the bound, ids are made per record.
            if ids.len() < MAX_TOOL_LABELS || ids.contains_key(tool) {
                ids.insert(tool.to_owned(), (hash.map(str::to_owned), id.clone()));
            }
            id
        })
    }

    /// A `policy-denied` or `tool-definition-changed` record.
    fn on_governance(
        &mut self,
        ex: &Arc<Exchange>,
        method: Option<String>,
        jsonrpc_id: Option<String>,
        event: govern::Event,
        out: &mut Vec<AuditRecord>,
    ) {
        let (tool, detail, event_type, level) = match event {
            govern::Event::Denied { tool, decision } => {
                self.metrics
                    .policy_denials
                    .with_label_values(&[
                        self.identity.name.as_str(),
                        decision.control.as_str(),
                        decision.policy.as_deref().unwrap_or(""),
                        decision.rule.as_deref().unwrap_or(""),
                        decision.action.as_str(),
                        if decision.enforced { "true" } else { "false" },
                    ])
                    .inc();
                let level = if decision.enforced { Level::Warn } else { Level::Info };
                let detail = GovernanceDetail { decision: Some(decision), ..Default::default() };
                (tool, detail, EventType::PolicyDenied, level)
            }
            govern::Event::ToolChanged { tool, change } => {
                self.metrics.tool_changes.with_label_values(&[&self.identity.name, &change.change]).inc();
                let level = if self.governance.change_is_warning() { Level::Warn } else { Level::Info };
                let detail = GovernanceDetail { tool_change: Some(change), ..Default::default() };
                (Some(tool), detail, EventType::ToolDefinitionChanged, level)
            }
        };
        let mut r = self.record(ex, event_type, level, Direction::Agent, ex.trace, Headers::Request(ex));
        r.method = method.map(Arc::from);
        r.request_id.jsonrpc = jsonrpc_id;
        r.tool_id = tool.as_deref().map(|t| self.tool_id(t));
        r.tool_name = tool.map(Arc::from);
        r.governance = Some(detail);
        out.push(r);
    }

    fn tool_label(&self, tool: &str) -> &'static str {
        // Tool names come from clients too; only names the server listed are labels.
        if self.tool_labels.contains(tool) { leak_label(tool) } else { "other" }
    }

    fn add_pending(&mut self, key: (Scope, String), p: Pending) {
        self.pending.insert(key, p);
        if self.pending.len() > MAX_PENDING {
            self.shed_oldest_pending();
        }
    }

    /// Over `MAX_PENDING` waiting requests: the oldest eighth of them is given up (each
    /// counted as a drop), in one pass, so that a client that never waits for answers
    /// costs one pass per `MAX_PENDING / 8` requests, not one per request.
    fn shed_oldest_pending(&mut self) {
        let mut starts: Vec<Instant> = self.pending.values().map(|p| p.started).collect();
        let (_, &mut cutoff, _) = starts.select_nth_unstable(MAX_PENDING / 8);
        let before = self.pending.len();
        self.pending.retain(|_, p| p.started > cutoff);
        self.metrics.dropped_many("pending_overflow", false, (before - self.pending.len()) as u64);
    }

    fn take_pending(&mut self, ex: &Exchange, id: &str) -> Option<Pending> {
        let key = self.key_for(ex);
        self.pending
            .remove(&(key, id.to_owned()))
            .or_else(|| self.pending.remove(&(Scope::Exchange(ex.id), id.to_owned())))
    }

    /// Forgets requests unanswered for `PENDING_TTL` and idle sessions. While items come,
    /// the clock is read once per `EXPIRY_CHECK_EVERY` of them, and [`Processor::sweep`]
    /// runs at most once per `SWEEP_EVERY` (the pipeline also calls it on a timer when no
    /// item comes): a request is forgotten between `PENDING_TTL` and
    /// `PENDING_TTL + SWEEP_EVERY` after it was sent.
    fn expire_pending(&mut self) {
        self.since_expiry_check += 1;
        if self.since_expiry_check < EXPIRY_CHECK_EVERY {
            return;
        }
        self.since_expiry_check = 0;
        self.sweep(Instant::now());
    }

    /// The sweep of [`Processor::expire_pending`], as of `now`: requests unanswered for
    /// `PENDING_TTL`, the request lists of exchanges with none waiting, and sessions idle
    /// for `session_idle` are forgotten. At most once per `SWEEP_EVERY`.
    pub fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.pending.retain(|_, p| now.duration_since(p.started) < PENDING_TTL);
        // An exchange's list of requests goes at its end. When the end never comes (its
        // item was dropped on a full queue), the list would stay: keep only the lists of
        // exchanges with a request still waiting (a list of answered ones says nothing).
        let waiting: HashSet<u64, foldhash::fast::RandomState> = self.pending.values().map(|p| p.exchange).collect();
        self.exchange_requests.retain(|exchange, _| waiting.contains(exchange));
        let before = self.sessions.len();
        let idle = self.session_idle;
        self.sessions.retain(|_, seen| now.duration_since(*seen) < idle);
        self.metrics.active_sessions.sub((before - self.sessions.len()) as i64);
    }

    /// Whether anything waits for a [`Processor::sweep`]: with nothing, an idle agent
    /// need not wake for one.
    pub fn has_expiring_state(&self) -> bool {
        !self.pending.is_empty() || !self.sessions.is_empty() || !self.exchange_requests.is_empty()
    }

    fn record(
        &self,
        ex: &Exchange,
        event: EventType,
        level: Level,
        direction: Direction,
        trace: TraceContext,
        headers: Headers<'_>,
    ) -> AuditRecord {
        let (raw, cache) = match headers {
            Headers::Request(ex) => (&ex.request_headers, &ex.redacted_request_headers),
            Headers::Response(head) => (&head.headers, &head.redacted_headers),
        };
        let (headers, kinds) = cache.get_or_init(|| self.redacted_headers(raw)).clone();
        let now = Timestamp::now();
        AuditRecord {
            timestamp: if direction == Direction::ClientToServer { ex.started_at } else { now },
            observed_timestamp: now,
            level,
            event_type: event,
            response_code: None,
            response_type: None,
            headers,
            user_id: ex.identity.user.clone(),
            team_id: ex.identity.team.clone(),
            org_id: ex.identity.org.clone(),
            identity_source: ex.identity.source,
            tool_id: None,
            tool_name: None,
            correlation_id: HexId(trace.trace_id),
            span_id: HexId(trace.span_id),
            request_id: RequestId { jsonrpc: None, unique: crate::ids::uuid_v7(now) },
            session_id: ex
                .session_id
                .as_deref()
                .or_else(|| self.stream_sessions.get(&ex.id).map(String::as_str))
                .or(ex.legacy_session.as_deref())
                .map(|s| self.repeated.session.get(s)),
            method: None,
            protocol_version: ex
                .protocol_header()
                .map(|v| self.repeated.protocol.get(v))
                .or_else(|| self.protocol_version.clone()),
            client_ip: ex.client_ip.map(|ip| self.repeated.client_ip(ip)),
            direction,
            transport: self.transport,
            server: self.identity.clone(),
            duration_ns: None,
            body_bytes: 0,
            body: None,
            body_truncated: false,
            redaction: RedactionSummary { kinds, payload_dropped: None },
            error: None,
            governance: None,
        }
    }

    /// A header set redacted, with what was found in it (the redactor remembers the sets
    /// it found nothing in: see [`Redactor::header_set`]).
    fn redacted_headers(&self, raw: &HeaderLines) -> RedactedHeaders {
        let mut kinds = BTreeMap::new();
        (self.redactor.header_set(raw.set_key(), || raw.iter(), &mut kinds), kinds)
    }

    /// Redacts the message into the record's body; an error record also gets its message
    /// from the redacted body. A compact message that redaction left alone is kept as its
    /// own `text`, not written again.
    fn finish_body(&self, r: &mut AuditRecord, mut body: Node<'_>, text: Option<&str>) {
        let outcome = self.redactor.node(&mut body, &mut r.redaction.kinds);
        for (kind, n) in &r.redaction.kinds {
            self.metrics.redactions.with_label_values(&[redaction_label(kind)]).inc_by(u64::from(*n));
        }
        if let Some(reason) = outcome.drop_payload {
            r.redaction.payload_dropped = Some(reason);
            return;
        }
        if let Some(e) = r.error.as_mut() {
            e.message = error_message(&body);
        }
        r.body = Some(match text {
            Some(text) if !outcome.changed => RawJson::from_compact(text),
            _ => {
                // Redaction rarely lengthens a message: its size on the wire is room enough.
                let size = usize::try_from(r.body_bytes).unwrap_or(0).min(1 << 20) + 16;
                RawJson::from_written(body.to_json_sized(size))
            }
        });
    }
}

/// A bounded metric label for a redaction kind: built-in kinds by name, user-named rules
/// (custom patterns, JSON paths) folded into `custom` and `json-path`.
fn redaction_label(kind: &str) -> &'static str {
    if let Some(f) = crate::redact::detectors::FAMILIES.iter().find(|f| f.kind == kind) {
        return f.kind;
    }
    match kind {
        "header" => "header",
        "secret-key" => "secret-key",
        k if k.starts_with("json-path:") => "json-path",
        _ => "custom",
    }
}

/// Interns a tool-name label. Bounded: at most `MAX_TOOL_LABELS` distinct names are ever
/// admitted by `tool_label`, so the leak is bounded too.
fn leak_label(name: &str) -> &'static str {
    use std::sync::{Mutex, OnceLock};
    static LABELS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut labels = LABELS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = labels.get(name) {
        return l;
    }
    if labels.len() >= MAX_TOOL_LABELS * 4 {
        return "other";
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    labels.insert(name.to_owned(), leaked);
    leaked
}

fn error_message(body: &Node) -> Option<String> {
    if let Some(m) = body.get("error").and_then(|e| e.get("message")).and_then(Node::as_str) {
        return Some(m.chars().take(512).collect());
    }
    body.get("result")?
        .get("content")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("text").and_then(Node::as_str))
        .map(|t| t.chars().take(512).collect())
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The session id in a 2024-11-05 endpoint URL (`?session_id=` or `?sessionId=`).
pub fn query_session(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "session_id" || k == "sessionId").then(|| v.to_owned())
    })
}

/// An address as `Display` writes it; an IPv4 one (the usual) without `fmt`, which
/// costs more than the rest of the record's client fields.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POST exchange without headers, session or identity.
    fn exchange(id: u64, trace: TraceContext) -> Exchange {
        Exchange {
            id,
            started: Instant::now(),
            started_at: Timestamp::now(),
            http_method: http::Method::POST,
            session_id: None,
            legacy_session: None,
            client_ip: None,
            trace,
            request_headers: HeaderLines::default(),
            redacted_request_headers: OnceLock::new(),
            identity: Identity::default(),
        }
    }

    /// A 200 response head with a JSON body and no headers.
    fn json_head() -> Arc<ResponseHead> {
        Arc::new(ResponseHead {
            status: 200,
            content: ContentKind::Json,
            headers: HeaderLines::default(),
            session_id: None,
            redacted_headers: OnceLock::new(),
        })
    }

    fn processor(policy: &mcp_ledger_crds::McpRedactionPolicySpec) -> Processor {
        let governance = Arc::new(govern::Governance::new(Default::default()));
        let server = ServerFacts { name: "t".into(), namespace: None, pod: None, transport: Transport::StreamableHttp };
        Processor::new(server, Arc::new(Redactor::new(policy)), Metrics::new(), governance)
    }

    #[test]
    fn remembered_header_sets_are_redacted_as_the_redactor_redacts_them() {
        let one = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let two = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let sets: [&[(&'static str, &str)]; 7] = [
            &[("content-type", "application/json"), ("traceparent", one), ("x-n", "1")],
            // The same set but for its traceparent: remembered as one.
            &[("content-type", "application/json"), ("traceparent", two), ("x-n", "1")],
            &[("content-type", "application/json")],
            &[("authorization", "Bearer not-a-real-token"), ("x-n", "1")],
            &[("x-note", "a"), ("x-note", "b")],
            &[("traceparent", "not a trace context")],
            &[("x-mail", "ana@example.com")],
        ];
        let captured = |set: &[(&'static str, &str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in set {
                map.append(http::HeaderName::from_static(name), value.parse().unwrap());
            }
            HeaderLines::capture(&map)
        };
        let check = |processor: &Processor| {
            for set in sets {
                let lines = captured(set);
                let mut kinds = BTreeMap::new();
                let direct = processor.redactor.headers(lines.iter(), &mut kinds);
                let (headers, found) = processor.redacted_headers(&lines);
                // Compared as maps, and line by line in order (a set from the cache holds a
                // traceparent beside it).
                let direct = mcp_ledger_crds::record::Headers::from(Arc::new(direct));
                assert_eq!((&headers, &found), (&direct, &kinds), "{set:?}");
                assert!(headers.iter().eq(direct.iter()), "{set:?}");
            }
        };
        let mut processor = processor(&Default::default());
        for _ in 0..3 {
            check(&processor);
        }
        // Remembered: the clean sets of distinct names, the first two as one.
        assert_eq!(crate::redact::remembered_header_sets(), 3);
        // Another policy: nothing remembered under the last one is used.
        let mut policy = mcp_ledger_crds::McpRedactionPolicySpec::default();
        policy.headers.deny = vec!["x-n".into(), "content-type".into()];
        processor.set_redactor(Arc::new(Redactor::new(&policy)));
        for _ in 0..3 {
            check(&processor);
        }
        let (headers, _) = processor.redacted_headers(&captured(sets[0]));
        assert_eq!(headers.get("content-type"), Some("[REDACTED:header]"));
        assert_eq!(headers.get("traceparent"), Some(one));
        // Bytes a `HeaderValue` refuses, were they ever captured, cannot make one set's key
        // spell another's: this value, between NULs, would spell the two lines before it.
        let kept = crate::redact::remembered_header_sets();
        let two = HeaderLines::from_lines(2, [("x-a", &b"1"[..]), ("x-b", &b"2"[..])].into_iter());
        let one = HeaderLines::from_lines(1, [("x-a", &b"1\x00x-b\x002"[..])].into_iter());
        for _ in 0..3 {
            let (headers, _) = processor.redacted_headers(&two);
            assert_eq!((headers.len(), headers.get("x-b")), (2, Some("2")));
            let (headers, _) = processor.redacted_headers(&one);
            assert_eq!((headers.len(), headers.get("x-a")), (1, Some("1\u{0}x-b\u{0}2")));
        }
        assert_eq!(crate::redact::remembered_header_sets(), kept + 2);
    }

    #[test]
    fn a_compact_message_redaction_left_alone_is_its_own_record_body_and_any_other_is_written_compact() {
        let mut processor = processor(&Default::default());
        let compact = r#"{"jsonrpc":"2.0","id":1,"method":"a\u0041","params":{"n":1.50}}"#;
        let cases = [
            // Kept as sent: the escape and the number's form are the client's.
            (compact, compact.to_owned()),
            // Whitespace outside strings: written again, compact (a JSON line holds no newline).
            (
                "{ \"jsonrpc\": \"2.0\",\n \"id\": 2, \"method\": \"b c\" }",
                r#"{"jsonrpc":"2.0","id":2,"method":"b c"}"#.into(),
            ),
            // Redacted: written from the redacted tree.
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"c","params":{"text":"mail ana@example.com"}}"#,
                r#"{"jsonrpc":"2.0","id":3,"method":"c","params":{"text":"mail [REDACTED:email]"}}"#.into(),
            ),
            // A batch's messages are written one by one.
            (r#"[{"jsonrpc":"2.0","method":"d\u0041"}]"#, r#"{"jsonrpc":"2.0","method":"dA"}"#.into()),
        ];
        for (n, (sent, recorded)) in cases.into_iter().enumerate() {
            let ex = exchange(n as u64 + 1, TraceContext::random());
            let body = Bytes::from(sent);
            let item = Captured::Request { ex: Arc::new(ex), wire_bytes: body.len() as u64, body, truncated: false };
            let mut out = Vec::new();
            processor.process(item, &mut out);
            assert_eq!(out.len(), 1, "{sent}");
            assert_eq!(out[0].body.as_ref().map(RawJson::get), Some(recorded.as_str()), "{sent}");
        }
    }

    #[test]
    fn a_whole_json_answer_is_recorded_as_its_message_and_end_would_be() {
        let trace = TraceContext::random();
        let request = Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#);
        let answers = [
            &br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#[..],
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#,
            br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no such tool"}}"#,
            br#"{"jsonrpc":"2.0","id":8,"result":{}}"#,
            b"not json",
        ];
        // What a record says, its times and unique ids aside.
        let facts = |r: &AuditRecord| {
            let mut v = serde_json::to_value(r).unwrap();
            for k in ["timestamp", "observedTimestamp", "durationNs"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v["requestId"].as_object_mut().unwrap().remove("unique");
            v
        };
        for answer in answers {
            let mut seen = Vec::new();
            for whole in [false, true] {
                let mut processor = processor(&Default::default());
                let ex = Arc::new(exchange(1, trace));
                let head = json_head();
                let mut out = Vec::new();
                let wire_bytes = request.len() as u64;
                processor.process(
                    Captured::Request { ex: ex.clone(), body: request.clone(), truncated: false, wire_bytes },
                    &mut out,
                );
                let (body, wire_bytes) = (Bytes::from_static(answer), answer.len() as u64);
                if whole {
                    processor.process(Captured::Whole { ex, head, body, truncated: false, wire_bytes }, &mut out);
                } else {
                    let response = Captured::Response {
                        ex: ex.clone(),
                        head: head.clone(),
                        body,
                        truncated: false,
                        wire_bytes,
                        sse_event: None,
                        sse_id: None,
                    };
                    processor.process(response, &mut out);
                    processor.process(Captured::End { ex, head, outcome: EndOutcome::Complete }, &mut out);
                }
                seen.push(out.iter().map(facts).collect::<Vec<_>>());
            }
            assert!(seen[0].len() >= 2, "{seen:?}");
            assert_eq!(seen[0], seen[1], "{}", String::from_utf8_lossy(answer));
        }
    }

    fn waiting(started: Instant) -> Pending {
        Pending { method: "tools/call".into(), tool: None, started, trace: TraceContext::random(), exchange: 1 }
    }

    #[test]
    fn past_the_limit_the_oldest_eighth_of_the_waiting_requests_is_given_up_and_counted() {
        let mut processor = processor(&Default::default());
        let t0 = Instant::now();
        for i in 0..=MAX_PENDING as u64 {
            let key = (Scope::Exchange(i), "1".to_owned());
            processor.add_pending(key, waiting(t0 + Duration::from_micros(i)));
        }
        let shed = MAX_PENDING / 8 + 1;
        assert_eq!(processor.pending.len(), MAX_PENDING + 1 - shed);
        let held = |i: u64| processor.pending.contains_key(&(Scope::Exchange(i), "1".to_owned()));
        assert!(!held(0) && !held(shed as u64 - 1) && held(shed as u64) && held(MAX_PENDING as u64));
        let dropped = processor.metrics.records_dropped.with_label_values(&["pending_overflow", "false"]).get();
        assert_eq!(dropped, shed as u64);
    }

    #[test]
    fn requests_unanswered_past_their_time_are_forgotten_and_answered_ones_leave_nothing() {
        let mut processor = processor(&Default::default());
        let t0 = Instant::now();
        processor.add_pending((Scope::Exchange(1), "old".to_owned()), waiting(t0));
        processor.add_pending((Scope::Exchange(2), "new".to_owned()), waiting(t0 + SWEEP_EVERY * 2));
        let second = Duration::from_secs(1);
        // Neither has waited long enough.
        processor.sweep(t0 + PENDING_TTL - second);
        assert_eq!(processor.pending.len(), 2);
        // The first has, but the last sweep was less than a sweep period ago.
        processor.sweep(t0 + PENDING_TTL + second);
        assert_eq!(processor.pending.len(), 2);
        processor.sweep(t0 + PENDING_TTL - second + SWEEP_EVERY);
        assert_eq!(processor.pending.keys().map(|(_, id)| id.as_str()).collect::<Vec<_>>(), ["new"]);
        // Answered requests are taken out as their answers come.
        let mut processor = self::processor(&Default::default());
        let head = json_head();
        let mut out = Vec::new();
        for id in 1..=200 {
            let ex = Arc::new(exchange(id, TraceContext::random()));
            let request = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#);
            let answer = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#);
            let (request, answer) = (Bytes::from(request), Bytes::from(answer));
            let wire_bytes = request.len() as u64;
            processor
                .process(Captured::Request { ex: ex.clone(), body: request, truncated: false, wire_bytes }, &mut out);
            assert_eq!(processor.pending.len(), 1);
            let wire_bytes = answer.len() as u64;
            let whole = Captured::Whole { ex, head: head.clone(), body: answer, truncated: false, wire_bytes };
            processor.process(whole, &mut out);
            assert!(processor.pending.is_empty());
        }
        assert_eq!(out.len(), 400);
    }

    #[test]
    fn event_ids_of_a_stream_the_client_got_whole_are_forgotten_and_a_cut_streams_replay_is_recorded_once() {
        let mut processor = processor(&Default::default());
        let head = Arc::new(ResponseHead {
            status: 200,
            content: ContentKind::Sse,
            headers: HeaderLines::default(),
            session_id: Some("session-1".into()),
            redacted_headers: OnceLock::new(),
        });
        let event = |ex: &Arc<Exchange>, id: &str, n: u32| {
            let body = format!(r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"n":{n}}}}}"#);
            let wire_bytes = body.len() as u64;
            Captured::Response {
                ex: ex.clone(),
                head: head.clone(),
                body: Bytes::from(body),
                truncated: false,
                wire_bytes,
                sse_event: None,
                sse_id: Some(id.to_owned()),
            }
        };
        let mut out = Vec::new();
        // Stream 1 gets to its end: nothing of it can come again.
        let one = Arc::new(exchange(1, TraceContext::random()));
        for n in 0..3 {
            processor.process(event(&one, &format!("1-{n}"), n), &mut out);
        }
        assert_eq!(processor.seen_events.len(), 3);
        processor.process(Captured::End { ex: one, head: head.clone(), outcome: EndOutcome::Complete }, &mut out);
        assert_eq!(processor.seen_events.len(), 0, "a complete stream leaves no event ids behind");
        // Stream 2 is cut after two events; its replay repeats the second and goes on.
        let two = Arc::new(exchange(2, TraceContext::random()));
        for n in 0..2 {
            processor.process(event(&two, &format!("2-{n}"), n), &mut out);
        }
        processor.process(Captured::End { ex: two, head: head.clone(), outcome: EndOutcome::Cut("x") }, &mut out);
        assert_eq!(processor.seen_events.len(), 2, "a cut stream's ids are kept for its replay");
        let resumed = Arc::new(exchange(3, TraceContext::random()));
        for n in 1..4 {
            processor.process(event(&resumed, &format!("2-{n}"), n), &mut out);
        }
        processor.process(Captured::End { ex: resumed, head, outcome: EndOutcome::Complete }, &mut out);
        let notes: Vec<u64> = out
            .iter()
            .filter(|r| r.event_type == EventType::McpNotification)
            .filter_map(|r| r.body.as_ref()?.to_value().pointer("/params/n")?.as_u64())
            .collect();
        assert_eq!(notes, [0, 1, 2, 0, 1, 2, 3], "every event recorded once, the replayed one not again");
        let replays = processor.metrics.records_dropped.with_label_values(&["replayed_event", "true"]).get();
        assert_eq!(replays, 1);
        assert_eq!(processor.seen_events.len(), 2, "the events new on the resumed stream are forgotten at its end");
    }

    #[test]
    fn a_session_counts_as_open_until_its_delete_its_404_or_an_idle_spell_and_comes_back_with_its_traffic() {
        let mut processor = processor(&Default::default());
        processor.set_session_idle(Duration::from_secs(120));
        let open = |p: &Processor| p.metrics.active_sessions.get();
        let head = |status: u16, session: Option<&str>| {
            Arc::new(ResponseHead {
                status,
                content: ContentKind::Json,
                headers: HeaderLines::default(),
                session_id: session.map(str::to_owned),
                redacted_headers: OnceLock::new(),
            })
        };
        let in_session = |id: u64, method: http::Method| {
            let mut ex = exchange(id, TraceContext::random());
            ex.session_id = Some("s-1".into());
            ex.http_method = method;
            Arc::new(ex)
        };
        let mut out = Vec::new();
        // initialize: the server names the session in its answer.
        let ex = Arc::new(exchange(1, TraceContext::random()));
        let init = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#);
        let wire_bytes = init.len() as u64;
        processor.process(Captured::Request { ex: ex.clone(), body: init, truncated: false, wire_bytes }, &mut out);
        let answer = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}"#);
        let whole = |ex: Arc<Exchange>, head: Arc<ResponseHead>, body: &Bytes| Captured::Whole {
            ex,
            head,
            body: body.clone(),
            truncated: false,
            wire_bytes: body.len() as u64,
        };
        processor.process(whole(ex, head(200, Some("s-1")), &answer), &mut out);
        assert_eq!(open(&processor), 1);
        let starts = |out: &[AuditRecord]| out.iter().filter(|r| r.event_type == EventType::McpSessionStart).count();
        assert_eq!(starts(&out), 1);
        // Traffic keeps it open; an idle spell longer than the setting forgets it.
        let ping = Bytes::from_static(br#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
        processor.process(whole(in_session(2, http::Method::POST), head(200, None), &ping), &mut out);
        assert!(processor.has_expiring_state());
        let seen = processor.sessions["s-1"];
        processor.sweep(seen + Duration::from_secs(119));
        assert_eq!(open(&processor), 1, "not idle long enough");
        processor.sweep(seen + Duration::from_secs(119) + SWEEP_EVERY);
        assert_eq!(open(&processor), 0, "idle past the setting");
        assert!(processor.sessions.is_empty() && !processor.has_expiring_state());
        // Its next accepted answer counts it again, without a second session start.
        processor.process(whole(in_session(3, http::Method::POST), head(200, None), &ping), &mut out);
        assert_eq!(open(&processor), 1);
        assert_eq!(starts(&out), 1);
        // An answer the server refused does not; a 404 says the server forgot it.
        let mut stranger = exchange(4, TraceContext::random());
        stranger.session_id = Some("made-up".into());
        processor.process(whole(Arc::new(stranger), head(400, None), &ping), &mut out);
        assert_eq!(open(&processor), 1);
        processor.process(whole(in_session(5, http::Method::POST), head(404, None), &ping), &mut out);
        assert_eq!(open(&processor), 0);
        // Back, then DELETE: closed once, with a session end record.
        processor.process(whole(in_session(6, http::Method::POST), head(200, None), &ping), &mut out);
        assert_eq!(open(&processor), 1);
        let ended = |id: u64, method: http::Method| Captured::End {
            ex: in_session(id, method),
            head: head(200, None),
            outcome: EndOutcome::Complete,
        };
        processor.process(ended(7, http::Method::DELETE), &mut out);
        assert_eq!(open(&processor), 0);
        // The server then closes the session's GET stream: that does not open it again.
        processor.process(ended(8, http::Method::GET), &mut out);
        assert_eq!(open(&processor), 0);
        assert!(processor.sessions.is_empty());
        assert_eq!(out.iter().filter(|r| r.event_type == EventType::McpSessionEnd).count(), 1);
    }

    #[test]
    fn the_requests_of_an_exchange_whose_end_was_lost_are_forgotten_once_none_waits() {
        let mut processor = processor(&Default::default());
        let head = json_head();
        let mut out = Vec::new();
        let request = |id: u64| {
            let body = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
            let wire_bytes = body.len() as u64;
            (Arc::new(exchange(id, TraceContext::random())), body, wire_bytes)
        };
        // Exchange 1 is answered but its end never comes (dropped on a full queue); exchange
        // 2 still waits for its answer.
        let (one, body, wire_bytes) = request(1);
        processor.process(Captured::Request { ex: one.clone(), body, truncated: false, wire_bytes }, &mut out);
        let answer = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        let wire_bytes = answer.len() as u64;
        let response = Captured::Response {
            ex: one,
            head: head.clone(),
            body: answer,
            truncated: false,
            wire_bytes,
            sse_event: None,
            sse_id: None,
        };
        processor.process(response, &mut out);
        let (two, body, wire_bytes) = request(2);
        processor.process(Captured::Request { ex: two.clone(), body, truncated: false, wire_bytes }, &mut out);
        assert_eq!(processor.exchange_requests.len(), 2);
        processor.sweep(Instant::now() + SWEEP_EVERY);
        assert_eq!(processor.exchange_requests.keys().copied().collect::<Vec<_>>(), [2], "only the waiting one");
        // Exchange 2 ends unanswered, as if nothing had been swept.
        processor.process(Captured::End { ex: two, head, outcome: EndOutcome::Cut("upstream_error") }, &mut out);
        let unanswered: Vec<_> = out.iter().filter(|r| r.event_type == EventType::McpResponseError).collect();
        assert_eq!(unanswered.len(), 1);
        assert_eq!(unanswered[0].request_id.jsonrpc.as_deref(), Some("2"));
        assert!(processor.exchange_requests.is_empty() && processor.pending.is_empty());
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.30.40", "192.168.100.9", "255.255.255.255", "::1", "2001:db8::7"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for n in (0..=u32::MAX).step_by(65_521) {
            let ip = std::net::IpAddr::V4(n.into());
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn captured_headers_keep_every_value_in_the_maps_order() {
        let mut map = http::HeaderMap::new();
        map.insert("content-type", "application/json".parse().unwrap());
        map.append("x-note", "first".parse().unwrap());
        map.append("x-note", "".parse().unwrap());
        map.append("x-note", "third".parse().unwrap());
        // A value need not be UTF-8 (obs-text): its bytes are kept as they came.
        map.append("x-note", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        map.insert("mcp-session-id", "abc".parse().unwrap());
        let lines = HeaderLines::capture(&map);
        let expected: Vec<(&str, &[u8])> = map.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
        assert_eq!(lines.iter().collect::<Vec<_>>(), expected);
        assert_eq!(expected.len(), 6);
        // A named value as `HeaderValue::to_str` reads it: the first one, if visible ASCII.
        for name in ["content-type", "x-note", "mcp-session-id", "absent"] {
            let theirs = map.get(name).and_then(|v| v.to_str().ok());
            assert_eq!(lines.text(name), theirs, "{name}");
        }
        let mut map = http::HeaderMap::new();
        map.append("x-note", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        map.append("x-tab", http::HeaderValue::from_bytes(b"a\tb").unwrap());
        let lines = HeaderLines::capture(&map);
        assert_eq!(lines.text("x-note"), None, "obs-text is not read as text");
        assert_eq!(lines.text("x-tab"), Some("a\tb"));
        assert_eq!(HeaderLines::capture(&http::HeaderMap::new()).iter().count(), 0);
        // Longer than the room made up front: the buffer grows, nothing is lost.
        let mut map = http::HeaderMap::new();
        let long = "x".repeat(5 * LINE_ROOM);
        map.insert("x-short", "1".parse().unwrap());
        map.insert("x-long", long.parse().unwrap());
        let lines = HeaderLines::capture(&map);
        assert_eq!(lines.iter().collect::<Vec<_>>(), [("x-short", &b"1"[..]), ("x-long", long.as_bytes())]);
        // Fewer lines than counted: the set is the lines there were.
        let short = HeaderLines::from_lines(3, [("x-a", &b"1"[..]), ("x-b", &b"2"[..])].into_iter());
        assert_eq!(short.iter().collect::<Vec<_>>(), [("x-a", &b"1"[..]), ("x-b", &b"2"[..])]);
        assert_eq!((short.text("x-b"), short.set_key().lines), (Some("2"), 2));
    }

    #[test]
    fn content_types_are_read_by_their_essence_in_any_case() {
        for (ct, kind) in [
            (Some("application/json"), ContentKind::Json),
            (Some("Application/JSON; charset=utf-8"), ContentKind::Json),
            (Some("application/vnd.api+json"), ContentKind::Json),
            (Some("application/problem+JSON ;q=1"), ContentKind::Json),
            (Some("text/event-stream"), ContentKind::Sse),
            (Some(" TEXT/Event-Stream;charset=utf-8"), ContentKind::Sse),
            (Some(""), ContentKind::Empty),
            (None, ContentKind::Empty),
            (Some("+json"), ContentKind::Json),
            (Some("text/plain"), ContentKind::Other),
            (Some("application/jsonx"), ContentKind::Other),
            (Some("ü+json"), ContentKind::Json),
            (Some("üjson"), ContentKind::Other),
        ] {
            assert_eq!(ContentKind::from_content_type(ct), kind, "{ct:?}");
            // The shared text is the kind's own, and one copy.
            assert_eq!(&*kind.shared(), kind.as_str());
            assert!(std::sync::Arc::ptr_eq(&kind.shared(), &kind.shared()));
        }
    }
}
