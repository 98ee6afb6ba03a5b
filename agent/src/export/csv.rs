//! CSV rows (RFC 4180) for SIEM import: the metadata columns of the audit record, no body.
//! A cell that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`,
//! tab or CR) is prefixed with `'`.

use std::io::Write;

use mcp_ledger_crds::AuditRecord;

use super::ExportError;

/// The header row.
pub const COLUMNS: &[&str] = &[
    "timestamp",
    "observedTimestamp",
    "level",
    "eventType",
    "responseCode",
    "responseType",
    "userId",
    "teamId",
    "orgId",
    "identitySource",
    "toolId",
    "toolName",
    "correlationId",
    "spanId",
    "requestId.jsonrpc",
    "requestId.unique",
    "sessionId",
    "method",
    "protocolVersion",
    "clientIp",
    "direction",
    "transport",
    "server.name",
    "server.namespace",
    "server.pod",
    "server.version",
    "durationNs",
    "bodyBytes",
    "bodyTruncated",
    "redaction.kinds",
    "redaction.payloadDropped",
    "error.type",
    "error.code",
    "error.message",
    "governance",
];

/// A CSV sink.
pub struct Csv {
    out: Box<dyn Write + Send>,
    wrote_header: bool,
}

impl Csv {
    /// Opens `path` (`-` for stdout); the header is written when the file is new or empty.
    pub fn open(path: &str) -> std::io::Result<Self> {
        Ok(Self { out: super::open_output(path)?, wrote_header: has_rows(path) })
    }

    /// Writes a batch and flushes.
    pub fn write(&mut self, batch: &[AuditRecord]) -> Result<(), ExportError> {
        let mut buf = Vec::new();
        if !self.wrote_header {
            push_row(&mut buf, COLUMNS);
        }
        for record in batch {
            push_row(&mut buf, &row(record));
        }
        self.out.write_all(&buf)?;
        self.out.flush()?;
        self.wrote_header = true;
        Ok(())
    }
}

/// The cells of one record, in `COLUMNS` order.
pub fn row(r: &AuditRecord) -> Vec<String> {
    fn opt<S: AsRef<str>>(v: &Option<S>) -> String {
        v.as_ref().map(|s| s.as_ref().to_owned()).unwrap_or_default()
    }
    vec![
        r.timestamp.to_string(),
        r.observed_timestamp.to_string(),
        r.level.as_str().to_owned(),
        r.event_type.as_str().to_owned(),
        r.response_code.map(|c| c.to_string()).unwrap_or_default(),
        opt(&r.response_type),
        opt(&r.user_id),
        opt(&r.team_id),
        opt(&r.org_id),
        r.identity_source.as_str().to_owned(),
        opt(&r.tool_id),
        opt(&r.tool_name),
        r.correlation_id.to_string(),
        r.span_id.to_string(),
        opt(&r.request_id.jsonrpc),
        r.request_id.unique.to_string(),
        opt(&r.session_id),
        opt(&r.method),
        opt(&r.protocol_version),
        opt(&r.client_ip),
        r.direction.as_str().to_owned(),
        r.transport.as_str().to_owned(),
        r.server.name.clone(),
        opt(&r.server.namespace),
        opt(&r.server.pod),
        opt(&r.server.version),
        r.duration_ns.map(|d| d.to_string()).unwrap_or_default(),
        r.body_bytes.to_string(),
        r.body_truncated.to_string(),
        r.redaction.kinds.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(";"),
        opt(&r.redaction.payload_dropped),
        r.error.as_ref().map(|e| e.kind.clone()).unwrap_or_default(),
        r.error.as_ref().and_then(|e| e.code).map(|c| c.to_string()).unwrap_or_default(),
        r.error.as_ref().and_then(|e| e.message.clone()).unwrap_or_default(),
        r.governance.as_ref().and_then(|g| serde_json::to_string(g).ok()).unwrap_or_default(),
    ]
}

/// Whether the CSV file at `path` already holds rows (its header then too); stdout never does.
pub(crate) fn has_rows(path: &str) -> bool {
    path != "-" && std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false)
}

/// Appends one row: each cell quoted ([`quote`]), comma-separated, CRLF-terminated.
pub(crate) fn push_row<S: AsRef<str>>(buf: &mut Vec<u8>, cells: &[S]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(quote(cell.as_ref()).as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
}

/// RFC 4180 quoting plus formula neutralisation.
pub fn quote(cell: &str) -> String {
    let neutral = match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') if cell.parse::<f64>().is_err() => format!("'{cell}"),
        _ => cell.to_owned(),
    };
    if neutral.contains([',', '"', '\n', '\r']) { format!("\"{}\"", neutral.replace('"', "\"\"")) } else { neutral }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_neutralises_cells() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(quote("-32602"), "-32602");
        assert_eq!(quote("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn the_header_is_written_once_per_file_and_each_record_is_one_row() {
        let record: AuditRecord = serde_json::from_value(serde_json::json!({
            "timestamp": "2026-11-24T10:00:00Z", "observedTimestamp": "2026-11-24T10:00:00Z", "level": "INFO",
            "eventType": "mcp-request", "identitySource": "unverified", "correlationId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "spanId": "00f067aa0ba902b7", "requestId": {"unique": "0193a0c4-0000-7000-8000-000000000001"}, "method": "tools/call",
            "direction": "client-to-server", "transport": "streamable-http", "server": {"name": "github"},
            "bodyBytes": 10, "bodyTruncated": false, "redaction": {}
        }))
        .unwrap();
        let path = std::env::temp_dir().join(format!("mcpl-csv-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let path_text = path.to_str().unwrap();
        Csv::open(path_text).unwrap().write(&[record.clone(), record.clone()]).unwrap();
        Csv::open(path_text).unwrap().write(&[record]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<&str> = text.split("\r\n").filter(|r| !r.is_empty()).collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert_eq!(rows[0], COLUMNS.join(","));
        assert!(rows[1..].iter().all(|r| r.contains(",tools/call,") && r.contains(",github,")), "{text}");
        assert!(rows[1].contains(",4bf92f3577b34da6a3ce929d0e0e4736,00f067aa0ba902b7,"), "ids as hex: {text}");
        assert!(rows[1].contains(",0193a0c4-0000-7000-8000-000000000001,"), "{text}");
        std::fs::remove_file(path).unwrap();
    }
}
