//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), as used by
//! Bedrock's `ConverseStream` and `InvokeModelWithResponseStream`.
//!
//! Each message is:
//!
//! ```text
//! total length u32 BE | headers length u32 BE | prelude CRC32 (of the first 8 bytes)
//! headers ... | payload ... | message CRC32 (of everything before it)
//! ```
//!
//! and each header is `name length u8 | name | value type u8 | value`, the value sized by its
//! type: 0 true / 1 false (no bytes), 2 byte (1), 3 short (2), 4 integer (4), 5 long (8),
//! 6 byte array and 7 string (u16 BE length + bytes), 8 timestamp (8), 9 UUID (16).
//! The CRCs are CRC-32 (IEEE). Format from the AWS SDKs' event-stream specification (e.g.
//! `aws-c-event-stream`, the Transcribe streaming docs "Event stream encoding").

use crate::provider::decode::{Framing, StreamFault};

/// Prelude (two lengths and a CRC) plus the trailing message CRC.
const OVERHEAD: usize = 16;
const PRELUDE: usize = 12;
/// AWS caps payloads at 16 MiB and headers at 128 KiB; anything bigger is not event-stream and
/// must not make the decoder buffer without bound.
const MAX_MESSAGE: usize = 16 * 1024 * 1024 + 128 * 1024 + OVERHEAD;

/// One header value, by its wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// A string header's value, e.g. `:event-type`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why bytes are not a valid event stream. Details are fixed strings: never any body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    PreludeCrc,
    MessageCrc,
    Malformed(&'static str),
    /// A message's payload is larger than the gateway holds (`limits.max_sse_event_bytes`).
    TooLarge { limit: usize },
}

impl FrameError {
    pub fn detail(&self) -> &'static str {
        match self {
            FrameError::PreludeCrc => "event-stream prelude CRC mismatch",
            FrameError::MessageCrc => "event-stream message CRC mismatch",
            FrameError::Malformed(detail) => detail,
            FrameError::TooLarge { .. } => "event-stream message is larger than the limit",
        }
    }

    fn fault(self) -> StreamFault {
        match self {
            FrameError::TooLarge { limit } => StreamFault::EventTooLarge { limit },
            other => StreamFault::Malformed { detail: other.detail().into() },
        }
    }
}

/// Incremental decoder: bytes in any chunking, whole messages out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Set after a framing error: nothing after it can be trusted.
    failed: bool,
    /// A framing error found after the messages the last `push` returned, not yet reported.
    deferred: Option<FrameError>,
    /// Largest payload held, below AWS's own 16 MiB (`None`: only AWS's bound).
    max_payload: Option<usize>,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Feed bytes; returns the messages they complete.
    ///
    /// When the bytes complete some messages and then fail, the messages are returned and the
    /// error is kept for [`Decoder::take_error`] (or the next `push`): the valid messages before
    /// a corruption come out the same whether or not the corrupt bytes arrived in the same chunk.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        if self.failed {
            return Err(FrameError::Malformed("event stream already failed"));
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        let result = loop {
            match next_message(&self.buf[at..], self.max_payload) {
                Ok(Some((message, used))) => {
                    out.push(message);
                    at += used;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..at);
        if let Err(error) = result {
            self.failed = true;
            self.buf.clear();
            if out.is_empty() {
                return Err(error);
            }
            self.deferred = Some(error);
        }
        Ok(out)
    }

    /// The framing error found after the messages the last `push` returned, if any.
    pub fn take_error(&mut self) -> Option<FrameError> {
        self.deferred.take()
    }

    /// Whether bytes of an incomplete message are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// The event-stream framing of a provider stream: a corrupt message fails the stream, after the
/// valid messages before it.
impl Framing for Decoder {
    type Event = Message;

    fn limited(max_event_bytes: usize) -> Self {
        Decoder { max_payload: Some(max_event_bytes), ..Decoder::default() }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, StreamFault> {
        // The inherent `Decoder::push`, not this method.
        Decoder::push(self, bytes).map_err(FrameError::fault)
    }

    fn take_fault(&mut self) -> Option<StreamFault> {
        self.take_error().map(FrameError::fault)
    }
}

fn be_u32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// The first message in `buf` and the bytes it used; `None` when it is not complete yet.
fn next_message(buf: &[u8], max_payload: Option<usize>) -> Result<Option<(Message, usize)>, FrameError> {
    if buf.len() < PRELUDE {
        return Ok(None);
    }
    // The prelude is checked as soon as it is here, so garbage fails fast instead of waiting
    // for a huge bogus length to arrive.
    if crc32fast::hash(&buf[..8]) as usize != be_u32(&buf[8..12]) {
        return Err(FrameError::PreludeCrc);
    }
    let total = be_u32(&buf[0..4]);
    let headers_len = be_u32(&buf[4..8]);
    if !(OVERHEAD..=MAX_MESSAGE).contains(&total) || headers_len > total - OVERHEAD {
        return Err(FrameError::Malformed("event-stream message lengths are invalid"));
    }
    // Known from the prelude: an oversized message fails before its bytes are buffered.
    if let Some(limit) = max_payload.filter(|limit| total - OVERHEAD - headers_len > *limit) {
        return Err(FrameError::TooLarge { limit });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let message = &buf[..total];
    if crc32fast::hash(&message[..total - 4]) as usize != be_u32(&message[total - 4..]) {
        return Err(FrameError::MessageCrc);
    }
    let headers = parse_headers(&message[PRELUDE..PRELUDE + headers_len])?;
    let payload = message[PRELUDE + headers_len..total - 4].to_vec();
    Ok(Some((Message { headers, payload }, total)))
}

/// Reads a header block; every length is checked against what is left.
fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    let short = FrameError::Malformed("event-stream header is cut short");
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>, FrameError> {
        if b.len() < n {
            return Err(short.clone());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head.to_vec())
    };
    let mut headers = Vec::new();
    while !b.is_empty() {
        let name_len = take(&mut b, 1)?[0] as usize;
        let name = String::from_utf8(take(&mut b, name_len)?).map_err(|_| FrameError::Malformed("event-stream header name is not UTF-8"))?;
        let kind = take(&mut b, 1)?[0];
        let fixed = |v: Vec<u8>| -> [u8; 8] {
            let mut out = [0u8; 8];
            out[8 - v.len()..].copy_from_slice(&v);
            out
        };
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(take(&mut b, 1)?[0] as i8),
            3 => HeaderValue::Short(i64::from_be_bytes(fixed(take(&mut b, 2)?)) as i16),
            4 => HeaderValue::Int(i64::from_be_bytes(fixed(take(&mut b, 4)?)) as i32),
            5 => HeaderValue::Long(i64::from_be_bytes(fixed(take(&mut b, 8)?))),
            6 | 7 => {
                let len_bytes = take(&mut b, 2)?;
                let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
                let data = take(&mut b, len)?;
                if kind == 6 {
                    HeaderValue::Bytes(data)
                } else {
                    HeaderValue::String(String::from_utf8(data).map_err(|_| FrameError::Malformed("event-stream string header is not UTF-8"))?)
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(fixed(take(&mut b, 8)?))),
            9 => {
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(&take(&mut b, 16)?);
                HeaderValue::Uuid(uuid)
            }
            _ => return Err(FrameError::Malformed("event-stream header has an unknown value type")),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

/// Encode one message with string headers (what Bedrock sends): for tests and mock upstreams.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut header_bytes = Vec::new();
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        let value = &value.as_bytes()[..value.len().min(u16::MAX as usize)];
        header_bytes.push(name.len() as u8);
        header_bytes.extend_from_slice(name);
        header_bytes.push(7);
        header_bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
        header_bytes.extend_from_slice(value);
    }
    let total = (OVERHEAD + header_bytes.len() + payload.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode_message(&[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], payload.as_bytes())
    }

    #[test]
    fn round_trip_at_every_split() {
        let mut bytes = event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hi ü"}}"#));
        bytes.extend(encode_message(&[], b""));
        let whole = Decoder::new().push(&bytes).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].header_str(":event-type"), Some("messageStart"));
        assert_eq!(whole[1].payload, r#"{"contentBlockIndex":0,"delta":{"text":"Hi ü"}}"#.as_bytes());
        assert_eq!(whole[2], Message { headers: vec![], payload: vec![] });
        for split in 0..=bytes.len() {
            let mut d = Decoder::new();
            let mut got = d.push(&bytes[..split]).unwrap();
            got.extend(d.push(&bytes[split..]).unwrap());
            assert_eq!(got, whole, "split at {split}");
            assert!(!d.has_partial());
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(d.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn a_message_larger_than_the_limit_fails_from_its_prelude() {
        let mut bytes = event("contentBlockDelta", "small");
        bytes.extend(event("contentBlockDelta", &"x".repeat(100)));
        let mut d = Decoder::limited(64);
        assert_eq!(d.push(&bytes[..bytes.len() - 90]).unwrap().len(), 1, "the message before it is returned");
        assert_eq!(Framing::take_fault(&mut d), Some(StreamFault::EventTooLarge { limit: 64 }));
    }

    /// A message whose headers use every value type (built by hand, as AWS could send it).
    #[test]
    fn all_header_types_are_read() {
        let mut h = Vec::new();
        let mut add = |name: &str, kind: u8, value: &[u8]| {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(kind);
            h.extend_from_slice(value);
        };
        add("t", 0, &[]);
        add("f", 1, &[]);
        add("b", 2, &[0xff]);
        add("s", 3, &[0x01, 0x02]);
        add("i", 4, &[0xff, 0xff, 0xff, 0xfe]);
        add("l", 5, &7i64.to_be_bytes());
        add("y", 6, &[0, 2, 9, 8]);
        add("str", 7, &[0, 2, b'o', b'k']);
        add("ts", 8, &1_700_000_000_000i64.to_be_bytes());
        add("u", 9, &[3u8; 16]);
        let total = (OVERHEAD + h.len() + 2) as u32;
        let mut msg = total.to_be_bytes().to_vec();
        msg.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let crc = crc32fast::hash(&msg);
        msg.extend_from_slice(&crc.to_be_bytes());
        msg.extend_from_slice(&h);
        msg.extend_from_slice(b"{}");
        let crc = crc32fast::hash(&msg);
        msg.extend_from_slice(&crc.to_be_bytes());
        let got = Decoder::new().push(&msg).unwrap();
        let headers = &got[0].headers;
        assert_eq!(headers[0].1, HeaderValue::Bool(true));
        assert_eq!(headers[1].1, HeaderValue::Bool(false));
        assert_eq!(headers[2].1, HeaderValue::Byte(-1));
        assert_eq!(headers[3].1, HeaderValue::Short(0x0102));
        assert_eq!(headers[4].1, HeaderValue::Int(-2));
        assert_eq!(headers[5].1, HeaderValue::Long(7));
        assert_eq!(headers[6].1, HeaderValue::Bytes(vec![9, 8]));
        assert_eq!(headers[7].1, HeaderValue::String("ok".into()));
        assert_eq!(headers[8].1, HeaderValue::Timestamp(1_700_000_000_000));
        assert_eq!(headers[9].1, HeaderValue::Uuid([3u8; 16]));
        assert_eq!(got[0].header_str("str"), Some("ok"));
        assert_eq!(got[0].header_str("y"), None);
        assert_eq!(got[0].payload, b"{}");
    }

    #[test]
    fn corruption_is_detected() {
        let good = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        // Flip one payload byte: message CRC.
        let mut bad = good.clone();
        let n = bad.len() - 6;
        bad[n] ^= 1;
        assert_eq!(Decoder::new().push(&bad), Err(FrameError::MessageCrc));
        // Flip a length byte: prelude CRC, detected before the rest arrives.
        let mut bad = good.clone();
        bad[3] ^= 1;
        assert_eq!(Decoder::new().push(&bad[..12]), Err(FrameError::PreludeCrc));
        // Text instead of frames.
        assert!(Decoder::new().push(b"{\"message\":\"not a frame\"}").is_err());
        // A failed decoder stays failed.
        let mut d = Decoder::new();
        assert!(d.push(&bad).is_err());
        assert!(d.push(&good).is_err());
    }

    #[test]
    fn messages_before_a_corruption_come_out_whatever_the_chunking() {
        let good = event("messageStart", r#"{"role":"assistant"}"#);
        let mut bad = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        let n = bad.len() - 6;
        bad[n] ^= 1;
        let bytes = [good.clone(), bad].concat();
        // In one chunk: the good message, then the error.
        let mut d = Decoder::new();
        assert_eq!(d.push(&bytes).unwrap().len(), 1);
        assert_eq!(d.take_error(), Some(FrameError::MessageCrc));
        assert!(d.push(&good).is_err(), "still failed");
        // The error not taken is reported by the next push.
        let mut d = Decoder::new();
        assert_eq!(d.push(&bytes).unwrap().len(), 1);
        assert_eq!(d.push(b""), Err(FrameError::MessageCrc));
        // In two chunks: the same message, the same error.
        let mut d = Decoder::new();
        assert_eq!(d.push(&bytes[..good.len()]).unwrap().len(), 1);
        assert_eq!(d.push(&bytes[good.len()..]), Err(FrameError::MessageCrc));
    }

    #[test]
    fn bad_lengths_and_headers_never_panic() {
        let frame = |total: u32, headers_len: u32, body: &[u8]| {
            let mut m = total.to_be_bytes().to_vec();
            m.extend_from_slice(&headers_len.to_be_bytes());
            let crc = crc32fast::hash(&m);
            m.extend_from_slice(&crc.to_be_bytes());
            m.extend_from_slice(body);
            let crc = crc32fast::hash(&m);
            m.extend_from_slice(&crc.to_be_bytes());
            m
        };
        // Total too small, too large, headers longer than the message.
        assert!(Decoder::new().push(&frame(4, 0, b"")).is_err());
        assert!(Decoder::new().push(&frame(u32::MAX, 0, b"")).is_err());
        assert!(Decoder::new().push(&frame(16, 5, b"")).is_err());
        // Header blocks cut short in every place, and an unknown type.
        for headers in [&[5u8][..], &[1, b'a'], &[1, b'a', 7, 0], &[1, b'a', 7, 0, 9, b'x'], &[1, b'a', 4, 0, 0], &[1, b'a', 42], &[1, 0xff, 7, 0, 0]] {
            let m = frame((OVERHEAD + headers.len()) as u32, headers.len() as u32, headers);
            assert!(Decoder::new().push(&m).is_err(), "{headers:?}");
        }
    }
}
