//! Record destinations: OTLP logs (gRPC and HTTP/protobuf), JSON lines and CSV files.

pub mod csv;
pub mod jsonl;
pub mod otlp;
pub mod proto;

use mcp_ledger_crds::AuditRecord;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing a file or stdout failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The collector could not be reached or answered with an error.
    #[error("collector: {0}")]
    Collector(String),
}

/// One configured destination.
pub enum Sink {
    /// JSON lines.
    JsonLines(jsonl::JsonLines),
    /// CSV rows.
    Csv(csv::Csv),
    /// OTLP logs.
    Otlp(Box<otlp::Otlp>),
}

impl Sink {
    /// Metric label of the sink.
    pub fn name(&self) -> &'static str {
        match self {
            Self::JsonLines(_) => "jsonl",
            Self::Csv(_) => "csv",
            Self::Otlp(o) => o.name(),
        }
    }

    /// Whether a failed export is worth retrying.
    pub fn retries(&self) -> bool {
        matches!(self, Self::Otlp(_))
    }

    /// Exports one batch.
    pub async fn export(&mut self, batch: &[AuditRecord]) -> Result<(), ExportError> {
        match self {
            Self::JsonLines(s) => s.write(batch),
            Self::Csv(s) => s.write(batch),
            Self::Otlp(s) => s.export(batch).await,
        }
    }
}

/// Opens a file sink: `-` is stdout, anything else is appended to.
pub(crate) fn open_output(path: &str) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    if path == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(std::io::BufWriter::new(file)))
}
