//! URL pieces the providers build: model names and ids go into paths and queries as data, so
//! a `/`, `:` or `?` in them can never change the URL's shape.

/// Percent-encode a path segment or query value (RFC 3986 unreserved characters kept).
pub fn percent_encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
