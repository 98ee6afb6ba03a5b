//! The CRI container log format that the kubelet's runtimes write under `/var/log/pods`:
//! one line per write, `<RFC 3339 nano timestamp> <stdout|stderr> <tags> <content>`, where
//! the first tag is `P` for a partial line (continued by the next line of the same stream)
//! or `F` for a full one.

use jiff::Timestamp;

/// Longest joined log line kept; the rest of a longer line is dropped (and said so).
pub const MAX_LINE: usize = 256 * 1024;

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The name as in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// One complete log line (partials joined).
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// When the runtime received the (first part of the) line.
    pub time: Timestamp,
    /// Its stream.
    pub stream: Stream,
    /// The content, without the line break.
    pub content: String,
    /// Whether the content was cut at [`MAX_LINE`].
    pub truncated: bool,
}

/// A line of the file that is not CRI format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// One parsed file line.
#[derive(Clone, Debug, PartialEq)]
pub struct CriLine<'a> {
    /// Timestamp.
    pub time: Timestamp,
    /// Stream.
    pub stream: Stream,
    /// Whether the `P` tag marks it partial.
    pub partial: bool,
    /// Content.
    pub content: &'a str,
}

/// Parses one line of a CRI log file (without its line break).
pub fn parse(line: &str) -> Result<CriLine<'_>, Malformed> {
    let (time, rest) = line.split_once(' ').ok_or(Malformed("no timestamp"))?;
    let time: Timestamp = time.parse().map_err(|_| Malformed("bad timestamp"))?;
    let (stream, rest) = rest.split_once(' ').ok_or(Malformed("no stream"))?;
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return Err(Malformed("bad stream")),
    };
    // The content may be empty, with or without the separating space.
    let (tags, content) = rest.split_once(' ').unwrap_or((rest, ""));
    let partial = match tags.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return Err(Malformed("bad tag")),
    };
    Ok(CriLine { time, stream, partial, content })
}

/// Joins partial lines per stream.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: [Option<LogLine>; 2],
}

impl Joiner {
    /// Feeds one parsed line; returns the complete line it finishes, if any.
    pub fn push(&mut self, line: CriLine<'_>) -> Option<LogLine> {
        let slot = &mut self.pending[line.stream as usize];
        let mut current = slot.take().unwrap_or(LogLine {
            time: line.time,
            stream: line.stream,
            content: String::new(),
            truncated: false,
        });
        let room = MAX_LINE.saturating_sub(current.content.len());
        if line.content.len() > room {
            let mut cut = room;
            while !line.content.is_char_boundary(cut) {
                cut -= 1;
            }
            current.content.push_str(&line.content[..cut]);
            current.truncated = true;
        } else {
            current.content.push_str(line.content);
        }
        if line.partial {
            *slot = Some(current);
            None
        } else {
            Some(current)
        }
    }

    /// Whether a partial line waits for its end.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// Forgets waiting partials (the file was truncated under us).
    pub fn reset(&mut self) {
        self.pending = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_partial_and_empty_lines_parse() {
        let l = parse("2026-11-24T10:00:00.123456789Z stdout F {\"msg\":\"hi there\"}").unwrap();
        assert_eq!((l.stream, l.partial, l.content), (Stream::Stdout, false, "{\"msg\":\"hi there\"}"));
        assert_eq!(l.time.to_string(), "2026-11-24T10:00:00.123456789Z");
        let l = parse("2026-11-24T10:00:00Z stderr P part one ").unwrap();
        assert_eq!((l.stream, l.partial, l.content), (Stream::Stderr, true, "part one "));
        assert_eq!(parse("2026-11-24T10:00:00Z stdout F").unwrap().content, "");
        assert_eq!(parse("2026-11-24T10:00:00Z stdout F ").unwrap().content, "");
        assert_eq!(parse("2026-11-24T10:00:00Z stdout F:x extra").unwrap().content, "extra");
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert_eq!(parse("garbage"), Err(Malformed("no timestamp")));
        assert_eq!(parse("yesterday stdout F x"), Err(Malformed("bad timestamp")));
        assert_eq!(parse("2026-11-24T10:00:00Z stdin F x"), Err(Malformed("bad stream")));
        assert_eq!(parse("2026-11-24T10:00:00Z stdout X x"), Err(Malformed("bad tag")));
    }

    #[test]
    fn partials_join_per_stream_and_long_lines_are_cut() {
        let mut j = Joiner::default();
        assert_eq!(j.push(parse("2026-11-24T10:00:00Z stdout P a").unwrap()), None);
        assert_eq!(j.push(parse("2026-11-24T10:00:01Z stderr F err").unwrap()).unwrap().content, "err");
        assert!(j.has_pending());
        let line = j.push(parse("2026-11-24T10:00:02Z stdout F b").unwrap()).unwrap();
        assert_eq!(line.content, "ab");
        assert_eq!(line.time.to_string(), "2026-11-24T10:00:00Z", "the time of the first part");
        assert!(!j.has_pending());

        let chunk = "é".repeat(MAX_LINE / 4);
        for _ in 0..3 {
            assert_eq!(
                j.push(CriLine { time: Timestamp::UNIX_EPOCH, stream: Stream::Stdout, partial: true, content: &chunk }),
                None
            );
        }
        let line = j.push(parse("2026-11-24T10:00:02Z stdout F end").unwrap()).unwrap();
        assert!(line.truncated);
        assert!(line.content.len() <= MAX_LINE);
    }
}
