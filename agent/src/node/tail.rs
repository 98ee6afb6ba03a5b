//! Tails the CRI log files of the node's containers
//! (`<root>/<namespace>_<pod>_<uid>/<container>/<n>.log`), following rotation (the file is
//! renamed and a new one created: the old one is read to its end first) and copy-truncate
//! (the file shrinks: reading starts over), and reports positions that survive a restart:
//! a position never points past a line that was not handed on, so a restarted tailer
//! neither skips nor repeats lines.
//!
//! Blocking file I/O with a `poll` that reads what is new; the caller runs it on a blocking
//! thread at its own pace and persists [`Tailer::positions`] once the lines are safe.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cri::{self, Joiner, LogLine};

/// Most bytes read from one file in one poll, so one busy container cannot starve others.
pub const MAX_READ_PER_POLL: u64 = 4 * 1024 * 1024;

/// The pod and container a log file belongs to, from its path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID.
    pub uid: String,
    /// Container name.
    pub container: String,
}

impl Source {
    /// Parses `<root>/<ns>_<pod>_<uid>/<container>/<n>.log`.
    pub fn from_path(root: &Path, path: &Path) -> Option<Self> {
        let rel = path.strip_prefix(root).ok()?;
        let mut parts = rel.iter().map(|p| p.to_str());
        let pod_dir = parts.next()??;
        let container = parts.next()??;
        let file = parts.next()??;
        if parts.next().is_some() || !file.ends_with(".log") {
            return None;
        }
        let mut fields = pod_dir.splitn(3, '_');
        let (namespace, pod, uid) = (fields.next()?, fields.next()?, fields.next()?);
        Some(Self { namespace: namespace.into(), pod: pod.into(), uid: uid.into(), container: container.into() })
    }
}

/// A complete log line and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Tailed {
    /// The container.
    pub source: Source,
    /// The line.
    pub line: LogLine,
}

/// Where reading of one file stands, as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file (a rotated file keeps it under its new name).
    pub ino: u64,
    /// Bytes handed on (never inside a partial line that has not ended).
    pub offset: u64,
}

struct Tracked {
    path: PathBuf,
    source: Source,
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes of complete file lines consumed.
    offset: u64,
    /// Offset where the oldest pending partial line starts (what a restart re-reads).
    safe: u64,
    joiner: Joiner,
    /// Polls in a row in which a draining file did not grow.
    idle: u32,
}

/// Polls a rotated or deleted file is kept open after it stopped growing (the runtime may
/// still write a last line to it after the kubelet renamed it).
pub const DRAIN_IDLE_POLLS: u32 = 3;

/// What went wrong with lines (counted by the caller).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lines that were not CRI format (skipped).
    pub malformed: u64,
    /// Files that shrank under us (copy-truncate): read again from the start.
    pub truncations: u64,
    /// Rotated files read to their end.
    pub rotations: u64,
}

/// Decides which containers' logs are followed.
pub type SourceFilter = Box<dyn Fn(&Source) -> bool + Send>;

/// The tailer of one log root.
pub struct Tailer {
    root: PathBuf,
    /// Live files by path.
    files: BTreeMap<PathBuf, Tracked>,
    /// Rotated or deleted files still being read to their end.
    draining: Vec<Tracked>,
    /// Positions restored from a previous run, used when a file is first seen.
    restored: BTreeMap<PathBuf, Position>,
    /// Which files to follow (e.g. only MCP server containers); all when `None`.
    filter: Option<SourceFilter>,
    counts: Counts,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer").field("root", &self.root).field("files", &self.files.len()).finish_non_exhaustive()
    }
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Tailer {
    /// A tailer of `root` that resumes from `positions` (from [`Tailer::positions`] of an
    /// earlier run; empty for a first start, which reads existing files from the start).
    pub fn new(root: impl Into<PathBuf>, positions: BTreeMap<PathBuf, Position>) -> Self {
        Self {
            root: root.into(),
            files: BTreeMap::new(),
            draining: Vec::new(),
            restored: positions,
            filter: None,
            counts: Counts::default(),
        }
    }

    /// Follows only the containers for which `filter` says yes.
    pub fn with_filter(mut self, filter: impl Fn(&Source) -> bool + Send + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// What went wrong so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Positions to persist once everything [`Tailer::poll`] returned is safe. Includes
    /// rotated files still being drained, under their current (rotated) identity.
    pub fn positions(&self) -> BTreeMap<PathBuf, Position> {
        let mut out: BTreeMap<PathBuf, Position> = self
            .files
            .values()
            .map(|t| (t.path.clone(), Position { dev: t.dev, ino: t.ino, offset: t.safe }))
            .collect();
        // A rotated file is kept under `<path>.rotated-<inode>` and found again by its inode
        // at restart (see `open`).
        for t in &self.draining {
            out.insert(rotated_key(&t.path, t.ino), Position { dev: t.dev, ino: t.ino, offset: t.safe });
        }
        out
    }

    fn discover(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(pods) = std::fs::read_dir(&self.root) else { return found };
        for pod in pods.flatten() {
            let Ok(containers) = std::fs::read_dir(pod.path()) else { continue };
            for container in containers.flatten() {
                let Ok(files) = std::fs::read_dir(container.path()) else { continue };
                for file in files.flatten() {
                    let path = file.path();
                    if path.extension().is_some_and(|e| e == "log") {
                        found.push(path);
                    }
                }
            }
        }
        found.sort();
        found
    }

    /// Opens a newly seen file, resuming from a restored position when it is the same file,
    /// and first draining the files that restored positions name if they were rotated.
    fn open(&mut self, path: &Path, source: Source) -> std::io::Result<()> {
        let file = File::open(path)?;
        let (dev, ino) = identity(&file.metadata()?);
        let mut offset = 0;
        let mut earlier = Vec::new();
        if let Some(pos) = self.restored.remove(path) {
            if (pos.dev, pos.ino) == (dev, ino) {
                offset = pos.offset;
            } else {
                earlier.push(pos);
            }
        }
        let prefix = format!("{}.rotated-", path.display());
        let keys: Vec<PathBuf> =
            self.restored.keys().filter(|k| k.to_string_lossy().starts_with(&prefix)).cloned().collect();
        for key in keys {
            earlier.extend(self.restored.remove(&key));
        }
        for pos in earlier {
            if (pos.dev, pos.ino) == (dev, ino) {
                continue;
            }
            // Rotated while we were down: finish the old file from where we stopped.
            if let Some(old) = find_by_inode(path.parent().unwrap_or(path), pos.dev, pos.ino) {
                self.draining.push(Tracked {
                    path: path.to_owned(),
                    source: source.clone(),
                    file: File::open(&old)?,
                    dev: pos.dev,
                    ino: pos.ino,
                    offset: pos.offset,
                    safe: pos.offset,
                    joiner: Joiner::default(),
                    idle: 0,
                });
            }
        }
        self.files.insert(
            path.to_owned(),
            Tracked {
                path: path.to_owned(),
                source,
                file,
                dev,
                ino,
                offset,
                safe: offset,
                joiner: Joiner::default(),
                idle: 0,
            },
        );
        Ok(())
    }

    /// Reads every complete new line of every followed file.
    pub fn poll(&mut self) -> std::io::Result<Vec<Tailed>> {
        let mut out = Vec::new();
        let present = self.discover();
        for path in &present {
            let Some(source) = Source::from_path(&self.root, path) else { continue };
            if self.filter.as_ref().is_some_and(|f| !f(&source)) {
                continue;
            }
            match self.files.get(path) {
                None => self.open(path, source)?,
                Some(t) => {
                    let Ok(meta) = std::fs::metadata(path) else { continue };
                    if identity(&meta) != (t.dev, t.ino) {
                        // Rotated: drain the old file by its open handle, start the new one.
                        let mut old = self.files.remove(path).expect("present");
                        read_new(&mut old, &mut out, &mut self.counts, false)?;
                        self.counts.rotations += 1;
                        self.draining.push(old);
                        self.open(path, source)?;
                    }
                }
            }
        }
        // Files that disappeared (pod gone, or rotated away without a new file yet).
        let gone: Vec<PathBuf> = self.files.keys().filter(|p| !present.contains(p)).cloned().collect();
        for path in gone {
            let mut t = self.files.remove(&path).expect("listed");
            read_new(&mut t, &mut out, &mut self.counts, false)?;
            self.draining.push(t);
        }
        // Rotated or deleted files first (their lines are older), read to their end and let
        // go once they stop growing; then the live files.
        let mut draining = std::mem::take(&mut self.draining);
        for t in &mut draining {
            let before = t.offset;
            read_new(t, &mut out, &mut self.counts, false)?;
            t.idle = if t.offset == before { t.idle + 1 } else { 0 };
        }
        draining.retain(|t| t.idle < DRAIN_IDLE_POLLS);
        self.draining = draining;
        for t in self.files.values_mut() {
            read_new(t, &mut out, &mut self.counts, true)?;
        }
        Ok(out)
    }
}

fn rotated_key(path: &Path, ino: u64) -> PathBuf {
    PathBuf::from(format!("{}.rotated-{ino}", path.display()))
}

fn find_by_inode(dir: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.metadata().map(|m| identity(&m) == (dev, ino)).unwrap_or(false))
        .map(|e| e.path())
}

/// Reads the complete lines after `t.offset`. `live` files are checked for copy-truncate.
fn read_new(t: &mut Tracked, out: &mut Vec<Tailed>, counts: &mut Counts, live: bool) -> std::io::Result<()> {
    let len = t.file.metadata()?.len();
    if live && len < t.offset {
        counts.truncations += 1;
        t.offset = 0;
        t.safe = 0;
        t.joiner.reset();
    }
    if len <= t.offset {
        return Ok(());
    }
    let want = (len - t.offset).min(MAX_READ_PER_POLL);
    t.file.seek(SeekFrom::Start(t.offset))?;
    let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    (&mut t.file).take(want).read_to_end(&mut buf)?;
    let mut consumed = 0usize;
    while let Some(end) = buf[consumed..].iter().position(|&b| b == b'\n') {
        let raw = &buf[consumed..consumed + end];
        let line_start = t.offset + consumed as u64;
        consumed += end + 1;
        let text = String::from_utf8_lossy(raw);
        match cri::parse(&text) {
            Ok(parsed) => {
                let was_pending = t.joiner.has_pending();
                match t.joiner.push(parsed) {
                    Some(line) => out.push(Tailed { source: t.source.clone(), line }),
                    None if !was_pending => t.safe = line_start,
                    None => {}
                }
            }
            Err(_) => counts.malformed += 1,
        }
        if !t.joiner.has_pending() {
            t.safe = t.offset + consumed as u64;
        }
    }
    // A trailing fragment without its line break stays for the next poll.
    t.offset += consumed as u64;
    Ok(())
}

#[cfg(test)]
mod tests;
