//! The `network` section and the outbound policy every document is checked against: where the
//! gateway may send requests (provider base URLs, the JWKS URL, the carbon feed, budget webhooks)
//! and which secret may travel to which origin.
//!
//! The policy is the *shipped* document's (`GATEWAY_CONFIG`, Spin's `gateway_config`): someone
//! holding only the admin key (`PUT /admin/config`, the KV key `config`) must not be able to point
//! the gateway at the cloud metadata service or at loopback, nor send a provider key, the JWT
//! HMAC secret or any other binding to a host of their choosing. So:
//! - outbound URLs are `https://` to public hosts; `http://`, loopback, private, link-local,
//!   CGNAT and unspecified addresses pass only when the shipped document says
//!   `"network": { "allow_private_upstreams": true }` (local development, the mock upstreams);
//! - a secret serves one purpose: a provider credential is never also the JWT HMAC key or the
//!   carbon feed's token;
//! - a provider credential goes only to an origin the shipped document pairs it with: its
//!   `network.provider_secrets` (`{ "NAME": ["https://origin", ...] }`), or else the origins its
//!   own providers send that secret to.
//!
//! A document from KV may repeat the shipped `network` section but not widen it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

use super::providers::{GeminiApi, GeminiConfig, OpenAiFlavor, ProviderConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default)]
    allow_private_upstreams: bool,
    #[serde(default)]
    provider_secrets: Option<BTreeMap<String, Vec<String>>>,
}

/// The outbound policy in force, as the shipped document set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// `http://` and private, loopback and link-local hosts are allowed (development only).
    pub allow_private_upstreams: bool,
    /// Secret name → the origins (`https://host[:port]`) it may be sent to as a provider credential.
    pub provider_secrets: BTreeMap<String, BTreeSet<String>>,
}

/// Why an outbound URL is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlRefusal {
    /// Not `scheme://host...`, or a host that is not a DNS name or an IP literal.
    Malformed,
    /// A control character or whitespace (header and request-line injection).
    ControlCharacter,
    /// `user:password@` in the URL: credentials belong in secrets.
    Credentials,
    /// `http://` (or another scheme) where `https://` is required.
    NotHttps,
    /// Loopback, private, link-local, CGNAT, unspecified or `localhost`.
    PrivateHost,
}

impl UrlRefusal {
    pub fn message(&self) -> &'static str {
        match self {
            UrlRefusal::Malformed => "must be an https URL with a host name or a public IP address",
            UrlRefusal::ControlCharacter => "must not contain control characters or whitespace",
            UrlRefusal::Credentials => "must not contain user information (user:password@); name a secret instead",
            UrlRefusal::NotHttps => {
                "must be https (http is allowed only when the shipped configuration sets network.allow_private_upstreams)"
            }
            UrlRefusal::PrivateHost => {
                "must not point at a loopback, private, link-local or metadata address (allowed only when the shipped configuration sets network.allow_private_upstreams)"
            }
        }
    }
}

/// The origin (`scheme://host[:port]`, lower case) of an outbound URL allowed under `allow_private`.
pub fn check_outbound_url(url: &str, allow_private: bool) -> Result<String, UrlRefusal> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlRefusal::ControlCharacter);
    }
    let (scheme, rest) = url.split_once("://").ok_or(UrlRefusal::Malformed)?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(UrlRefusal::Credentials);
    }
    let host = host_of(authority).ok_or(UrlRefusal::Malformed)?;
    match scheme.as_str() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlRefusal::NotHttps),
    }
    if !allow_private && is_private_host(&host) {
        return Err(UrlRefusal::PrivateHost);
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// The host of `host[:port]` or `[v6]:port`, lower case, when it is a name or an IP literal.
fn host_of(authority: &str) -> Option<String> {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))) {
            return None;
        }
        return inside.parse::<Ipv6Addr>().ok().map(|ip| format!("[{ip}]"));
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return None;
    }
    // A numeric last label is an IPv4 address, and only the dotted-quad spelling is accepted
    // (`2130706433`, `0x7f.1`, `127.1` are loopback in other parsers).
    let last = host.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        return host.parse::<Ipv4Addr>().ok().filter(|ip| ip.to_string() == host).map(|_| host);
    }
    Some(host)
}

fn is_private_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".internal") || host.ends_with(".local") {
        return true;
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return is_private_v4(ip);
    }
    if let Some(ip) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse::<Ipv6Addr>().ok()) {
        if let Some(v4) = ip.to_ipv4_mapped() {
            return is_private_v4(v4);
        }
        let first = ip.segments()[0];
        return ip.is_loopback() || ip.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80;
    }
    false
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast() || a == 0 || (a == 100 && (64..128).contains(&b))
}

/// Every provider credential: (field, secret name, the origin it is sent to).
fn provider_credentials(provider: &ProviderConfig) -> Vec<(&'static str, &str, &str)> {
    match provider {
        ProviderConfig::OpenAi(p) => {
            let field = if p.flavor == OpenAiFlavor::WorkersAi { "api_token_secret" } else { "api_key_secret" };
            p.api_key_secret.iter().map(|s| (field, s.as_str(), p.base_url.as_str())).collect()
        }
        ProviderConfig::Azure(p) => vec![("api_key_secret", &p.api_key_secret, &p.base_url)],
        ProviderConfig::Anthropic(p) => vec![("api_key_secret", &p.api_key_secret, &p.base_url)],
        ProviderConfig::Gemini(p) => match &p.api {
            GeminiApi::GenerativeLanguage { base_url, api_key_secret } => vec![("api_key_secret", api_key_secret, base_url)],
            GeminiApi::Vertex { base_url, access_token_secret, .. } => vec![("access_token_secret", access_token_secret, base_url)],
        },
        ProviderConfig::Bedrock(p) => {
            let mut out = vec![("access_key_id_secret", p.access_key_id_secret.as_str(), p.base_url.as_str()), ("secret_access_key_secret", &p.secret_access_key_secret, &p.base_url)];
            out.extend(p.session_token_secret.iter().map(|s| ("session_token_secret", s.as_str(), p.base_url.as_str())));
            out
        }
        ProviderConfig::Cohere(p) => vec![("api_key_secret", &p.api_key_secret, &p.base_url)],
        ProviderConfig::WorkersAiBinding(_) | ProviderConfig::Mock => Vec::new(),
    }
}

fn provider_base_url(provider: &ProviderConfig) -> Option<&str> {
    match provider {
        ProviderConfig::OpenAi(p) => Some(&p.base_url),
        ProviderConfig::Azure(p) => Some(&p.base_url),
        ProviderConfig::Anthropic(p) => Some(&p.base_url),
        ProviderConfig::Gemini(GeminiConfig { api: GeminiApi::GenerativeLanguage { base_url, .. }, .. }) => Some(base_url),
        ProviderConfig::Gemini(GeminiConfig { api: GeminiApi::Vertex { base_url, .. }, .. }) => Some(base_url),
        ProviderConfig::Bedrock(p) => Some(&p.base_url),
        ProviderConfig::Cohere(p) => Some(&p.base_url),
        ProviderConfig::WorkersAiBinding(_) | ProviderConfig::Mock => None,
    }
}

/// What the outbound check reads of a validated document.
pub(super) struct Outbound<'a> {
    pub(super) providers: &'a BTreeMap<String, ProviderConfig>,
    /// (field path, URL) of every other outbound URL: the JWKS, the carbon feed, webhooks.
    pub(super) urls: Vec<(String, &'a str)>,
    /// (field path, secret name, purpose) of every secret that is not a provider credential.
    pub(super) other_secrets: Vec<(String, &'a str, &'static str)>,
}

/// The policy a document sets for itself: honoured only when it is the shipped document.
pub(super) fn policy_of_shipped(raw: Option<RawNetwork>, providers: &BTreeMap<String, ProviderConfig>, issue: &mut impl FnMut(String, String)) -> NetworkPolicy {
    let raw = raw.unwrap_or_default();
    let provider_secrets = match raw.provider_secrets {
        Some(listed) => {
            let mut out = BTreeMap::new();
            for (name, urls) in listed {
                let mut origins = BTreeSet::new();
                for (i, url) in urls.iter().enumerate() {
                    match check_outbound_url(url, raw.allow_private_upstreams) {
                        Ok(origin) => {
                            origins.insert(origin);
                        }
                        Err(refusal) => issue(format!("network.provider_secrets.{name}[{i}]"), refusal.message().into()),
                    }
                }
                out.insert(name, origins);
            }
            out
        }
        None => {
            let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for provider in providers.values() {
                for (_, secret, url) in provider_credentials(provider) {
                    if let Ok(origin) = check_outbound_url(url, raw.allow_private_upstreams) {
                        out.entry(secret.to_string()).or_default().insert(origin);
                    }
                }
            }
            out
        }
    };
    NetworkPolicy { allow_private_upstreams: raw.allow_private_upstreams, provider_secrets }
}

/// A KV document's own `network` section may repeat the shipped policy but not widen it.
pub(super) fn check_not_wider(raw: Option<RawNetwork>, shipped: &NetworkPolicy, issue: &mut impl FnMut(String, String)) {
    let Some(raw) = raw else { return };
    if raw.allow_private_upstreams && !shipped.allow_private_upstreams {
        issue("network.allow_private_upstreams".into(), "only the shipped configuration may allow private upstreams".into());
    }
    for (name, urls) in raw.provider_secrets.unwrap_or_default() {
        let allowed = shipped.provider_secrets.get(&name);
        for (i, url) in urls.iter().enumerate() {
            let origin = check_outbound_url(url, shipped.allow_private_upstreams).ok();
            if !origin.is_some_and(|o| allowed.is_some_and(|a| a.contains(&o))) {
                issue(format!("network.provider_secrets.{name}[{i}]"), "only the shipped configuration may pair a secret with an origin".into());
            }
        }
    }
}

/// Check every outbound URL and secret of a validated document against `policy`.
pub(super) fn check_outbound(outbound: &Outbound<'_>, policy: &NetworkPolicy, issue: &mut impl FnMut(String, String)) {
    let allow_private = policy.allow_private_upstreams;
    let mut purposes: BTreeMap<&str, (&'static str, String)> = BTreeMap::new();
    for (name, provider) in outbound.providers {
        let path = format!("providers.{name}");
        if let Some(url) = provider_base_url(provider) {
            if let Err(refusal) = check_outbound_url(url, allow_private) {
                issue(format!("{path}.base_url"), refusal.message().into());
            }
        }
        for (field, secret, url) in provider_credentials(provider) {
            let at = format!("{path}.{field}");
            note_purpose(&mut purposes, secret, "a provider credential", &at, issue);
            let Ok(origin) = check_outbound_url(url, allow_private) else { continue };
            if !policy.provider_secrets.get(secret).is_some_and(|origins| origins.contains(&origin)) {
                issue(at, format!("the shipped configuration does not allow the secret '{secret}' to be sent to {origin} (see network.provider_secrets)"));
            }
        }
    }
    for (path, secret, purpose) in &outbound.other_secrets {
        note_purpose(&mut purposes, secret, purpose, path, issue);
    }
    for (path, url) in &outbound.urls {
        if let Err(refusal) = check_outbound_url(url, allow_private) {
            issue(path.clone(), refusal.message().into());
        }
    }
}

/// A secret name serves one purpose: the second use for another purpose is an issue at its path.
fn note_purpose<'s>(purposes: &mut BTreeMap<&'s str, (&'static str, String)>, secret: &'s str, purpose: &'static str, path: &str, issue: &mut impl FnMut(String, String)) {
    match purposes.get(secret) {
        Some((first, first_path)) if *first != purpose => {
            issue(path.to_string(), format!("the secret '{secret}' is already {first} at {first_path}: a secret serves one purpose"))
        }
        Some(_) => {}
        None => {
            purposes.insert(secret, (purpose, path.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_urls_pass_and_give_their_origin() {
        assert_eq!(check_outbound_url("https://API.openai.com/v1", false), Ok("https://api.openai.com".into()));
        assert_eq!(check_outbound_url("https://8.8.8.8:8443/x", false), Ok("https://8.8.8.8:8443".into()));
    }

    #[test]
    fn private_loopback_link_local_and_plain_http_are_refused_unless_allowed() {
        for url in [
            "https://169.254.169.254/latest/meta-data",
            "https://127.0.0.1/v1",
            "https://10.1.2.3",
            "https://172.16.0.1",
            "https://192.168.1.1",
            "https://100.64.0.1",
            "https://0.0.0.0",
            "https://localhost:8080",
            "https://metadata.google.internal",
            "https://[::1]/v1",
            "https://[fe80::1]",
            "https://[fd00::1]",
            "https://[::ffff:169.254.169.254]",
        ] {
            assert_eq!(check_outbound_url(url, false), Err(UrlRefusal::PrivateHost), "{url}");
            assert!(check_outbound_url(url, true).is_ok(), "{url} with allow_private");
        }
        assert_eq!(check_outbound_url("http://api.openai.com", false), Err(UrlRefusal::NotHttps));
        assert!(check_outbound_url("http://127.0.0.1:9999/v1", true).is_ok());
        assert_eq!(check_outbound_url("ftp://x.example", true), Err(UrlRefusal::NotHttps));
    }

    #[test]
    fn obfuscated_addresses_credentials_and_control_characters_are_refused() {
        for url in ["https://2130706433", "https://0x7f.1", "https://127.1", "https://017700000001", "https://x_y.example", "https://"] {
            assert_eq!(check_outbound_url(url, false), Err(UrlRefusal::Malformed), "{url}");
        }
        assert_eq!(check_outbound_url("https://user:pw@api.example.com", false), Err(UrlRefusal::Credentials));
        assert_eq!(check_outbound_url("https://api.example.com/v1\r\nx-evil: 1", false), Err(UrlRefusal::ControlCharacter));
    }
}
