//! A response body that forwards every frame the moment it arrives and hands a copy of
//! the MCP messages in it to the pipeline: the whole JSON body at its end, or each SSE
//! event as it completes. Nothing is held back from the client.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::capture::{Captured, ContentKind, EndOutcome, Exchange, ResponseHead};
use crate::mcp::sse;
use crate::pipeline::Pipeline;

/// The tapped upstream response body (as the client gets it).
pub struct TapBody<B: Body = Incoming> {
    inner: B,
    state: Option<Tap>,
}

struct Tap {
    ex: Arc<Exchange>,
    head: Arc<ResponseHead>,
    pipeline: Pipeline,
    max: usize,
    buf: BytesMut,
    seen: u64,
    sse: Option<sse::Parser>,
    events: Vec<sse::Event>,
}

impl<B: Body> TapBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, ex: Arc<Exchange>, head: Arc<ResponseHead>, pipeline: Pipeline, max: usize) -> Self {
        let sse = (head.content == ContentKind::Sse).then(|| sse::Parser::new(max));
        Self {
            inner,
            state: Some(Tap { ex, head, pipeline, max, buf: BytesMut::new(), seen: 0, sse, events: Vec::new() }),
        }
    }
}

impl Tap {
    fn on_data(&mut self, data: &Bytes) {
        self.seen += data.len() as u64;
        match &mut self.sse {
            Some(parser) => {
                parser.push(data, &mut self.events);
                for event in self.events.drain(..) {
                    self.pipeline.submit(Captured::Response {
                        ex: self.ex.clone(),
                        head: self.head.clone(),
                        truncated: event.truncated,
                        wire_bytes: event.wire_bytes,
                        sse_event: Some(event.event_type().to_owned()),
                        sse_id: event.id,
                        body: Bytes::from(event.data),
                    });
                }
            }
            None => {
                let room = self.max.saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }

    fn finish(mut self, complete: bool, reason: &'static str) {
        let outcome = match &mut self.sse {
            Some(parser) => {
                let partial = parser.finish();
                match (complete, partial) {
                    (true, false) => EndOutcome::Complete,
                    (true, true) => EndOutcome::Cut("stream_cut"),
                    (false, false) if reason == "client_disconnected" => EndOutcome::ClientClosed,
                    (false, _) => EndOutcome::Cut(reason),
                }
            }
            None if !complete => EndOutcome::Cut(reason),
            // Only JSON bodies are MCP messages; other bodies (a 202's "Accepted", an HTML
            // error page) are not, and unanswered requests are recorded at the end.
            None if self.seen > 0 && self.head.content == ContentKind::Json => {
                let truncated = self.seen > self.buf.len() as u64;
                // The message and the end in one item.
                self.pipeline.submit(Captured::Whole {
                    ex: self.ex,
                    head: self.head,
                    // Taken whole, not split off: a split shares (and allocates) where a
                    // taken buffer is frozen as it is.
                    body: self.buf.freeze(),
                    truncated,
                    wire_bytes: self.seen,
                });
                return;
            }
            None => EndOutcome::Complete,
        };
        self.pipeline.submit(Captured::End { ex: self.ex, head: self.head, outcome });
    }
}

impl<B> Body for TapBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(data), Some(tap)) = (frame.data_ref(), this.state.as_mut()) {
                    tap.on_data(data);
                }
                // hyper stops polling a body that says it has ended (a known length was
                // reached), so the end is recorded here rather than on a final `None`.
                if this.inner.is_end_stream()
                    && let Some(tap) = this.state.take()
                {
                    tap.finish(true, "");
                }
            }
            Some(Err(_)) => {
                if let Some(tap) = this.state.take() {
                    tap.finish(false, "upstream_stream_error");
                }
            }
            None => {
                if let Some(tap) = this.state.take() {
                    tap.finish(true, "");
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for TapBody<B> {
    fn drop(&mut self) {
        // Dropped before the end: the client went away (or the connection failed).
        if let Some(tap) = self.state.take() {
            if self.inner.is_end_stream() {
                tap.finish(true, "");
            } else {
                tap.finish(false, "client_disconnected");
            }
        }
    }
}

/// A request body: the bytes the proxy already read, then the rest of the client's body.
pub struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
}

impl PrefixedBody {
    /// A body made of `prefix` followed by what remains of `rest`.
    pub fn new(prefix: Bytes, rest: Option<Incoming>) -> Self {
        Self { prefix: (!prefix.is_empty()).then_some(prefix), rest }
    }
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(prefix),
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + prefix);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + prefix);
                }
                hint
            }
        }
    }
}
