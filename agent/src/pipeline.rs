//! The bounded, asynchronous path from the proxy to the exporters:
//!
//! proxy --try_send--> [captured queue] --> processor (parse, correlate, redact, build)
//!       --batches--> [one batch queue per exporter] --> exporter task (retry with backoff)
//!
//! The proxy never waits: when the captured queue is full the item is dropped and
//! counted. Each exporter has its own queue and task, so a slow or dead collector only
//! costs that exporter's batches (dropped and counted), never another exporter's.

use std::sync::Arc;
use std::time::Duration;

use mcp_ledger_crds::AuditRecord;
use mcp_ledger_crds::config::PipelineConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::capture::{Captured, Processor};
use crate::export::Sink;
use crate::metrics::Metrics;
use crate::redact::Redactor;

/// The proxy's handle on the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Captured>,
    metrics: Metrics,
}

impl Pipeline {
    /// Hands a captured item to the processor without waiting.
    pub fn submit(&self, item: Captured) {
        match self.tx.try_send(item) {
            Ok(()) => self.metrics.queue_depth.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.dropped("queue_full", false),
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.dropped("shutting_down", false),
        }
    }
}

/// The running pipeline: its own OS thread with its own single-threaded runtime, so
/// parsing, redaction, serialisation and blocking file writes never hold up the proxy's
/// runtime.
pub struct Running {
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Waits until everything submitted before the last `Pipeline` handle was dropped has
    /// been processed and exported (or dropped and counted).
    pub async fn drain(self) {
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Shared by the exporters. An `Arc<Vec>`, not an `Arc<[_]>`: turning the batch into a
/// slice would copy every record (about 1 KB each) into a second allocation.
type Batch = Arc<Vec<AuditRecord>>;

/// Batches each exporter may have waiting before new ones are dropped for it.
const EXPORTER_BACKLOG: usize = 8;

/// How often the processor drains the queue while traffic flows.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// Starts the pipeline thread: the processor and one task per exporter.
pub fn start(
    config: &PipelineConfig,
    processor: Processor,
    redactor_updates: watch::Receiver<Arc<Redactor>>,
    sinks: Vec<Sink>,
    metrics: Metrics,
) -> std::io::Result<(Pipeline, Running)> {
    let (tx, rx) = mpsc::channel::<Captured>(config.queue_capacity);
    let config = config.clone();
    let m = metrics.clone();
    let thread = std::thread::Builder::new().name("mcp-ledger-pipeline".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("pipeline runtime");
        rt.block_on(async move {
            let (processor_task, exporters) = spawn_tasks(&config, processor, redactor_updates, sinks, m, rx);
            let _ = processor_task.await;
            for exporter in exporters {
                let _ = exporter.await;
            }
        });
    })?;
    Ok((Pipeline { tx, metrics }, Running { thread }))
}

fn spawn_tasks(
    config: &PipelineConfig,
    mut processor: Processor,
    mut redactor_updates: watch::Receiver<Arc<Redactor>>,
    sinks: Vec<Sink>,
    metrics: Metrics,
    mut rx: mpsc::Receiver<Captured>,
) -> (JoinHandle<()>, Vec<JoinHandle<()>>) {
    let mut outputs = Vec::new();
    let mut exporters = Vec::new();
    for sink in sinks {
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(EXPORTER_BACKLOG);
        outputs.push((sink.name(), batch_tx));
        exporters.push(tokio::spawn(export_loop(batch_rx, sink, config.max_attempts.max(1), metrics.clone())));
    }
    let batch_size = config.batch_size;
    let flush_every = Duration::from_millis(config.flush_interval_ms.max(1));
    let m = metrics.clone();
    let processor_task = tokio::spawn(async move {
        let mut batch: Vec<AuditRecord> = Vec::with_capacity(batch_size);
        // A partial batch is exported `flush_every` after its first record arrived.
        let flush = tokio::time::sleep(flush_every);
        tokio::pin!(flush);
        // While traffic flows the processor wakes on a short timer and drains the queue,
        // rather than being woken by every captured item: a wake-up per message costs the
        // proxy a context switch on a busy node, a 2 ms delay costs a record nothing. When a
        // poll finds the queue empty it waits on the queue instead, so an idle agent does
        // not wake at all; the first item after a pause costs one wake-up.
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Unanswered requests and idle sessions are forgotten as items come; while none
        // come, this timer does it (armed only while the processor holds any).
        let mut sweep = tokio::time::interval(crate::capture::SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut items = Vec::with_capacity(1024);
        let mut idle = true;
        let mut reloads = true;
        let mut open = true;
        while open {
            tokio::select! {
                first = rx.recv(), if idle => match first {
                    Some(item) => {
                        items.push(item);
                        idle = false;
                        poll.reset();
                    }
                    None => open = false,
                },
                _ = poll.tick(), if !idle => {
                    loop {
                        match rx.try_recv() {
                            Ok(item) => items.push(item),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                        if items.len() == items.capacity() {
                            break;
                        }
                    }
                    idle = items.is_empty();
                }
                () = &mut flush, if !batch.is_empty() => send_batch(&outputs, &mut batch, &m),
                _ = sweep.tick(), if idle && processor.has_expiring_state() => processor.sweep(std::time::Instant::now()),
                changed = redactor_updates.changed(), if reloads => match changed {
                    Ok(()) => processor.set_redactor(redactor_updates.borrow_and_update().clone()),
                    // No more policy reloads: stop asking (a closed channel answers at once).
                    Err(_) => reloads = false,
                },
            }
            if items.is_empty() {
                continue;
            }
            m.queue_depth.sub(items.len() as i64);
            for item in items.drain(..) {
                let was_empty = batch.is_empty();
                processor.process(item, &mut batch);
                if was_empty && !batch.is_empty() {
                    flush.as_mut().reset(tokio::time::Instant::now() + flush_every);
                }
                if batch.len() >= batch_size {
                    send_batch(&outputs, &mut batch, &m);
                }
            }
        }
        // Shutdown: the last batch waits for room instead of being dropped.
        if !batch.is_empty() {
            let last: Batch = Arc::new(std::mem::take(&mut batch));
            for (_, out) in &outputs {
                let _ = out.send(last.clone()).await;
            }
        }
    });
    (processor_task, exporters)
}

fn send_batch(outputs: &[(&'static str, mpsc::Sender<Batch>)], batch: &mut Vec<AuditRecord>, metrics: &Metrics) {
    let full: Batch = Arc::new(std::mem::replace(batch, Vec::with_capacity(batch.capacity())));
    for (name, out) in outputs {
        if out.try_send(full.clone()).is_err() {
            tracing::warn!(exporter = *name, records = full.len(), "exporter backlog full, batch dropped for it");
            metrics.dropped_many("exporter_backlog", false, full.len() as u64);
        }
    }
}

async fn export_loop(mut rx: mpsc::Receiver<Batch>, mut sink: Sink, max_attempts: u32, metrics: Metrics) {
    let name = sink.name();
    while let Some(batch) = rx.recv().await {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match sink.export(&batch).await {
                Ok(()) => {
                    metrics.records_exported.with_label_values(&[name]).inc_by(batch.len() as u64);
                    break;
                }
                Err(e) if sink.retries() && attempt < max_attempts => {
                    metrics.export_retries.with_label_values(&[name]).inc();
                    let backoff = Duration::from_millis(100u64 << attempt.min(6)).min(Duration::from_secs(5));
                    tracing::warn!(exporter = name, attempt, error = %e, backoff_ms = backoff.as_millis() as u64, "export failed, retrying");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => {
                    tracing::error!(exporter = name, attempt, error = %e, records = batch.len(), "export failed, batch dropped");
                    metrics.dropped_many("export_failed", false, batch.len() as u64);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use mcp_ledger_crds::McpRedactionPolicySpec;
    use mcp_ledger_crds::common::Transport;

    use super::*;
    use crate::capture::{Exchange, Identity, ServerFacts};
    use crate::mcp::trace::TraceContext;

    fn request(id: u64) -> Captured {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#);
        let ex = Exchange {
            id,
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
            http_method: http::Method::POST,
            session_id: None,
            legacy_session: None,
            client_ip: None,
            trace: TraceContext::random(),
            request_headers: Default::default(),
            redacted_request_headers: Default::default(),
            identity: Identity::default(),
        };
        let wire_bytes = body.len() as u64;
        Captured::Request { ex: Arc::new(ex), body: Bytes::from(body), truncated: false, wire_bytes }
    }

    /// The pipeline's tasks on the test's runtime (paused time), writing JSON lines to a file.
    struct TestPipeline {
        tx: mpsc::Sender<Captured>,
        path: std::path::PathBuf,
        processor_task: JoinHandle<()>,
        exporters: Vec<JoinHandle<()>>,
    }

    impl TestPipeline {
        fn start(batch_size: usize, dir: &std::path::Path) -> Self {
            let config = PipelineConfig { batch_size, flush_interval_ms: 1_000, ..PipelineConfig::default() };
            let metrics = Metrics::new();
            let server =
                ServerFacts { name: "test".into(), namespace: None, pod: None, transport: Transport::StreamableHttp };
            let redactor = Arc::new(Redactor::new(&McpRedactionPolicySpec::default()));
            let governance = Arc::new(crate::govern::Governance::new(Default::default()));
            let processor = Processor::new(server, redactor.clone(), metrics.clone(), governance);
            let path = dir.join("records.jsonl");
            let sink = Sink::JsonLines(crate::export::jsonl::JsonLines::open(path.to_str().unwrap()).unwrap());
            let (_updates, updates) = watch::channel(redactor);
            let (tx, rx) = mpsc::channel(64);
            let (processor_task, exporters) = spawn_tasks(&config, processor, updates, vec![sink], metrics, rx);
            Self { tx, path, processor_task, exporters }
        }

        /// The records written so far.
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }

        /// Closes the queue and waits for the pipeline to finish; returns every record.
        async fn shutdown(mut self) -> Vec<serde_json::Value> {
            drop(std::mem::replace(&mut self.tx, mpsc::channel(1).0));
            (&mut self.processor_task).await.unwrap();
            for e in std::mem::take(&mut self.exporters) {
                e.await.unwrap();
            }
            self.lines()
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mcp-ledger-pipeline-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_after_a_long_pause_waits_the_flush_interval_from_its_arrival_not_longer() {
        let dir = temp_dir("pause");
        let p = TestPipeline::start(128, &dir);
        // A long idle spell: the processor waits on the queue, not on a timer.
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        p.tx.try_send(request(7)).unwrap();
        tokio::time::sleep(Duration::from_millis(990)).await;
        assert!(p.lines().is_empty(), "a partial batch waits for flushIntervalMs: {:?}", p.lines());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let written = p.lines();
        assert_eq!(written.len(), 1, "{written:?}");
        assert_eq!(written[0]["method"], "tools/call");
        assert_eq!(written[0]["requestId"]["jsonrpc"], "7");
        assert_eq!(p.shutdown().await.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_out_at_once_and_the_rest_at_shutdown() {
        let dir = temp_dir("full");
        let p = TestPipeline::start(2, &dir);
        for id in 1..=3 {
            p.tx.try_send(request(id)).unwrap();
        }
        // One queue poll later (2 ms), far short of the 1 s flush interval.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(p.lines().len(), 2, "{:?}", p.lines());
        let ids: Vec<serde_json::Value> =
            p.shutdown().await.iter().map(|r| r["requestId"]["jsonrpc"].clone()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
