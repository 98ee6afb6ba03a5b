//! The proxy's connections to the MCP server.
//!
//! An HTTP/1.1 client connection carries one exchange at a time, so each gets an
//! upstream connection of its own, opened on its first request and closed with it. That
//! costs no pool: no shared lock, no checkout and return, no hand-off of the connection
//! between tasks on every request (about a quarter of a bare hyper forward's
//! instructions). h2c clients, whose streams run side by side on one connection, and
//! `https` upstreams use hyper's pooled client.

use std::error::Error as StdError;
use std::sync::Mutex;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::tap::PrefixedBody;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a request got no answer from the server.
#[derive(Debug)]
pub struct Failure {
    /// `connect_failed` or `upstream_failed` (the metric label and the record's reason).
    pub reason: &'static str,
    /// What went wrong.
    pub error: BoxError,
}

impl Failure {
    fn connect(error: impl Into<BoxError>) -> Self {
        Self { reason: "connect_failed", error: error.into() }
    }

    fn upstream(error: impl Into<BoxError>) -> Self {
        Self { reason: "upstream_failed", error: error.into() }
    }
}

/// The upstream connection of one HTTP/1.1 client connection, idle between its
/// exchanges (taken out while one runs).
#[derive(Debug, Default)]
pub struct Own(Mutex<Option<http1::SendRequest<PrefixedBody>>>);

impl Own {
    fn take(&self) -> Option<http1::SendRequest<PrefixedBody>> {
        self.slot().take()
    }

    fn keep(&self, sender: http1::SendRequest<PrefixedBody>) {
        *self.slot() = Some(sender);
    }

    /// The slot, locked (held for a take or a put only, so never poisoned mid-use).
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<http1::SendRequest<PrefixedBody>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The MCP server, as the proxy reaches it.
pub struct Upstream {
    scheme: Scheme,
    authority: http::uri::Authority,
    /// Where own connections go: the authority's host (without IPv6 brackets) and port.
    host: String,
    port: u16,
    connect_timeout: Duration,
    pooled: Client<HttpConnector, PrefixedBody>,
}

impl Upstream {
    /// The server at `uri` (its scheme and authority; the path of each request is kept).
    pub fn new(uri: &Uri, connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let pooled = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = uri.authority().cloned().expect("upstream has an authority");
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        Self {
            host: authority.host().trim_start_matches('[').trim_end_matches(']').to_owned(),
            port: authority.port_u16().unwrap_or(default_port),
            scheme,
            authority,
            connect_timeout,
            pooled,
        }
    }

    /// Sends `req` (its URI is the request's path) and waits for the response head: on
    /// `own`, the client connection's own upstream connection, when given and the server
    /// speaks plain HTTP; on the pool otherwise.
    pub async fn send(
        &self,
        own: Option<&Own>,
        path: PathAndQuery,
        mut req: Request<PrefixedBody>,
    ) -> Result<Response<Incoming>, Failure> {
        let Some(own) = own.filter(|_| self.scheme == Scheme::HTTP) else {
            let uri = Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(path);
            *req.uri_mut() = uri.build().map_err(Failure::upstream)?;
            return self
                .pooled
                .request(req)
                .await
                .map_err(|e| if e.is_connect() { Failure::connect(e) } else { Failure::upstream(e) });
        };
        *req.uri_mut() = Uri::from(path);
        // As the pooled client does: an HTTP/1.0 client may have sent no Host.
        if !req.headers().contains_key(header::HOST) {
            let host = http::HeaderValue::from_str(self.authority.as_str()).map_err(Failure::upstream)?;
            req.headers_mut().insert(header::HOST, host);
        }
        if let Some(mut sender) = own.take() {
            match send_on(&mut sender, req).await {
                Ok(resp) => {
                    own.keep(sender);
                    return Ok(resp);
                }
                // The server closed the idle connection and the request was not sent:
                // it goes on a new connection, as the pool would send it.
                Err((Some(unsent), _)) => req = unsent,
                Err((None, e)) => return Err(Failure::upstream(e)),
            }
        }
        let mut sender = self.connect().await?;
        let resp = send_on(&mut sender, req).await.map_err(|(_, e)| Failure::upstream(e))?;
        own.keep(sender);
        Ok(resp)
    }

    /// A new HTTP/1.1 connection to the server, driven by a task of its own until its
    /// `SendRequest` is dropped.
    async fn connect(&self) -> Result<http1::SendRequest<PrefixedBody>, Failure> {
        let connecting = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Failure::connect(e)),
            Err(_) => return Err(Failure::connect(format!("no connection within {:?}", self.connect_timeout))),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(Failure::connect)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Sends `req` on `sender` once it is ready; on failure, gives the request back when it
/// was not sent (the connection had closed).
async fn send_on(
    sender: &mut http1::SendRequest<PrefixedBody>,
    req: Request<PrefixedBody>,
) -> Result<Response<Incoming>, (Option<Request<PrefixedBody>>, hyper::Error)> {
    if let Err(e) = sender.ready().await {
        return Err((Some(req), e));
    }
    sender.try_send_request(req).await.map_err(|mut e| (e.take_message(), e.into_error()))
}
