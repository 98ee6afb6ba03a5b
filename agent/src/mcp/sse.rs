//! An incremental Server-Sent Events parser (the WHATWG event-stream format), fed with
//! chunks as they cross the proxy. It never holds bytes back from the client: it works on
//! a copy and only remembers the partial event in progress, up to a bound.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field (None means the default type, `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with '\n', up to the bound.
    pub data: Vec<u8>,
    /// The `id:` field of this event, if it had one.
    pub id: Option<String>,
    /// True when `data` was cut at the bound.
    pub truncated: bool,
    /// Bytes of the stream this event took, including field names and line ends.
    pub wire_bytes: u64,
}

impl Event {
    /// The event type, with the default applied.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// The parser state.
#[derive(Debug)]
pub struct Parser {
    max_data: usize,
    line: Vec<u8>,
    line_truncated: bool,
    after_cr: bool,
    current: Event,
    has_fields: bool,
    in_progress_bytes: u64,
}

impl Parser {
    /// A parser that keeps at most `max_data` bytes of an event's data (and of one line).
    pub fn new(max_data: usize) -> Self {
        Self {
            max_data: max_data.max(1),
            line: Vec::new(),
            line_truncated: false,
            after_cr: false,
            current: Event::default(),
            has_fields: false,
            in_progress_bytes: 0,
        }
    }

    /// Feeds a chunk; complete events are appended to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) {
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    self.in_progress_bytes += 1;
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(pos) => {
                    self.append_line(&chunk[..pos]);
                    self.after_cr = chunk[pos] == b'\r';
                    self.in_progress_bytes += pos as u64 + 1;
                    chunk = &chunk[pos + 1..];
                    self.end_line(out);
                }
                None => {
                    self.append_line(chunk);
                    self.in_progress_bytes += chunk.len() as u64;
                    chunk = &[];
                }
            }
        }
    }

    /// True when the stream ended inside an event (a cut stream): the partial event is
    /// not dispatched, as the specification says.
    pub fn finish(&mut self) -> bool {
        let incomplete = !self.line.is_empty() || self.has_fields;
        *self = Self::new(self.max_data);
        incomplete
    }

    fn append_line(&mut self, bytes: &[u8]) {
        // Room for the field name (`data: `) on top of the data bound.
        let room = (self.max_data + 16).saturating_sub(self.line.len());
        if bytes.len() > room {
            self.line_truncated = true;
        }
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        let line = std::mem::take(&mut self.line);
        let line_truncated = std::mem::replace(&mut self.line_truncated, false);
        if line.is_empty() && !line_truncated {
            if self.has_fields {
                let mut event = std::mem::take(&mut self.current);
                event.wire_bytes = self.in_progress_bytes;
                if !event.data.is_empty() || event.truncated {
                    out.push(event);
                }
            }
            self.has_fields = false;
            self.in_progress_bytes = 0;
            self.current = Event::default();
            return;
        }
        if line.first() == Some(&b':') {
            return; // comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        self.has_fields = true;
        match name {
            b"data" => {
                if !self.current.data.is_empty() || self.current.truncated {
                    self.current.data.push(b'\n');
                }
                let room = self.max_data.saturating_sub(self.current.data.len());
                if value.len() > room || line_truncated {
                    self.current.truncated = true;
                }
                self.current.data.extend_from_slice(&value[..value.len().min(room)]);
            }
            b"event" => self.current.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => self.current.id = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]], max: usize) -> (Vec<Event>, bool) {
        let mut p = Parser::new(max);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out);
        }
        let cut = p.finish();
        (out, cut)
    }

    #[test]
    fn parses_events_split_anywhere() {
        let stream = b"event: endpoint\ndata: /messages?session_id=abc\n\n: keep-alive\n\nid: 7\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n";
        let (whole, _) = parse_all(&[stream], 1024);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].event_type(), "endpoint");
        assert_eq!(whole[0].data, b"/messages?session_id=abc");
        assert_eq!(whole[1].event_type(), "message");
        assert_eq!(whole[1].id.as_deref(), Some("7"));
        assert_eq!(whole[1].data, b"{\"a\":1}\n{\"b\":2}");
        // Every split point gives the same events.
        for split in 0..stream.len() {
            let (parts, cut) = parse_all(&[&stream[..split], &stream[split..]], 1024);
            assert_eq!(parts, whole, "split at {split}");
            assert!(!cut);
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_all(&bytewise, 1024).0, whole);
    }

    #[test]
    fn handles_cr_and_crlf_line_ends() {
        let (events, _) = parse_all(&[b"data: a\r\n\r\ndata: b\r\rdata: c\r", b"\n\r\n"], 64);
        let data: Vec<&[u8]> = events.iter().map(|e| e.data.as_slice()).collect();
        assert_eq!(data, [&b"a"[..], b"b", b"c"]);
    }

    #[test]
    fn bounds_the_data_and_says_so() {
        let (events, _) = parse_all(&[b"data: 0123456789\n\ndata: 01\n\n"], 4);
        assert_eq!(events[0].data, b"0123");
        assert!(events[0].truncated);
        assert_eq!(events[1].data, b"01");
        assert!(!events[1].truncated);
    }

    #[test]
    fn reports_a_stream_cut_inside_an_event() {
        let (events, cut) = parse_all(&[b"data: {\"jsonrpc\":\"2.0\",\"id\":1,", b"\"result\""], 1024);
        assert!(events.is_empty());
        assert!(cut);
        let (_, clean) = parse_all(&[b"data: x\n\n"], 1024);
        assert!(!clean);
    }

    #[test]
    fn counts_wire_bytes_per_event() {
        let (events, _) = parse_all(&[b"id: 1\ndata: ab\n\n"], 64);
        assert_eq!(events[0].wire_bytes, 16); // "id: 1\n" + "data: ab\n" + "\n"
    }
}
