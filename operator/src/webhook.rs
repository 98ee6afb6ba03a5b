//! The admission webhook server: HTTPS (rustls) with a certificate read from mounted files
//! (a Secret) and reloaded when they change, routing each path to its pure decision in
//! [`crate::admission`].

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mcp_ledger_crds::McpServer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admission::{self, Decision, Effect, path};
use crate::inject::InjectSettings;
use crate::metrics::Metrics;

/// Largest AdmissionReview body accepted (the API server's own request limit is 3 MiB).
pub const MAX_BODY: usize = 6 * 1024 * 1024;

/// A webhook certificate that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The files do not hold a usable certificate chain and key.
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read { path: path.display().to_string(), source })
}

/// Parses a PEM certificate chain and private key into a key rustls can serve.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Invalid(format!("the certificate file is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::Invalid("the certificate file holds no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertError::Invalid(format!("the key file holds no usable private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Invalid(format!("the private key is not supported: {e}")))?;
    let key = CertifiedKey::new(certs, signer);
    key.keys_match().map_err(|e| CertError::Invalid(format!("the key does not match the certificate: {e}")))?;
    Ok(key)
}

/// The serving certificate, swapped whole when the mounted files change.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Vec<u8>)>,
}

impl CertStore {
    /// Loads the certificate and key; fails when they are missing or unusable.
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Arc<Self>, CertError> {
        let (cert, key) = (read(&cert_file)?, read(&key_file)?);
        let certified = certified_key(&cert, &key)?;
        let fingerprint = [cert, key].concat();
        Ok(Arc::new(Self { cert_file, key_file, current: RwLock::new((Arc::new(certified), fingerprint)) }))
    }

    /// Re-reads the files; swaps in a changed, valid pair. `Ok(true)` when it changed. An
    /// invalid pair (for example a half-written rotation) keeps the current one.
    pub fn reload(&self) -> Result<bool, CertError> {
        let (cert, key) = (read(&self.cert_file)?, read(&self.key_file)?);
        let fingerprint = [cert.as_slice(), key.as_slice()].concat();
        if self.current.read().expect("lock").1 == fingerprint {
            return Ok(false);
        }
        let certified = certified_key(&cert, &key)?;
        *self.current.write().expect("lock") = (Arc::new(certified), fingerprint);
        Ok(true)
    }

    /// Polls the files every `every` until `shutdown`, reloading on change.
    pub async fn watch(self: Arc<Self>, every: Duration, metrics: Metrics, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            match self.reload() {
                Ok(true) => {
                    metrics.cert_reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(cert = %self.cert_file.display(), "webhook certificate reloaded");
                }
                Ok(false) => {}
                Err(e) => {
                    metrics.cert_reloads.with_label_values(&["error"]).inc();
                    tracing::warn!(error = %e, "webhook certificate change not usable yet; serving the previous one");
                }
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("lock").0.clone())
    }
}

/// A TLS server configuration that serves whatever `certs` currently holds.
pub fn tls_config(certs: Arc<CertStore>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What the webhook needs from the operator's caches.
pub trait Lookup: Send + Sync + 'static {
    /// The McpServers of a namespace.
    fn servers(&self, namespace: &str) -> Vec<McpServer>;
    /// The names of the McpRedactionPolicies of a namespace.
    fn redaction_policies(&self, namespace: &str) -> Vec<String>;
    /// One McpRedactionPolicy's spec.
    fn redaction_policy(&self, namespace: &str, name: &str) -> Option<mcp_ledger_crds::McpRedactionPolicySpec>;
}

/// Carries out an admission side effect (an Event, recording a removal).
pub type EffectSink = Arc<dyn Fn(Effect) -> BoxFuture<'static, ()> + Send + Sync>;

/// Everything a request handler needs.
pub struct Webhook {
    /// The caches.
    pub lookup: Arc<dyn Lookup>,
    /// How pods are injected.
    pub inject: InjectSettings,
    /// The operator's own username (it may edit the annotations users may not).
    pub operator_user: String,
    /// Metrics.
    pub metrics: Metrics,
    /// Side effects.
    pub effects: EffectSink,
}

impl Webhook {
    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let route = req.uri().path().to_owned();
        if req.method() == Method::GET && route == "/healthz" {
            return text(StatusCode::OK, "ok\n");
        }
        let webhook = match route.as_str() {
            path::SERVERS => "mcpservers",
            path::REVIEWS => "mcpserverreviews",
            path::REDACTION_POLICIES => "mcpredactionpolicies",
            path::ACCESS_POLICIES => "mcpaccesspolicies",
            path::PODS => "pods",
            _ => return text(StatusCode::NOT_FOUND, "not found: the webhook paths are /mutate/* and /validate/*\n"),
        };
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n");
        }
        let started = Instant::now();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.metrics.webhook_requests.with_label_values(&[webhook, "invalid"]).inc();
                return text(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}\n"));
            }
        };
        let request = match admission::parse_review(&body) {
            Ok(r) => r,
            Err(message) => {
                self.metrics.webhook_requests.with_label_values(&[webhook, "invalid"]).inc();
                tracing::warn!(webhook, error = %message, "malformed admission request");
                return text(StatusCode::BAD_REQUEST, &format!("{message}\n"));
            }
        };
        let namespace = request.namespace.clone().unwrap_or_default();
        let decision: Decision = match route.as_str() {
            path::SERVERS => {
                admission::admit_server(&request, &self.lookup.redaction_policies(&namespace), &self.operator_user)
            }
            path::REVIEWS => admission::admit_review(&request, &self.operator_user),
            path::REDACTION_POLICIES => admission::admit_redaction_policy(&request),
            path::ACCESS_POLICIES => admission::admit_access_policy(&request),
            _ => {
                let lookup = &self.lookup;
                let hash_key = |server: &McpServer| {
                    let reference = server.spec.redaction_policy_ref.as_ref()?;
                    lookup.redaction_policy(&namespace, &reference.name)?.hash_key_secret_ref
                };
                let servers = self.lookup.servers(&namespace);
                let (decision, skip) = admission::admit_pod(&request, &servers, &self.inject, &hash_key);
                let outcome = skip.map(|s| s.label()).unwrap_or(decision.outcome);
                self.metrics.injections.with_label_values(&[outcome]).inc();
                decision
            }
        };
        for effect in decision.effects {
            match effect {
                // Recorded before the deletion is admitted, so the finalizer sees it.
                e @ Effect::RecordRemoval { .. } => {
                    if tokio::time::timeout(Duration::from_secs(3), (self.effects)(e)).await.is_err() {
                        tracing::warn!("recording who removed an McpServer timed out; the history will say unknown");
                    }
                }
                e => {
                    tokio::spawn((self.effects)(e));
                }
            }
        }
        if !decision.response.allowed {
            tracing::info!(webhook, namespace = %namespace, name = %request.name, reason = %decision.response.result.message, "admission refused");
        }
        self.metrics.webhook_requests.with_label_values(&[webhook, decision.outcome]).inc();
        self.metrics.webhook_duration.with_label_values(&[webhook]).observe(started.elapsed().as_secs_f64());
        let mut resp = Response::new(Full::new(Bytes::from(admission::review_body(decision.response))));
        resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        resp
    }
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    resp
}

/// Answers one HTTPS request.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Full<Bytes>>> + Send + Sync>;

/// The webhook as a [`Handler`].
pub fn handler(webhook: Arc<Webhook>) -> Handler {
    Arc::new(move |req| {
        let webhook = webhook.clone();
        Box::pin(async move { webhook.handle(req).await })
    })
}

/// Serves HTTPS (HTTP/1.1 and HTTP/2) on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
