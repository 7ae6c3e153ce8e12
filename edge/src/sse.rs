//! Server-sent events: an incremental decoder that accepts bytes in whatever pieces the network
//! delivers them, and an encoder.
//!
//! The decoder follows the WHATWG event-stream rules: lines end in `\n`, `\r\n` or `\r` (also
//! when the `\r` and `\n` arrive in different chunks), `:` starts a comment, an event is
//! dispatched at a blank line, and multi-line `data` is joined with `\n`.
//!
//! One event may hold at most `max_event_bytes` (its field lines together): an upstream that
//! sends a larger one ends the decoding ([`SseDecoder::overflow`]) instead of growing the
//! isolate's memory without bound.

/// Largest event the decoder holds unless told otherwise (`limits.max_sse_event_bytes`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One decoded event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Incremental event-stream decoder.
#[derive(Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    /// Bytes of the event being read so far (its lines, without line endings).
    event_bytes: usize,
    /// The event being read grew past `max_event_bytes`: nothing more is decoded.
    overflowed: bool,
    line: Vec<u8>,
    /// The last byte seen was `\r`: a following `\n` belongs to the same line ending.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that holds at most `max_event_bytes` of one event.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        SseDecoder {
            max_event_bytes,
            event_bytes: 0,
            overflowed: false,
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: None,
            id: None,
        }
    }

    /// The limit, once an event has exceeded it: the events before it were returned, the rest
    /// of the stream is not decoded.
    pub fn overflow(&self) -> Option<usize> {
        self.overflowed.then_some(self.max_event_bytes)
    }

    /// Feed bytes; returns the events completed by them (and before an oversized event).
    ///
    /// Scans for line endings run by run: a line that arrives whole is read from `bytes`
    /// directly, only a line split across pushes is held in the decoder.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() && !self.overflowed {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            let ending = rest.iter().position(|&b| b == b'\n' || b == b'\r');
            let run = &rest[..ending.unwrap_or(rest.len())];
            self.event_bytes += run.len();
            if self.event_bytes > self.max_event_bytes {
                self.overflow_now();
                break;
            }
            let Some(at) = ending else {
                self.line.extend_from_slice(run);
                break;
            };
            self.after_cr = rest[at] == b'\r';
            rest = &rest[at + 1..];
            if self.line.is_empty() {
                self.end_line(run, &mut events);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(run);
                self.end_line(&line, &mut events);
                line.clear();
                self.line = line;
            }
        }
        events
    }

    /// Drop what the oversized event held and stop decoding.
    fn overflow_now(&mut self) {
        self.overflowed = true;
        self.line = Vec::new();
        self.data = None;
        self.event = None;
    }

    /// The stream ended: an event without its closing blank line is incomplete and dropped, as
    /// the specification says.
    pub fn finish(self) -> bool {
        self.line.is_empty() && self.data.is_none() && !self.overflowed
    }

    fn end_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.event_bytes = 0;
            if let Some(data) = self.data.take() {
                events.push(SseEvent { event: self.event.take(), data, id: self.id.clone() });
            }
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => self.data = Some(value.into_owned()),
            },
            b"event" => self.event = Some(value.into_owned()),
            b"id" => self.id = Some(value.into_owned()),
            _ => {}
        }
    }
}

/// Encode one event (`event:` line if named, one `data:` line per line of data).
pub fn encode(event: Option<&str>, data: &str, out: &mut Vec<u8>) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b": keep-alive\r\n\r\nevent: ping\r\ndata: {\"a\":1}\r\n\r\ndata: line one\ndata:line two\n\nid: 7\ndata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent { event: Some("ping".into()), data: "{\"a\":1}".into(), id: None },
            SseEvent { event: None, data: "line one\nline two".into(), id: None },
            SseEvent { event: None, data: "[DONE]".into(), id: Some("7".into()) },
        ]
    }

    #[test]
    fn decodes_a_whole_stream() {
        let mut decoder = SseDecoder::new();
        assert_eq!(decoder.push(STREAM), expected());
        assert!(decoder.finish());
    }

    #[test]
    fn decoding_does_not_depend_on_chunk_boundaries() {
        for split in 1..STREAM.len() {
            for second in split..STREAM.len() {
                let mut decoder = SseDecoder::new();
                let mut events = decoder.push(&STREAM[..split]);
                events.extend(decoder.push(&STREAM[split..second]));
                events.extend(decoder.push(&STREAM[second..]));
                assert_eq!(events, expected(), "split at {split}/{second}");
            }
        }
    }

    #[test]
    fn cr_only_line_endings_and_utf8_split_across_chunks() {
        let text = "data: héllo\r\r".as_bytes();
        let cut = text.iter().position(|&b| b >= 0x80).unwrap() + 1;
        let mut decoder = SseDecoder::new();
        let mut events = decoder.push(&text[..cut]);
        events.extend(decoder.push(&text[cut..]));
        assert_eq!(events[0].data, "héllo");
    }

    #[test]
    fn an_unterminated_event_is_reported_incomplete() {
        let mut decoder = SseDecoder::new();
        assert!(decoder.push(b"data: {\"partial\"").is_empty());
        assert!(!decoder.finish());
    }

    #[test]
    fn an_event_larger_than_the_limit_ends_decoding_after_the_events_before_it() {
        let mut decoder = SseDecoder::with_max_event_bytes(64);
        let mut input = b"data: small\n\n".to_vec();
        input.extend(b"data: ");
        input.extend(vec![b'x'; 100]);
        input.extend(b"\n\ndata: after\n\n");
        let events: Vec<SseEvent> = input.chunks(7).flat_map(|chunk| decoder.push(chunk)).collect();
        assert_eq!(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["small"]);
        assert_eq!(decoder.overflow(), Some(64));
        assert!(decoder.line.capacity() <= 64 && decoder.data.is_none(), "nothing of the event is held");
        assert!(!decoder.finish());
        // Many events that are each under the limit are fine, however long the stream.
        let mut decoder = SseDecoder::with_max_event_bytes(64);
        let many = b"data: 0123456789\n\n".repeat(100);
        assert_eq!(decoder.push(&many).len(), 100);
        assert_eq!(decoder.overflow(), None);
    }

    #[test]
    fn encode_round_trips() {
        let mut out = Vec::new();
        encode(Some("error"), "a\nb", &mut out);
        assert_eq!(out, b"event: error\ndata: a\ndata: b\n\n");
        let events = SseDecoder::new().push(&out);
        assert_eq!(events[0].data, "a\nb");
    }
}
