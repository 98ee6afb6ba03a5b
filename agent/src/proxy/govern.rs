//! Enforcement in the proxy: reads requests before they are forwarded (to refuse what a
//! policy denies, answering with a JSON-RPC error), and watches the answers to
//! `tools/list` and `initialize` (to fingerprint tools, learn the server version and,
//! when a policy filters lists, remove what the caller may not see).
//!
//! Answers are inspected as they pass. They are held back only when a list must be
//! filtered, and then only until the JSON body or the SSE event is complete.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::{Value, json};

use crate::capture::{Captured, Exchange};
use crate::govern::{self, Governance};
use crate::json::Node;
use crate::mcp::jsonrpc::{self, Kind};
use crate::mcp::sse;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// JSON-RPC error code of a call the agent refuses (implementation-defined server error range).
pub const REFUSED_CODE: i64 = -32001;
/// Largest answer inspected (a held list answer larger than this is refused, fail closed).
pub const MAX_INSPECTED: usize = 16 * 1024 * 1024;

/// An answer to watch for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Watch {
    /// A `tools/list` answer; `first_page` when the request had no cursor.
    List { first_page: bool },
    /// An `initialize` answer.
    Init,
}

/// What the proxy does with one request.
#[derive(Debug, Default)]
pub struct Plan {
    /// Answers to watch for, by JSON-RPC id.
    watched: Vec<(String, Watch)>,
    /// Records to write: method, JSON-RPC id, event.
    pub events: Vec<(Option<String>, Option<String>, govern::Event)>,
    /// The JSON-RPC answer to send instead of forwarding, when a request is refused.
    pub refusal: Option<Bytes>,
}

impl Plan {
    /// True when the answer needs inspecting.
    pub fn watches(&self) -> bool {
        !self.watched.is_empty()
    }

    /// True when a list answer is watched.
    pub fn watches_lists(&self) -> bool {
        self.watched.iter().any(|(_, w)| matches!(w, Watch::List { .. }))
    }
}

/// Reads a (whole) request body and decides. Bodies that are not JSON-RPC are left to the
/// server (and recorded as parse errors by the pipeline).
pub fn plan(gov: &Governance, body: &[u8], caller: &govern::Caller<'_>) -> Plan {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Built once: building a searcher costs more than searching a small body.
    static TOOLS_LIST: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"tools/list"));
    static INITIALIZE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"initialize"));
    let checks = gov.checks_requests();
    if !checks && TOOLS_LIST.find(body).is_none() && INITIALIZE.find(body).is_none() {
        return Plan::default();
    }
    let Ok(messages) = jsonrpc::parse(body) else { return Plan::default() };
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let mut plan = Plan::default();
    let mut refused: Vec<(Value, Option<String>)> = Vec::new();
    for m in messages.iter().filter(|m| m.kind == Kind::Request) {
        let (Some(method), Some(id)) = (m.method(), m.id_text()) else { continue };
        match method {
            "tools/list" => plan.watched.push((
                id.clone(),
                Watch::List { first_page: m.params().and_then(|p| p.get("cursor")).is_none_or(Node::is_null) },
            )),
            "initialize" => plan.watched.push((id.clone(), Watch::Init)),
            _ => {}
        }
        let mut reason = None;
        if checks {
            let check = gov.check_request(caller, method, m.tool_name());
            for e in check.events {
                plan.events.push((Some(method.to_owned()), Some(id.clone()), e));
            }
            reason = check.refuse;
        }
        refused.push((m.value.get("id").map_or(Value::Null, Node::to_value), reason));
    }
    if refused.iter().any(|(_, r)| r.is_some()) {
        let answers: Vec<Value> = refused
            .into_iter()
            .map(|(id, reason)| {
                let message = match reason {
                    Some(r) => format!("refused by mcp-ledger: {r}"),
                    None => "not forwarded by mcp-ledger: another request of this batch was refused".to_owned(),
                };
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": REFUSED_CODE, "message": message}})
            })
            .collect();
        let body = if batch { Value::Array(answers) } else { answers.into_iter().next().unwrap_or(Value::Null) };
        plan.refusal = Some(Bytes::from(body.to_string()));
        plan.watched.clear();
    }
    plan
}

/// An upstream answer under inspection.
pub struct GovernedBody<B> {
    inner: B,
    inspector: Inspector,
    out: VecDeque<Bytes>,
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

struct Inspector {
    gov: Arc<Governance>,
    ex: Arc<Exchange>,
    pipeline: Pipeline,
    metrics: Metrics,
    watched: Vec<(String, Watch)>,
    session: String,
    hold: bool,
    sse: bool,
    buf: BytesMut,
    /// Where the scan for the end of the current SSE event resumes (a line start).
    resume: usize,
    overflow: bool,
}

impl<B> GovernedBody<B> {
    /// Inspects `inner`, the answer to a request planned by [`plan`]. With `hold`, list
    /// answers are held until complete and filtered.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inner: B,
        plan: Plan,
        gov: Arc<Governance>,
        ex: Arc<Exchange>,
        pipeline: Pipeline,
        metrics: Metrics,
        sse: bool,
        hold: bool,
    ) -> Self {
        let session = ex.scope().to_string();
        Self {
            inner,
            inspector: Inspector {
                gov,
                ex,
                pipeline,
                metrics,
                watched: plan.watched,
                session,
                hold,
                sse,
                buf: BytesMut::new(),
                resume: 0,
                overflow: false,
            },
            out: VecDeque::new(),
            trailers: None,
            done: false,
        }
    }
}

impl Inspector {
    fn on_data(&mut self, data: Bytes, out: &mut VecDeque<Bytes>) {
        if !self.hold {
            out.push_back(data.clone());
        }
        if self.overflow {
            return;
        }
        if self.buf.len() + data.len() > MAX_INSPECTED {
            self.give_up(out);
            return;
        }
        self.buf.extend_from_slice(&data);
        if self.sse {
            while let Some(end) = self.event_end() {
                let block = self.buf.split_to(end).freeze();
                self.resume = 0;
                let rewritten = self.on_event(&block);
                if self.hold {
                    out.push_back(rewritten.unwrap_or(block));
                }
            }
        }
    }

    fn finish(&mut self, out: &mut VecDeque<Bytes>) {
        if self.overflow {
            return;
        }
        let rest = self.buf.split().freeze();
        if rest.is_empty() {
            return;
        }
        let rewritten = if self.sse { None } else { self.on_json(&rest) };
        if self.hold {
            out.push_back(rewritten.unwrap_or(rest));
        }
    }

    /// The answer is too large to inspect: without holding, it passes uninspected (and
    /// counted); held, it cannot be filtered, so the client gets an error instead.
    fn give_up(&mut self, out: &mut VecDeque<Bytes>) {
        self.overflow = true;
        self.buf = BytesMut::new();
        self.metrics.dropped("governed_answer_too_large", false);
        if self.hold {
            let errors: Vec<Value> = self
                .watched
                .iter()
                .map(|(id, _)| {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": REFUSED_CODE,
                        "message": format!("refused by mcp-ledger: the answer is larger than {MAX_INSPECTED} bytes and cannot be filtered as policy requires")}})
                })
                .collect();
            let body = if errors.len() == 1 { errors[0].to_string() } else { Value::Array(errors).to_string() };
            out.push_back(Bytes::from(if self.sse { format!("data: {body}\n\n") } else { body }));
        }
    }

    /// The end (exclusive) of the first complete SSE event in the buffer.
    fn event_end(&mut self) -> Option<usize> {
        let buf = &self.buf[..];
        let mut line_start = self.resume;
        let mut i = self.resume;
        while i < buf.len() {
            match buf[i] {
                b'\n' | b'\r' => {
                    let mut end = i + 1;
                    if buf[i] == b'\r' {
                        if i + 1 == buf.len() {
                            break; // a CR at the end may be the first half of CRLF
                        }
                        if buf[i + 1] == b'\n' {
                            end = i + 2;
                        }
                    }
                    if i == line_start {
                        return Some(end);
                    }
                    line_start = end;
                    i = end;
                }
                _ => i += 1,
            }
        }
        self.resume = line_start;
        None
    }

    /// One complete SSE event; the rewritten event when its data changed.
    fn on_event(&mut self, block: &Bytes) -> Option<Bytes> {
        let mut parser = sse::Parser::new(MAX_INSPECTED);
        let mut events = Vec::new();
        parser.push(block, &mut events);
        let event = events.pop()?;
        let data = self.on_json(&Bytes::from(event.data))?;
        // Keep every field but `data` (id, event, retry, comments), then the new data.
        let mut rebuilt = Vec::with_capacity(data.len() + 64);
        for line in block.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)) {
            if line.is_empty() || line == b"data" || line.starts_with(b"data:") {
                continue;
            }
            rebuilt.extend_from_slice(line);
            rebuilt.push(b'\n');
        }
        rebuilt.extend_from_slice(b"data: ");
        rebuilt.extend_from_slice(&data);
        rebuilt.extend_from_slice(b"\n\n");
        Some(Bytes::from(rebuilt))
    }

    /// One JSON body (a message or a batch); the rewritten body when something was removed.
    fn on_json(&mut self, body: &[u8]) -> Option<Bytes> {
        let mut value: Value = serde_json::from_slice(body).ok()?;
        let changed = match &mut value {
            Value::Array(items) => {
                // Every answer of the batch is looked at (no short circuit).
                let mut changed = false;
                for m in items.iter_mut() {
                    changed |= self.on_message(m);
                }
                changed
            }
            m => self.on_message(m),
        };
        changed.then(|| Bytes::from(value.to_string()))
    }

    /// One answer; true when it was changed.
    fn on_message(&mut self, m: &mut Value) -> bool {
        let Some(id) = m.get("id").and_then(|id| jsonrpc::id_text(&Node::from(id.clone()))) else { return false };
        let Some(pos) = self.watched.iter().position(|(w, _)| *w == id) else { return false };
        let (_, watch) = self.watched.swap_remove(pos);
        let Some(result) = m.get_mut("result") else { return false };
        match watch {
            Watch::Init => {
                if let Some(version) = result.pointer("/serverInfo/version").and_then(Value::as_str)
                    && let Some(event) = self.gov.on_server_info(version)
                {
                    self.submit("initialize", &id, event);
                }
                false
            }
            Watch::List { first_page } => {
                let check = self.gov.on_tools_list(&self.session, first_page, result, &self.ex.identity.caller());
                for event in check.events {
                    self.submit("tools/list", &id, event);
                }
                if !self.hold || check.hide.is_empty() {
                    return false;
                }
                if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
                    tools.retain(|t| t.get("name").and_then(Value::as_str).is_none_or(|n| !check.hide.contains(n)));
                }
                true
            }
        }
    }

    fn submit(&self, method: &str, id: &str, event: govern::Event) {
        self.pipeline.submit(Captured::Governance {
            ex: self.ex.clone(),
            method: Some(method.to_owned()),
            jsonrpc_id: Some(id.to_owned()),
            event,
        });
    }
}

impl<B> Body for GovernedBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(data) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if this.done {
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.inspector.on_data(data, &mut this.out);
                        if this.inner.is_end_stream() {
                            this.inspector.finish(&mut this.out);
                            this.done = true;
                        }
                    }
                    Err(trailers) => {
                        this.inspector.finish(&mut this.out);
                        this.trailers = Some(trailers);
                        this.done = true;
                    }
                },
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.inspector.finish(&mut this.out);
                    this.done = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.out.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.inspector.hold { SizeHint::default() } else { self.inner.size_hint() }
    }
}
