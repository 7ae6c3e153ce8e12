//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` header, parsed
//! strictly, and the `tracestate` header passed on when it is well-formed.

/// A parsed `traceparent`: the caller's trace, its span (our parent) and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// The caller recorded its span (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Parse a version-00 `traceparent`: `00-{32 hex}-{16 hex}-{2 hex}`, lower-case hex only, with
/// neither id all zeros. Anything else is `None` (the spec says: start a new trace).
pub fn parse(value: &str) -> Option<TraceParent> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let b = value.as_bytes();
    if b.len() != 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' || &b[..2] != b"00" {
        return None;
    }
    let trace_id = lower_hex(&value[3..35])?;
    let span_id = lower_hex(&value[36..52])?;
    let flags = lower_hex(&value[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(TraceParent { trace_id, span_id: span_id as u64, flags: flags as u8 })
}

/// The `traceparent` the gateway sends: version 00 with our span as the parent.
pub fn format(trace_id: u128, span_id: u64, sampled: bool) -> String {
    format!("00-{trace_id:032x}-{span_id:016x}-{:02x}", u8::from(sampled))
}

/// A `tracestate` worth passing on: at most 512 printable ASCII characters (the spec's limit),
/// else dropped.
pub fn tracestate(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && value.len() <= 512 && value.bytes().all(|b| (0x20..0x7f).contains(&b))).then(|| value.to_string())
}

fn lower_hex(s: &str) -> Option<u128> {
    if !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_gives_its_ids_and_flags() {
        let parent = parse(VALID).unwrap();
        assert_eq!(parent.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent.span_id, 0x00f067aa0ba902b7);
        assert!(parent.sampled());
        assert!(!parse(&VALID.replace("-01", "-00")).unwrap().sampled());
        assert_eq!(format(parent.trace_id, parent.span_id, true), VALID);
        assert_eq!(parse(&format!(" {VALID}\t")), Some(parent), "surrounding whitespace is allowed");
    }

    #[test]
    fn other_versions_are_refused() {
        for version in ["01", "ff", "0g", "cc"] {
            assert_eq!(parse(&VALID.replacen("00", version, 1)), None, "{version}");
        }
        assert_eq!(parse(&format!("{VALID}-extra")), None, "version 00 has exactly four fields");
    }

    #[test]
    fn zero_ids_are_refused() {
        assert_eq!(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), None);
    }

    #[test]
    fn upper_case_hex_and_wrong_lengths_are_refused() {
        assert_eq!(parse(&VALID.to_uppercase()), None);
        assert_eq!(parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), None);
        assert_eq!(parse("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"), None, "31-digit trace id");
        assert_eq!(parse("00-4bf92f3577b34da6a3ce929d0e0e47361-00f067aa0ba902b-01"), None, "shifted dash");
        assert_eq!(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"), None);
        assert_eq!(parse("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"), None);
        assert_eq!(parse("00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None, "from_str_radix would take a sign");
        assert_eq!(parse(""), None);
    }

    #[test]
    fn tracestate_is_passed_only_when_well_formed() {
        assert_eq!(tracestate("congo=t61rcWkgMzE").as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(tracestate("a=b\r\nx: y"), None);
        assert_eq!(tracestate(&"a".repeat(513)), None);
        assert_eq!(tracestate("  "), None);
    }
}
