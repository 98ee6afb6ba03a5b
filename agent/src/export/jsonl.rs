//! JSON lines: one record per line.

use std::io::Write;

use mcp_ledger_crds::AuditRecord;

use super::ExportError;

/// A JSON lines sink.
pub struct JsonLines {
    out: Box<dyn Write + Send>,
}

impl JsonLines {
    /// Opens `path` (`-` for stdout).
    pub fn open(path: &str) -> std::io::Result<Self> {
        Ok(Self { out: super::open_output(path)? })
    }

    /// Writes a batch and flushes.
    pub fn write(&mut self, batch: &[AuditRecord]) -> Result<(), ExportError> {
        for record in batch {
            serde_json::to_writer(&mut self.out, record).map_err(std::io::Error::other)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(())
    }
}
