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
        let mut tick = tokio::time::interval(flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The processor wakes on a short timer and drains the queue, rather than being woken
        // by every captured item: a wake-up per message costs the proxy a context switch
        // on a busy node, a 2 ms delay costs a record nothing.
        let mut poll = tokio::time::interval(Duration::from_millis(2));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut items = Vec::with_capacity(1024);
        let mut open = true;
        while open {
            tokio::select! {
                _ = poll.tick() => {
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
                    m.queue_depth.sub(items.len() as i64);
                    for item in items.drain(..) {
                        processor.process(item, &mut batch);
                        if batch.len() >= batch_size {
                            send_batch(&outputs, &mut batch, &m);
                        }
                    }
                }
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        send_batch(&outputs, &mut batch, &m);
                    }
                }
                changed = redactor_updates.changed() => {
                    if changed.is_ok() {
                        processor.set_redactor(redactor_updates.borrow_and_update().clone());
                    }
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
            metrics.records_dropped.with_label_values(&["exporter_backlog", "false"]).inc_by(full.len() as u64);
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
                    metrics.records_dropped.with_label_values(&["export_failed", "false"]).inc_by(batch.len() as u64);
                    break;
                }
            }
        }
    }
}
