//! The node agent's record path: an OTLP logs receiver (gRPC and HTTP/protobuf on one
//! port; HTTP/1.1 and HTTP/2 cleartext) for the sidecars of its node, the disk buffer, and
//! a relay that delivers each buffered request to the collector and/or the file sinks and
//! acknowledges it in the buffer only once all of them took it.
//!
//! A sidecar gets its success answer only after its request is written to the buffer, so
//! whatever was acknowledged survives a killed node agent and a collector that is down.
//! A full buffer answers "try again" (HTTP 503 / gRPC RESOURCE_EXHAUSTED) under the Block
//! policy; the sidecar's exporter retries.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mcp_ledger_crds::config::OtlpConfig;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::buffer::{AppendError, BufferConfig, DiskBuffer};
use crate::export::otlp::{GRPC_PATH, Otlp};
use crate::export::proto;
use crate::metrics::Metrics;

/// Largest export request accepted from a sidecar.
pub const MAX_REQUEST: usize = 8 * 1024 * 1024;

/// Most requests read and stored at once, whatever the number of sidecars: with
/// [`MAX_REQUEST`] this bounds the memory the receiver holds (the others wait, which TCP
/// turns into back-pressure on the senders).
pub const CONCURRENT_REQUESTS: usize = 8;

/// Most buffered requests, and bytes, read into memory for one relay round.
const RELAY_BATCH: usize = 64;
const RELAY_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How the node agent runs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Where the OTLP receiver listens.
    pub listen: SocketAddr,
    /// The disk buffer.
    pub buffer: BufferConfig,
    /// The collector records are relayed to, if any.
    pub collector: Option<OtlpConfig>,
    /// Also write every relayed record as a JSON line to this file (`-`: stdout).
    pub jsonl: Option<String>,
    /// Also write every relayed record as a CSV row to this file (`-`: stdout).
    pub csv: Option<String>,
    /// How often the buffer is fsynced.
    pub sync_every: Duration,
    /// Where usage is reported, if anywhere.
    pub operator: Option<super::usage::OperatorTarget>,
    /// This node's name (in usage reports).
    pub node_name: String,
    /// How often usage is reported.
    pub usage_every: Duration,
    /// Enrich records from a watch of the node's pods (needs Kubernetes credentials).
    pub enrich: bool,
    /// Which labels carry team and org ids.
    pub identity_labels: super::enrich::IdentityLabels,
    /// The node's CRI pod log folder (`/var/log/pods`).
    pub pod_logs_dir: std::path::PathBuf,
    /// Namespace of the cluster default McpRedactionPolicy (the operator's).
    pub policy_namespace: String,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// The outcome of one received request.
enum Received {
    Stored(Box<proto::ExportLogsServiceRequest>),
    Full,
    Invalid(String),
    Failed(String),
}

/// What enriches records before they are stored, when the node agent watches its pods.
#[derive(Clone)]
pub struct Enrichment {
    /// The pods of the node and the namespaces' labels.
    pub cluster: Arc<std::sync::RwLock<super::enrich::Cluster>>,
    /// Which labels carry team and org ids.
    pub labels: super::enrich::IdentityLabels,
}

/// The buffer's size and backlog gauges, set where the buffer changes: after each append
/// and after each relay round (so a scrape never shows an empty backlog that is not).
fn report_buffer(buffer: &DiskBuffer, metrics: &Metrics) {
    metrics.buffer_bytes.set(i64::try_from(buffer.bytes()).unwrap_or(i64::MAX));
    metrics.buffer_pending.set(i64::try_from(buffer.pending()).unwrap_or(i64::MAX));
}

fn store(buffer: &Mutex<DiskBuffer>, payload: &[u8], enrichment: Option<&Enrichment>, metrics: &Metrics) -> Received {
    let mut decoded = match proto::ExportLogsServiceRequest::decode(payload) {
        Ok(d) => d,
        Err(e) => return Received::Invalid(format!("not an ExportLogsServiceRequest: {e}")),
    };
    let enriched;
    let payload = match enrichment {
        Some(e) => {
            super::enrich::enrich(&mut decoded, &e.cluster.read().expect("cluster lock"), &e.labels);
            enriched = decoded.encode_to_vec();
            enriched.as_slice()
        }
        None => payload,
    };
    let mut buffer = buffer.lock().expect("buffer lock");
    match buffer.append(&[payload]) {
        Ok(_) => {
            report_buffer(&buffer, metrics);
            Received::Stored(Box::new(decoded))
        }
        Err(AppendError::Full(_)) => Received::Full,
        Err(AppendError::TooLarge(n)) => Received::Invalid(format!("a request of {n} bytes is too large")),
        Err(AppendError::Io(e)) => Received::Failed(e.to_string()),
    }
}

fn grpc_answer(code: u8, message: &str) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if !message.is_empty()
        && let Ok(v) = HeaderValue::from_str(message)
    {
        trailers.insert("grpc-message", v);
    }
    let body = if code == 0 {
        // One gRPC frame holding an empty ExportLogsServiceResponse.
        Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])).with_trailers(async move { Some(Ok(trailers)) }).boxed()
    } else {
        Full::new(Bytes::new()).with_trailers(async move { Some(Ok(trailers)) }).boxed()
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

fn http_answer(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// Usage is aggregated from stored requests when the node agent reports to the operator.
pub type Usage = Option<Arc<Mutex<super::usage::Aggregator>>>;

/// What the receiver shares across connections.
#[derive(Clone)]
pub struct Receiver {
    /// The disk buffer.
    pub buffer: Arc<Mutex<DiskBuffer>>,
    /// Usage aggregation, when reporting to the operator.
    pub usage: Usage,
    /// Enrichment, when watching the node's pods.
    pub enrichment: Option<Enrichment>,
    /// Metrics.
    pub metrics: Metrics,
    /// Permits to read and store a request ([`CONCURRENT_REQUESTS`]).
    pub permits: Arc<tokio::sync::Semaphore>,
}

async fn receive(req: Request<Incoming>, rx: Receiver) -> Response<Body> {
    let Receiver { buffer, usage, enrichment, metrics, permits } = rx;
    let Ok(_permit) = permits.acquire().await else {
        return http_answer(StatusCode::SERVICE_UNAVAILABLE, "the node agent is stopping\n", "text/plain");
    };
    let grpc = req.uri().path() == GRPC_PATH;
    let protocol = if grpc { "grpc" } else { "http" };
    if req.method() != Method::POST || !(grpc || req.uri().path() == "/v1/logs") {
        return http_answer(StatusCode::NOT_FOUND, "POST OTLP logs to /v1/logs or over gRPC\n", "text/plain");
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST + 5).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            metrics.node_received.with_label_values(&[protocol, "invalid"]).inc();
            return if grpc {
                grpc_answer(3, &format!("cannot read the request: {e}"))
            } else {
                http_answer(StatusCode::PAYLOAD_TOO_LARGE, format!("cannot read the request: {e}\n"), "text/plain")
            };
        }
    };
    let payload = if grpc {
        // One length-prefixed, uncompressed message.
        let mut b = body.clone();
        if b.len() < 5 || b.get_u8() != 0 {
            metrics.node_received.with_label_values(&[protocol, "invalid"]).inc();
            return grpc_answer(3, "expected one uncompressed gRPC message");
        }
        let len = b.get_u32() as usize;
        if b.len() != len {
            metrics.node_received.with_label_values(&[protocol, "invalid"]).inc();
            return grpc_answer(3, "gRPC frame length does not match the body");
        }
        b
    } else {
        body
    };
    let outcome = tokio::task::block_in_place(|| store(&buffer, &payload, enrichment.as_ref(), &metrics));
    if let (Received::Stored(request), Some(usage)) = (&outcome, &usage) {
        usage.lock().expect("usage lock").observe(request);
    }
    let (label, resp) = match outcome {
        Received::Stored(_) if grpc => ("stored", grpc_answer(0, "")),
        Received::Stored(_) => (
            "stored",
            http_answer(
                StatusCode::OK,
                proto::ExportLogsServiceResponse::default().encode_to_vec(),
                "application/x-protobuf",
            ),
        ),
        Received::Full if grpc => ("full", grpc_answer(8, "the node agent's buffer is full; retry")),
        Received::Full => (
            "full",
            http_answer(StatusCode::SERVICE_UNAVAILABLE, "the node agent's buffer is full; retry\n", "text/plain"),
        ),
        Received::Invalid(m) if grpc => ("invalid", grpc_answer(3, &m)),
        Received::Invalid(m) => ("invalid", http_answer(StatusCode::BAD_REQUEST, format!("{m}\n"), "text/plain")),
        Received::Failed(m) => {
            tracing::error!(error = %m, "disk buffer write failed");
            if grpc {
                ("failed", grpc_answer(14, "the node agent could not store the request; retry"))
            } else {
                (
                    "failed",
                    http_answer(StatusCode::SERVICE_UNAVAILABLE, "could not store the request; retry\n", "text/plain"),
                )
            }
        }
    };
    metrics.node_received.with_label_values(&[protocol, label]).inc();
    resp
}

/// Serves the OTLP receiver until `shutdown`.
pub async fn serve_receiver(listener: TcpListener, receiver: Receiver, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let receiver = receiver.clone();
                async move { Ok::<_, Infallible>(receive(req, receiver).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Where the node agent relays buffered requests: the collector and/or the file sinks.
pub struct Destinations {
    /// The OTLP collector, if any.
    pub collector: Option<Otlp>,
    /// The JSON lines and CSV files, if any.
    pub files: Option<super::files::FileSinks>,
}

impl Destinations {
    /// Delivers the request at buffer position `seq` to every destination: the files
    /// first (each skips what it already wrote), then the collector. `Err` names the
    /// destination that failed; the request is then retried.
    async fn deliver(&mut self, seq: u64, payload: Vec<u8>, metrics: &Metrics) -> Result<(), (&'static str, String)> {
        let mut records = None;
        if let Some(files) = &mut self.files {
            let (n, written) = tokio::task::block_in_place(|| files.write(seq, &payload))
                .map_err(|(name, e)| (name, e.to_string()))?;
            for name in written {
                metrics.records_exported.with_label_values(&[name]).inc_by(n as u64);
            }
            records = Some(n);
        }
        if let Some(collector) = &mut self.collector {
            let n = records.or_else(|| proto::count_log_records(&payload)).unwrap_or(0);
            collector.send_encoded(payload).await.map_err(|e| (collector.name(), e.to_string()))?;
            metrics.records_exported.with_label_values(&[collector.name()]).inc_by(n as u64);
        }
        Ok(())
    }
}

/// Relays buffered requests to the destinations, acknowledging each once all of them took
/// it; retries with backoff (200 ms doubling to 10 s) while one is failing (a collector
/// that is down, a full disk).
pub async fn relay(
    buffer: Arc<Mutex<DiskBuffer>>,
    mut destinations: Destinations,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let batch = tokio::task::block_in_place(|| {
            buffer.lock().expect("buffer lock").read_up_to(RELAY_BATCH, RELAY_BATCH_BYTES)
        });
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the disk buffer failed");
                Vec::new()
            }
        };
        let mut failed = false;
        let idle = batch.is_empty();
        for (seq, payload) in batch {
            match destinations.deliver(seq, payload, &metrics).await {
                Ok(()) => {
                    if let Err(e) = tokio::task::block_in_place(|| buffer.lock().expect("buffer lock").ack(seq + 1)) {
                        tracing::error!(error = %e, "acknowledging in the disk buffer failed");
                    }
                    backoff = Duration::from_millis(200);
                }
                Err((exporter, e)) => {
                    metrics.export_retries.with_label_values(&[exporter]).inc();
                    tracing::warn!(exporter, error = %e, retry_in_ms = backoff.as_millis() as u64, "delivery failed; will retry");
                    let _ = tokio::task::block_in_place(|| buffer.lock().expect("buffer lock").rewind());
                    failed = true;
                    break;
                }
            }
        }
        report_buffer(&buffer.lock().expect("buffer lock"), &metrics);
        if !failed && !idle {
            // More may be waiting: go on at once (yielding to the receiver).
            if *shutdown.borrow() {
                return;
            }
            tokio::task::yield_now().await;
            continue;
        }
        let wait = if failed {
            let w = backoff;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            w
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Fsyncs the buffer every `every` until `shutdown` (and once more then).
pub async fn sync_loop(buffer: Arc<Mutex<DiskBuffer>>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = shutdown.changed() => true,
        };
        if let Err(e) = tokio::task::block_in_place(|| buffer.lock().expect("buffer lock").sync()) {
            tracing::error!(error = %e, "fsync of the disk buffer failed");
        }
        if stop {
            return;
        }
    }
}
