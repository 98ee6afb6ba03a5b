//! The node agent's disk buffer in front of the exporters: records are appended to
//! segment files and only leave the buffer once an exporter acknowledged them, so a dead
//! collector or a killed agent loses nothing that was written.
//!
//! - Segments `seg-<first sequence>.log` hold entries `[len: u32 LE][crc32: u32 LE][bytes]`.
//! - The acknowledged position (every sequence below it was exported) is kept in the file
//!   `ack`, replaced atomically (write, fsync, rename). Segments wholly below it are removed.
//! - Durability: every append is written to the file at once (a killed process loses
//!   nothing); [`DiskBuffer::sync`] fsyncs, and the caller calls it at a stated interval
//!   (the node agent: every second), which bounds what a power loss can take.
//! - Recovery at open keeps every entry whose length and checksum check out; a torn entry
//!   at the end of the last segment (a crash mid-write) is cut off, a damaged entry inside
//!   a segment ends that segment (its later entries are counted as lost).
//! - Bounded: past `max_bytes`, [`FullPolicy::Block`] refuses the append (the receiver
//!   pushes back on the sidecars, which retry) and [`FullPolicy::DropOldest`] removes the
//!   oldest segment, counting its unacknowledged entries as dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Largest single entry accepted.
pub const MAX_ENTRY: usize = 16 * 1024 * 1024;
const HEADER: u64 = 8;

/// CRC-32 (IEEE 802.3, as zlib and gzip use), with the CPU's carry-less multiply where it
/// has one: the buffer checks every byte twice (append and read), and a table-driven CRC
/// was a quarter of the node agent's CPU time.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// What to do when the buffer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse new records (the receiver answers "try again" and the sidecars retry).
    #[default]
    Block,
    /// Remove the oldest segment, counting its unexported records as dropped.
    DropOldest,
}

/// How the buffer is laid out and bounded.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferConfig {
    /// Its folder (a hostPath or emptyDir).
    pub dir: PathBuf,
    /// Most bytes on disk.
    pub max_bytes: u64,
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
    /// What happens when it is full.
    pub full: FullPolicy,
}

/// What recovery found at open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Unacknowledged entries recovered.
    pub pending: u64,
    /// Bytes of a torn last entry that were cut off.
    pub torn_bytes: u64,
    /// Entries lost to damage inside a segment.
    pub lost: u64,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The buffer is full and the policy is Block.
    #[error("the disk buffer is full ({0} bytes)")]
    Full(u64),
    /// One entry is larger than [`MAX_ENTRY`].
    #[error("a record of {0} bytes is larger than the buffer takes")]
    TooLarge(usize),
    /// The disk failed.
    #[error("disk buffer: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
    /// Entries in it.
    count: u64,
    bytes: u64,
}

/// Where reading stands: a sequence and its place on disk (`offset` in segment `segment`).
#[derive(Debug, Clone, Copy)]
struct Cursor {
    seq: u64,
    segment: u64,
    offset: u64,
}

/// The buffer.
#[derive(Debug)]
pub struct DiskBuffer {
    config: BufferConfig,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_seq: u64,
    acked: u64,
    cursor: Cursor,
    dropped: u64,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("seg-{base:020}.log"))
}

/// Reads one entry at the reader's position: `Ok(None)` at a clean end, `Err` on damage.
fn read_entry(r: &mut impl Read) -> std::io::Result<Option<Result<Vec<u8>, u64>>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match r.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Ok(Some(Err(got as u64))),
            n => got += n,
        }
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_ENTRY {
        return Ok(Some(Err(8)));
    }
    let mut payload = vec![0u8; len];
    let mut have = 0;
    while have < len {
        match r.read(&mut payload[have..])? {
            0 => return Ok(Some(Err(8 + have as u64))),
            n => have += n,
        }
    }
    if crc32(&payload) != crc {
        return Ok(Some(Err(8 + len as u64)));
    }
    Ok(Some(Ok(payload)))
}

impl DiskBuffer {
    /// Opens (or creates) the buffer and recovers what checks out.
    pub fn open(config: BufferConfig) -> std::io::Result<(Self, Recovery)> {
        std::fs::create_dir_all(&config.dir)?;
        let mut bases: Vec<u64> = std::fs::read_dir(&config.dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        let acked = std::fs::read_to_string(config.dir.join("ack")).ok().and_then(|t| t.trim().parse().ok());
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let last = bases.last().copied();
        for base in bases {
            let path = segment_path(&config.dir, base);
            let mut reader = BufReader::new(File::open(&path)?);
            let (mut count, mut good_bytes) = (0u64, 0u64);
            loop {
                match read_entry(&mut reader)? {
                    None => break,
                    Some(Ok(payload)) => {
                        count += 1;
                        good_bytes += HEADER + payload.len() as u64;
                    }
                    Some(Err(_)) => {
                        let total = std::fs::metadata(&path)?.len();
                        if Some(base) == last {
                            recovery.torn_bytes += total - good_bytes;
                        } else {
                            // Damage inside an older segment: its later entries are lost.
                            recovery.lost += 1;
                        }
                        OpenOptions::new().write(true).open(&path)?.set_len(good_bytes)?;
                        break;
                    }
                }
            }
            segments.push_back(Segment { base, path, count, bytes: good_bytes });
        }
        let next_seq = segments.back().map(|s| s.base + s.count).unwrap_or(0);
        let first = segments.front().map(|s| s.base).unwrap_or(next_seq);
        let acked = acked.unwrap_or(first).clamp(first, next_seq);
        recovery.pending = next_seq - acked;
        let mut buffer = Self {
            config,
            segments,
            writer: None,
            next_seq,
            acked,
            cursor: Cursor { seq: first, segment: first, offset: 0 },
            dropped: 0,
        };
        buffer.remove_acked_segments()?;
        buffer.rewind()?;
        Ok((buffer, recovery))
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Entries written but not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.next_seq - self.acked
    }

    /// Entries dropped by [`FullPolicy::DropOldest`] since open.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The sequence the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends entries in one write; returns their sequences.
    pub fn append(&mut self, entries: &[&[u8]]) -> Result<Range<u64>, AppendError> {
        if let Some(big) = entries.iter().find(|e| e.len() > MAX_ENTRY) {
            return Err(AppendError::TooLarge(big.len()));
        }
        let size: u64 = entries.iter().map(|e| HEADER + e.len() as u64).sum();
        while self.bytes() + size > self.config.max_bytes {
            match self.config.full {
                FullPolicy::Block => return Err(AppendError::Full(self.config.max_bytes)),
                FullPolicy::DropOldest => {
                    if self.segments.len() <= 1 && self.bytes() > 0 {
                        // Only the open segment is left: start a new one so the old can go.
                        self.roll()?;
                    }
                    let Some(oldest) = self.segments.pop_front() else { break };
                    let unacked = (oldest.base + oldest.count).saturating_sub(self.acked.max(oldest.base));
                    self.dropped += unacked.min(oldest.count);
                    std::fs::remove_file(&oldest.path)?;
                    let next_base = self.segments.front().map(|s| s.base).unwrap_or(self.next_seq);
                    if self.acked < next_base {
                        self.acked = next_base;
                        self.write_ack()?;
                    }
                    if self.cursor.seq < next_base {
                        self.rewind()?;
                    }
                    if self.segments.is_empty() {
                        self.writer = None;
                        break;
                    }
                }
            }
        }
        let needs_segment = match self.segments.back() {
            None => true,
            Some(s) => s.bytes >= self.config.segment_bytes,
        };
        if needs_segment {
            self.roll()?;
        }
        if self.writer.is_none() {
            let s = self.segments.back().expect("a segment exists");
            self.writer = Some(OpenOptions::new().append(true).open(&s.path)?);
        }
        let mut buf = Vec::with_capacity(size as usize);
        for e in entries {
            buf.extend_from_slice(&(e.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32(e).to_le_bytes());
            buf.extend_from_slice(e);
        }
        self.writer.as_mut().expect("opened above").write_all(&buf)?;
        let segment = self.segments.back_mut().expect("a segment exists");
        segment.count += entries.len() as u64;
        segment.bytes += size;
        let start = self.next_seq;
        self.next_seq += entries.len() as u64;
        Ok(start..self.next_seq)
    }

    fn roll(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.take() {
            w.sync_data()?;
        }
        let path = segment_path(&self.config.dir, self.next_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.segments.push_back(Segment { base: self.next_seq, path, count: 0, bytes: 0 });
        self.writer = Some(file);
        Ok(())
    }

    /// Flushes written entries to stable storage.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Some(w) = &self.writer {
            w.sync_data()?;
        }
        Ok(())
    }

    /// Reads up to `max` entries after the last ones read (not yet acknowledged).
    pub fn read(&mut self, max: usize) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
        self.read_up_to(max, usize::MAX)
    }

    /// Like [`read`](Self::read), but stops once the entries read hold `max_bytes` (at
    /// least one entry is read), so the memory a batch takes is bounded whatever the size
    /// of the entries.
    pub fn read_up_to(&mut self, max: usize, max_bytes: usize) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max && bytes < max_bytes && self.cursor.seq < self.next_seq {
            // The segment holding the cursor, or the next one after a gap left by damage.
            let Some(index) = self.segments.iter().position(|s| self.cursor.seq < s.base + s.count) else {
                break;
            };
            let base = self.segments[index].base;
            if base != self.cursor.segment {
                let seq = self.cursor.seq.max(base);
                let offset = offset_of(&self.segments[index], seq)?;
                self.cursor = Cursor { seq, segment: base, offset };
            }
            let segment = &self.segments[index];
            let mut file = File::open(&segment.path)?;
            file.seek(SeekFrom::Start(self.cursor.offset))?;
            let mut reader = BufReader::new(file);
            let end = segment.base + segment.count;
            while out.len() < max && bytes < max_bytes && self.cursor.seq < end {
                match read_entry(&mut reader)? {
                    Some(Ok(payload)) => {
                        self.cursor.offset += HEADER + payload.len() as u64;
                        bytes += payload.len();
                        out.push((self.cursor.seq, payload));
                        self.cursor.seq += 1;
                    }
                    _ => {
                        return Err(std::io::Error::other(format!(
                            "disk buffer segment {} changed under the reader",
                            segment.path.display()
                        )));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Acknowledges every entry below `upto` (exported); removes segments no longer needed.
    pub fn ack(&mut self, upto: u64) -> std::io::Result<()> {
        let upto = upto.min(self.next_seq);
        if upto <= self.acked {
            return Ok(());
        }
        self.acked = upto;
        self.write_ack()?;
        self.remove_acked_segments()
    }

    fn write_ack(&self) -> std::io::Result<()> {
        let tmp = self.config.dir.join("ack.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(self.acked.to_string().as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, self.config.dir.join("ack"))
    }

    fn remove_acked_segments(&mut self) -> std::io::Result<()> {
        // Keep the last segment: it is the one being written.
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            if first.base + first.count > self.acked {
                break;
            }
            std::fs::remove_file(&first.path)?;
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Sets reading back to the first unacknowledged entry (after a failed export).
    pub fn rewind(&mut self) -> std::io::Result<()> {
        self.cursor = match self.segments.iter().find(|s| self.acked < s.base + s.count) {
            Some(segment) => {
                let seq = self.acked.max(segment.base);
                Cursor { seq, segment: segment.base, offset: offset_of(segment, seq)? }
            }
            // Nothing unacknowledged: the next read finds its segment.
            None => Cursor { seq: self.acked, segment: u64::MAX, offset: 0 },
        };
        Ok(())
    }
}

/// The byte offset of entry `seq` in `segment`.
fn offset_of(segment: &Segment, seq: u64) -> std::io::Result<u64> {
    let mut reader = BufReader::new(File::open(&segment.path)?);
    let mut offset = 0;
    for _ in segment.base..seq {
        match read_entry(&mut reader)? {
            Some(Ok(payload)) => offset += HEADER + payload.len() as u64,
            _ => return Err(std::io::Error::other("disk buffer segment shorter than its index")),
        }
    }
    Ok(offset)
}

#[cfg(test)]
mod tests;
