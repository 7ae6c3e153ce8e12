//! Server-sent events: an incremental decoder that accepts bytes in whatever pieces the network
//! delivers them, and an encoder.
//!
//! The decoder follows the WHATWG event-stream rules: lines end in `\n`, `\r\n` or `\r` (also
//! when the `\r` and `\n` arrive in different chunks), `:` starts a comment, an event is
//! dispatched at a blank line, and multi-line `data` is joined with `\n`.

/// One decoded event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Incremental event-stream decoder.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    /// The last byte seen was `\r`: a following `\n` belongs to the same line ending.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut events),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut events);
                }
                _ => self.line.push(b),
            }
        }
        events
    }

    /// The stream ended: an event without its closing blank line is incomplete and dropped, as
    /// the specification says.
    pub fn finish(self) -> bool {
        self.line.is_empty() && self.data.is_none()
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
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
            None => (&line[..], &[][..]),
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
    fn encode_round_trips() {
        let mut out = Vec::new();
        encode(Some("error"), "a\nb", &mut out);
        assert_eq!(out, b"event: error\ndata: a\ndata: b\n\n");
        let events = SseDecoder::new().push(&out);
        assert_eq!(events[0].data, "a\nb");
    }
}
