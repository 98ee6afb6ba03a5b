//! JSON lines: one record per line.

use std::io::Write;

use mcp_ledger_crds::{AuditRecord, HeaderTexts};

use super::ExportError;

/// A JSON lines sink.
pub struct JsonLines {
    out: Box<dyn Write + Send>,
    /// A batch is written here first and to `out` at once: a record is written in many
    /// small pieces, which would cost a dynamic call each straight to `out`.
    buf: Vec<u8>,
    /// The text of the header sets written last.
    header_texts: HeaderTexts,
}

impl JsonLines {
    /// Opens `path` (`-` for stdout).
    pub fn open(path: &str) -> std::io::Result<Self> {
        Ok(Self { out: super::open_output(path)?, buf: Vec::new(), header_texts: HeaderTexts::default() })
    }

    /// Writes a batch and flushes.
    pub fn write(&mut self, batch: &[AuditRecord]) -> Result<(), ExportError> {
        self.buf.clear();
        for record in batch {
            record.write_json_cached(&mut self.buf, &mut self.header_texts);
            self.buf.push(b'\n');
        }
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        // Keep the buffer for the next batch unless an unusual batch made it large.
        if self.buf.capacity() > 4 * 1024 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }
}
