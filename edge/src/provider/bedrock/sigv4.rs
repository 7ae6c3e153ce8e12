//! AWS Signature Version 4 request signing (header form), in pure Rust for wasm32.
//!
//! Algorithm from the AWS General Reference, "Create a signed AWS API request" / "Elements of
//! an AWS API request signature", checked against the published SigV4 test suite
//! (`get-vanilla`, `post-vanilla`, `get-vanilla-query-order-key-case`, `post-vanilla-query`,
//! `post-x-www-form-urlencoded`) and the documented derived signing key of the IAM example.
//!
//! Choices worth knowing:
//! - **Canonical URI**: for every service but S3, AWS requires each path segment to be
//!   URI-encoded *twice*. The URL we send already carries the path encoded once (Bedrock model
//!   ids contain `:` and inference-profile ARNs `/`, sent as `%3A` / `%2F`), so the canonical URI
//!   is that wire path encoded once more: `v1:0` is sent as `v1%3A0` and signed as `v1%253A0`.
//!   This is what the AWS SDKs do for `bedrock-runtime`. Dot segments are not normalised (the
//!   gateway never builds paths with them).
//! - **Signed headers**: `host` (from the URL, default port left out as `fetch` sends it), the
//!   caller's headers, `x-amz-date` and, with temporary credentials, `x-amz-security-token`.
//!   `x-amz-content-sha256` is not added: it is an S3 requirement, other services (Bedrock
//!   included) take the payload hash from the canonical request alone.
//! - Dates come from the host clock (`now_ms`), converted with a small civil-from-days routine.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::http::percent_decode_bytes;

type HmacSha256 = Hmac<Sha256>;

/// AWS credentials resolved from the configured secrets.
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The headers to add to a request so AWS accepts it: `x-amz-date`, `x-amz-security-token`
/// (temporary credentials only) and `authorization`.
///
/// `url` is the exact URL that will be fetched (path already percent-encoded); `headers` are
/// the request's other headers, all of which are signed, so the host must send them unchanged.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    region: &str,
    service: &str,
    creds: &AwsCredentials,
    now_ms: u64,
) -> Vec<(String, String)> {
    let amz_date = amz_date(now_ms);
    let date = &amz_date[..8];
    let mut added = vec![("x-amz-date".to_string(), amz_date.clone())];
    if let Some(token) = creds.session_token.as_deref().filter(|t| !t.is_empty()) {
        added.push(("x-amz-security-token".to_string(), token.to_string()));
    }

    let parts = UrlParts::parse(url);
    let mut all: Vec<(String, String)> = vec![("host".to_string(), parts.host.clone())];
    all.extend(headers.iter().cloned());
    all.extend(added.iter().cloned());
    let (canonical_headers, signed_headers) = canonical_headers(&all);

    let canonical = canonical_request(method, &parts, &canonical_headers, &signed_headers, &hex_sha256(body));
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex_sha256(canonical.as_bytes()));
    let key = signing_key(&creds.secret_access_key, date, region, service);
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    added.push((
        "authorization".to_string(),
        format!("{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}", creds.access_key_id),
    ));
    added
}

/// The signing key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty tag would only
    // make AWS refuse the signature, never panic.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn canonical_request(method: &str, url: &UrlParts, canonical_headers: &str, signed_headers: &str, payload_hash: &str) -> String {
    format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        canonical_uri(&url.path),
        canonical_query(&url.query)
    )
}

/// The pieces of an absolute URL that SigV4 needs.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts {
    host: String,
    path: String,
    query: String,
}

impl UrlParts {
    /// Lenient parse of `scheme://authority/path?query#fragment`; never fails.
    fn parse(url: &str) -> UrlParts {
        let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        // Userinfo is never sent in the Host header.
        let authority = authority.rsplit('@').next().unwrap_or_default().to_ascii_lowercase();
        let default_port = if scheme.eq_ignore_ascii_case("http") { ":80" } else { ":443" };
        let host = authority.strip_suffix(default_port).unwrap_or(&authority).to_string();
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        UrlParts { host, path: if path.is_empty() { "/".into() } else { path.into() }, query: query.into() }
    }
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, everything else `%XX`
/// (upper-case hex), `/` kept when `keep_slash`.
fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The wire path (already encoded once) encoded again: AWS's "URI-encode each path segment
/// twice" for services other than S3.
fn canonical_uri(wire_path: &str) -> String {
    uri_encode(wire_path.as_bytes(), true)
}

/// Query parameters decoded, re-encoded strictly, and sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode_bytes(name), false), uri_encode(&percent_decode_bytes(value), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

/// Canonical header block (`name:value\n`, sorted, values trimmed with inner spaces collapsed,
/// repeated names joined by commas) and the `;`-joined signed header names.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => merged.push((name, value)),
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let block = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect::<String>();
    let signed = merged.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    (block, signed)
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in milliseconds.
pub fn amz_date(now_ms: u64) -> String {
    let secs = now_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of AWS's SigV4 test suite.
    fn suite_creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
        }
    }

    /// 2015-08-30T12:36:00Z, the test suite's signing time.
    const SUITE_MS: u64 = 1_440_938_160_000;

    fn authorization(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let added = sign(method, url, &headers, body, "us-east-1", "service", &suite_creds(None), SUITE_MS);
        assert_eq!(added[0], ("x-amz-date".to_string(), "20150830T123600Z".to_string()));
        added.into_iter().find(|(n, _)| n == "authorization").unwrap().1
    }

    fn expected(signed: &str, signature: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={signature}")
    }

    #[test]
    fn aws_test_suite_vectors() {
        assert_eq!(
            authorization("GET", "https://example.amazonaws.com/", &[], b""),
            expected("host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
            "get-vanilla"
        );
        assert_eq!(
            authorization("POST", "https://example.amazonaws.com/", &[], b""),
            expected("host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
            "post-vanilla"
        );
        assert_eq!(
            authorization("GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", &[], b""),
            expected("host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
            "get-vanilla-query-order-key-case"
        );
        assert_eq!(
            authorization("POST", "https://example.amazonaws.com/?Param1=value1", &[], b""),
            expected("host;x-amz-date", "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
            "post-vanilla-query"
        );
        assert_eq!(
            authorization(
                "POST",
                "https://example.amazonaws.com/",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"Param1=value1"
            ),
            expected("content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
            "post-x-www-form-urlencoded"
        );
    }

    #[test]
    fn derived_signing_key_matches_the_iam_example() {
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam");
        assert_eq!(hex::encode(key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    }

    #[test]
    fn canonical_request_double_encodes_the_bedrock_path() {
        let url = UrlParts::parse("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
        assert_eq!(url.host, "bedrock-runtime.us-east-1.amazonaws.com");
        assert_eq!(canonical_uri(&url.path), "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse");
        let arn = UrlParts::parse("https://h/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x/converse-stream");
        assert_eq!(
            canonical_uri(&arn.path),
            "/model/arn%253Aaws%253Abedrock%253Aus-east-1%253A123%253Ainference-profile%252Fus.x/converse-stream"
        );
    }

    #[test]
    fn session_token_is_added_and_signed() {
        let added = sign("POST", "https://example.amazonaws.com/", &[], b"", "us-east-1", "service", &suite_creds(Some("TOKEN/+=")), SUITE_MS);
        assert!(added.contains(&("x-amz-security-token".to_string(), "TOKEN/+=".to_string())));
        let auth = &added.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert!(auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"));
        assert!(!auth.contains("TOKEN"));
        // Without a token the signature is the plain post-vanilla one.
        let plain = sign("POST", "https://example.amazonaws.com/", &[], b"", "us-east-1", "service", &suite_creds(Some("")), SUITE_MS);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn url_parsing_and_header_canonicalisation() {
        assert_eq!(UrlParts::parse("http://LocalHost:8787").host, "localhost:8787");
        assert_eq!(UrlParts::parse("http://localhost:8787").path, "/");
        assert_eq!(UrlParts::parse("https://h:443/a?b=c#frag"), UrlParts { host: "h".into(), path: "/a".into(), query: "b=c".into() });
        assert_eq!(UrlParts::parse("http://h:80/").host, "h");
        assert_eq!(UrlParts::parse("garbage").host, "garbage");
        let (block, signed) = canonical_headers(&[
            ("My-Header1".into(), "  a   b  ".into()),
            ("host".into(), "h".into()),
            ("my-header1".into(), "c".into()),
        ]);
        assert_eq!(block, "host:h\nmy-header1:a b,c\n");
        assert_eq!(signed, "host;my-header1");
        assert_eq!(canonical_query("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
        assert_eq!(percent_decode_bytes("%zz%4"), b"%zz%4".to_vec());
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(SUITE_MS), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400_000), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799_000), "20991231T235959Z");
    }
}
