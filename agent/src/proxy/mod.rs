//! The reverse proxy in front of one MCP server (HTTP/1.1 and h2c). It forwards every
//! request and response as it comes, keeps `Host` as the client sent it, adds a
//! `traceparent` upstream when the client sent none, and hands copies to the pipeline.
//! When the upstream cannot be reached the client gets a 502 with a JSON-RPC error body.

pub mod govern;
pub mod identity;
pub mod jwt;
pub mod tap;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::capture::{Captured, ContentKind, Exchange, HeaderLines, ResponseHead, query_session};
use crate::mcp::trace::TraceContext;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use tap::{PrefixedBody, TapBody};

/// The body type the proxy answers with.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy must not forward. Header names, not
/// strings: removing by a string parses it into a name first, on every request.
const HOP_BY_HOP: [http::HeaderName; 9] = [
    header::CONNECTION,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const MCP_SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// Proxy settings and shared state.
pub struct Proxy {
    upstream: upstream::Upstream,
    pipeline: Pipeline,
    metrics: Metrics,
    max_body: usize,
    next_id: AtomicU64,
    resolver: identity::Resolver,
    governance: Arc<crate::govern::Governance>,
}

impl Proxy {
    /// A proxy to `upstream` (scheme and authority are used; the request path is kept).
    pub fn new(
        upstream: Uri,
        connect_timeout: Duration,
        pipeline: Pipeline,
        metrics: Metrics,
        max_body: usize,
        resolver: identity::Resolver,
        governance: Arc<crate::govern::Governance>,
    ) -> Self {
        let upstream = upstream::Upstream::new(&upstream, connect_timeout);
        Self { upstream, pipeline, metrics, max_body, next_id: AtomicU64::new(1), resolver, governance }
    }

    /// Handles one request, on `own` (the client connection's upstream connection) when
    /// the client speaks HTTP/1.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        own: &upstream::Own,
    ) -> Response<ProxyBody> {
        let own = (req.version() < http::Version::HTTP_2).then_some(own);
        let started = Instant::now();
        let started_at = jiff::Timestamp::now();
        let (mut parts, mut body) = req.into_parts();

        // Read the request body up to the capture limit (MCP requests are small JSON
        // documents the server cannot act on before they are whole); the rest streams.
        let mut prefix = BytesMut::new();
        let mut finished = body.is_end_stream();
        while !finished && prefix.len() <= self.max_body {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        prefix.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "client request body failed");
                    self.metrics.dropped("client_body_error", false);
                    return plain(StatusCode::BAD_REQUEST, "request body could not be read");
                }
                None => finished = true,
            }
        }
        let prefix = prefix.freeze();
        let truncated = !finished;
        let wire_bytes = if truncated {
            parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(prefix.len() as u64)
        } else {
            prefix.len() as u64
        };

        let header_trace = parts.headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
        let trace = header_trace.or_else(|| meta_trace(&prefix)).unwrap_or_else(TraceContext::random);
        if header_trace.is_none() {
            let value = HeaderValue::from_bytes(&trace.child().header_bytes()).expect("traceparent is ASCII");
            parts.headers.insert(TRACEPARENT, value);
        }

        let text = |name| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let ex = Arc::new(Exchange {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            started,
            started_at,
            http_method: parts.method.clone(),
            session_id: text(MCP_SESSION_ID),
            legacy_session: parts.uri.query().and_then(|q| query_session(&format!("?{q}"))),
            client_ip: Some(self.resolver.client_ip(peer.ip(), &parts.headers)),
            trace,
            request_headers: HeaderLines::capture(&parts.headers),
            redacted_request_headers: Default::default(),
            identity: self.resolver.identity(peer.ip(), &parts.headers),
        });
        self.pipeline.submit(Captured::Request {
            ex: ex.clone(),
            body: prefix.slice(..prefix.len().min(self.max_body)),
            truncated,
            wire_bytes,
        });

        // Governance: decide before forwarding (only whole POST bodies are JSON-RPC).
        let mut plan = if finished && parts.method == http::Method::POST {
            govern::plan(&self.governance, &prefix, &ex.identity.caller())
        } else {
            govern::Plan::default()
        };
        for (method, jsonrpc_id, event) in std::mem::take(&mut plan.events) {
            self.pipeline.submit(Captured::Governance { ex: ex.clone(), method, jsonrpc_id, event });
        }
        if let Some(body) = plan.refusal.take() {
            return self.refuse(ex, body, &parts.method);
        }

        // Taken out of the URI, not copied from it (the URI is not needed again).
        let path = parts.uri.into_parts().path_and_query.unwrap_or(PathAndQuery::from_static("/"));
        strip_hop_by_hop(&mut parts.headers);
        // Kept for the 502 answer (a cheap reference-counted handle, parsed only then).
        let request_body = (!truncated).then(|| prefix.clone());
        let mut upstream_req = Request::new(PrefixedBody::new(prefix, (!finished).then_some(body)));
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.headers_mut() = parts.headers;
        // Upstream is spoken in HTTP/1.1 whatever the client used (h2c clients included).
        *upstream_req.version_mut() = http::Version::HTTP_11;

        let method_label = method_label(&parts.method);
        let waiting = Awaiting { ex: Some(ex), pipeline: &self.pipeline };
        let sent = self.upstream.send(own, path, upstream_req).await;
        let ex = waiting.answered();
        match sent {
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                let content = ContentKind::from_content_type(
                    rparts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
                );
                let head = Arc::new(ResponseHead {
                    status: rparts.status.as_u16(),
                    content,
                    session_id: rparts.headers.get(MCP_SESSION_ID).and_then(|v| v.to_str().ok()).map(str::to_owned),
                    headers: HeaderLines::capture(&rparts.headers),
                    redacted_headers: Default::default(),
                });
                self.metrics.http_requests.with_label_values(&[method_label, status_class(rparts.status)]).inc();
                if plan.watches() && matches!(content, ContentKind::Json | ContentKind::Sse) {
                    let hold = plan.watches_lists() && self.governance.filters_lists();
                    if hold {
                        // The filtered answer has another length.
                        rparts.headers.remove(header::CONTENT_LENGTH);
                    }
                    let governed = govern::GovernedBody::new(
                        rbody,
                        plan,
                        self.governance.clone(),
                        ex.clone(),
                        self.pipeline.clone(),
                        self.metrics.clone(),
                        content == ContentKind::Sse,
                        hold,
                    );
                    let body = TapBody::new(governed, ex, head, self.pipeline.clone(), self.max_body);
                    return Response::from_parts(rparts, body.boxed());
                }
                let body = TapBody::new(rbody, ex, head, self.pipeline.clone(), self.max_body);
                Response::from_parts(rparts, body.boxed())
            }
            Err(upstream::Failure { reason, error }) => {
                tracing::warn!(error = %error, reason, "upstream MCP server unavailable");
                self.metrics.upstream_errors.with_label_values(&[reason]).inc();
                self.metrics.http_requests.with_label_values(&[method_label, "5xx"]).inc();
                self.pipeline.submit(Captured::UpstreamUnavailable { ex, reason });
                upstream_unavailable(request_body.as_deref().and_then(first_request_id))
            }
        }
    }
}

/// An exchange waiting for the head of its answer. When the client goes away, hyper drops
/// the exchange's future, and with it this: dropped before [`Awaiting::answered`], it
/// tells the pipeline that the exchange was given up (its requests got no answer).
struct Awaiting<'a> {
    ex: Option<Arc<Exchange>>,
    pipeline: &'a Pipeline,
}

impl Awaiting<'_> {
    /// The answer's head came (or the upstream failed): the exchange goes on.
    fn answered(mut self) -> Arc<Exchange> {
        self.ex.take().expect("an exchange is answered once")
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if let Some(ex) = self.ex.take() {
            self.pipeline.submit(Captured::Abandoned { ex });
        }
    }
}

impl Proxy {
    /// Answers a refused request instead of the server: HTTP 200 with the JSON-RPC error
    /// (streamable HTTP), or 403 on the 2024-11-05 HTTP+SSE transport, whose POSTs are
    /// otherwise answered on the event stream the agent does not write to. The answer is
    /// recorded like any other.
    fn refuse(&self, ex: Arc<Exchange>, body: Bytes, method: &http::Method) -> Response<ProxyBody> {
        let status = if ex.legacy_session.is_some() { StatusCode::FORBIDDEN } else { StatusCode::OK };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(session) = ex.session_id.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert("mcp-session-id", session);
        }
        let head = Arc::new(ResponseHead {
            status: status.as_u16(),
            content: ContentKind::Json,
            session_id: None,
            headers: HeaderLines::capture(&headers),
            redacted_headers: Default::default(),
        });
        self.metrics.http_requests.with_label_values(&[method_label(method), status_class(status)]).inc();
        self.pipeline.submit(Captured::Whole {
            ex,
            head,
            body: body.clone(),
            truncated: false,
            wire_bytes: body.len() as u64,
        });
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
}

fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        _ => "other",
    }
}

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names (a standard name compares as a
    // number) costs less than a lookup per hop-by-hop name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // Headers the Connection header names are hop-by-hop too (rare: allocate only then).
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in named {
        headers.remove(name.as_str());
    }
}

/// The trace context in `params._meta.traceparent` of the first message, looked for only
/// when the body mentions it.
fn meta_trace(body: &[u8]) -> Option<TraceContext> {
    // Built once: building a searcher costs more than searching a small body.
    static MENTION: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"traceparent"));
    MENTION.find(body)?;
    let messages = crate::mcp::jsonrpc::parse(body).ok()?;
    messages.iter().find_map(|m| m.meta_traceparent().and_then(TraceContext::parse))
}

fn first_request_id(body: &[u8]) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("id").cloned()
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The JSON-RPC error the client gets when the MCP server cannot be reached.
pub fn upstream_unavailable(id: Option<serde_json::Value>) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(serde_json::Value::Null),
        "error": {"code": -32000, "message": "MCP server unavailable: the mcp-ledger agent could not reach it"},
    });
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn full(b: Bytes) -> ProxyBody {
    Full::new(b).map_err(|never: Infallible| match never {}).boxed()
}

/// Serves the proxy on `listener` until `shutdown` turns true, then stops accepting and
/// lets open exchanges finish (at most `drain` long).
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, mut shutdown: watch::Receiver<bool>, drain: Duration) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let own = Arc::new(upstream::Own::default());
                let service = service_fn(move |req| {
                    let (proxy, own) = (proxy.clone(), own.clone());
                    async move { Ok::<_, Infallible>(proxy.handle(req, peer, &own).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain_seconds = drain.as_secs(), "open connections did not finish in time");
    }
}
