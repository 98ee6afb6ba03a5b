//! `make bench` (node agent part): records/s through the disk buffer — append in batches
//! of 512, read back, acknowledge — on one thread, with a one-second fsync as the node
//! agent runs it. Records are ~600-byte JSON audit records. Also prints the baseline of
//! writing the same bytes to a plain file, so the ratio says what the buffer costs.

use std::io::Write;
use std::time::{Duration, Instant};

use mcp_ledger_agent::node::buffer::{BufferConfig, DiskBuffer, FullPolicy};

fn record(i: u64) -> Vec<u8> {
    format!(
        "{{\"timestamp\":\"2026-11-24T10:00:00.{i:09}Z\",\"level\":\"INFO\",\"eventType\":\"mcp-request\",\"method\":\"tools/call\",\
         \"toolId\":\"github/search_issues@3f2a9c\",\"correlationId\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"requestId\":\"{i}\",\
         \"sessionId\":\"9c1e5a7e-2f44-4b1a-9d0e-2a6b3c4d5e6f\",\"userId\":\"alice@example.com\",\"clientIp\":\"10.0.3.17\",\
         \"server\":{{\"name\":\"github\",\"namespace\":\"tools\",\"pod\":\"github-7f9c4d-abcde\"}},\"durationMs\":12.5,\
         \"body\":{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"search_issues\",\"arguments\":{{\"query\":\"label:bug state:open\"}}}}}}}}"
    )
    .into_bytes()
}

fn main() {
    let n: u64 = 400_000;
    let records: Vec<Vec<u8>> = (0..n).map(record).collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let dir = std::env::temp_dir().join(format!("mcpl-bench-buffer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // Baseline: the same bytes appended to one file in the same batches.
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let mut plain = std::fs::File::create(dir.join("plain")).unwrap();
    for chunk in records.chunks(512) {
        let joined: Vec<u8> = chunk.concat();
        plain.write_all(&joined).unwrap();
    }
    plain.sync_data().unwrap();
    let baseline = started.elapsed();

    let config =
        BufferConfig { dir: dir.join("buffer"), max_bytes: 1 << 30, segment_bytes: 16 << 20, full: FullPolicy::Block };
    let (mut buffer, _) = DiskBuffer::open(config).unwrap();
    let started = Instant::now();
    let mut last_sync = Instant::now();
    let mut read = 0u64;
    for chunk in records.chunks(512) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        buffer.append(&refs).unwrap();
        let batch = buffer.read(512).unwrap();
        read += batch.len() as u64;
        if let Some((seq, _)) = batch.last() {
            buffer.ack(seq + 1).unwrap();
        }
        if last_sync.elapsed() >= Duration::from_secs(1) {
            buffer.sync().unwrap();
            last_sync = Instant::now();
        }
    }
    buffer.sync().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(read, n, "every record was read back");
    let _ = std::fs::remove_dir_all(&dir);
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "disk buffer: {n} records ({:.0} bytes each), append+read+ack in batches of 512, fsync every 1 s: \
         {rate:.0} records/s ({:.1} MB/s) on one thread; plain file write of the same bytes: {:.0} records/s; \
         ratio buffer/plain = {:.2}; target >= 50000 records/s per core",
        bytes as f64 / n as f64,
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
        n as f64 / baseline.as_secs_f64(),
        baseline.as_secs_f64() / elapsed.as_secs_f64()
    );
}
