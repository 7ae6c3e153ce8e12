//! The `cache` settings of a model, a consumer (`auth.consumers[].cache`) or a tenant: whether
//! their answers are cached, for how long, how large an entry may be, and who shares the entries
//! (docs/cache.md). Off unless one of them sets it; the most specific wins: the consumer's, else
//! its tenant's, else the model's.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Longest configurable time to live: 30 days.
pub const MAX_CACHE_TTL_S: u64 = 30 * 86_400;
/// Largest entry any tier accepts (Workers KV's value limit).
pub const MAX_CACHE_ENTRY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    mode: String,
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    max_entry_bytes: Option<usize>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    semantic: Option<RawSemantic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSemantic {
    embedding_model: String,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    query: Option<SemanticQuery>,
}

/// Who shares cached entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheScope {
    /// Each consumer has its own entries (the default).
    Consumer,
    /// The consumers of one tenant share entries (a caller without a tenant falls back to its own).
    Tenant,
    /// Every caller with this setting and this name shares entries.
    Shared(String),
}

/// What the semantic cache embeds as the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemanticQuery {
    LastUserTurn,
    Conversation,
}

/// The semantic cache's settings (on top of the exact cache).
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    /// A configured model of type `embeddings`.
    pub embedding_model: String,
    /// Least cosine similarity of a hit; `None`: the default the semantic work chose.
    pub threshold: Option<f32>,
    pub query: SemanticQuery,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CacheMode {
    /// Explicitly off (a consumer opting out of its model's cache).
    Off,
    Exact,
    Semantic(SemanticSettings),
}

/// One validated `cache` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub mode: CacheMode,
    pub ttl_s: u64,
    pub max_entry_bytes: usize,
    pub scope: CacheScope,
}

/// Every `cache` setting of the document, by where it was set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheRules {
    pub models: BTreeMap<String, CacheSettings>,
    pub consumers: BTreeMap<String, CacheSettings>,
    pub tenants: BTreeMap<String, CacheSettings>,
}

impl CacheRules {
    /// The setting that applies to a request, if any: the consumer's, else the tenant's, else
    /// the model's. `None` or mode `off`: no caching.
    pub fn for_request(&self, consumer: Option<&str>, tenant: Option<&str>, model: &str) -> Option<&CacheSettings> {
        let chosen = most_specific([&self.consumers, &self.tenants, &self.models], [consumer, tenant, Some(model)])?;
        (chosen.mode != CacheMode::Off).then_some(chosen)
    }
}

/// The setting of the first of (consumer, tenant, model) that has one: the precedence of every
/// per-consumer/tenant/model setting (`cache`, `request_log`).
pub(super) fn most_specific<'a, T>(maps: [&'a BTreeMap<String, T>; 3], names: [Option<&str>; 3]) -> Option<&'a T> {
    maps.into_iter().zip(names).find_map(|(map, name)| map.get(name?))
}

/// Validate one `cache` object at `path`. `embedding_models` are the configured models of type
/// `embeddings` (the semantic cache's `embedding_model` must be one).
pub(super) fn validate_cache(
    raw: RawCache,
    path: &str,
    embedding_models: &[&str],
    issue: &mut impl FnMut(String, String),
) -> Option<CacheSettings> {
    let mut ok = true;
    let mut fail = |field: &str, message: String, issue: &mut dyn FnMut(String, String)| {
        ok = false;
        issue(format!("{path}.{field}"), message);
    };
    let ttl_s = raw.ttl_s.unwrap_or(3_600);
    if ttl_s == 0 || ttl_s > MAX_CACHE_TTL_S {
        fail("ttl_s", format!("must be between 1 and {MAX_CACHE_TTL_S} seconds, got {ttl_s}"), issue);
    }
    let max_entry_bytes = raw.max_entry_bytes.unwrap_or(1024 * 1024);
    if max_entry_bytes == 0 || max_entry_bytes > MAX_CACHE_ENTRY_BYTES {
        fail("max_entry_bytes", format!("must be between 1 and {MAX_CACHE_ENTRY_BYTES}, got {max_entry_bytes}"), issue);
    }
    let scope = match raw.scope.as_deref() {
        None | Some("consumer") => CacheScope::Consumer,
        Some("tenant") => CacheScope::Tenant,
        Some(other) => match other.strip_prefix("shared:") {
            Some(name) if !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) => {
                CacheScope::Shared(name.to_string())
            }
            _ => {
                fail("scope", format!("must be consumer, tenant or shared:<name> (letters, digits, - _ ., at most 64), got '{other}'"), issue);
                CacheScope::Consumer
            }
        },
    };
    let semantic = match (raw.mode.as_str(), raw.semantic) {
        ("semantic", Some(semantic)) => {
            if !embedding_models.contains(&semantic.embedding_model.as_str()) {
                fail("semantic.embedding_model", format!("'{}' is not a configured model of type embeddings", semantic.embedding_model), issue);
            }
            if let Some(t) = semantic.threshold.filter(|t| !(0.0..=1.0).contains(t) || t.is_nan()) {
                fail("semantic.threshold", format!("must be between 0 and 1, got {t}"), issue);
            }
            Some(SemanticSettings { embedding_model: semantic.embedding_model, threshold: semantic.threshold, query: semantic.query.unwrap_or(SemanticQuery::LastUserTurn) })
        }
        ("semantic", None) => {
            fail("semantic", "mode semantic needs semantic.embedding_model".into(), issue);
            None
        }
        (_, Some(_)) => {
            fail("semantic", "only with mode semantic".into(), issue);
            None
        }
        _ => None,
    };
    let mode = match raw.mode.as_str() {
        "off" => CacheMode::Off,
        "exact" => CacheMode::Exact,
        "semantic" => CacheMode::Semantic(semantic?),
        other => {
            fail("mode", format!("must be exact, semantic or off, got '{other}'"), issue);
            CacheMode::Off
        }
    };
    ok.then_some(CacheSettings { mode, ttl_s, max_entry_bytes, scope })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> (Option<CacheSettings>, Vec<String>) {
        let raw: RawCache = serde_json::from_str(json).unwrap();
        let mut paths = Vec::new();
        let settings = validate_cache(raw, "models.m.cache", &["embed"], &mut |p, _| paths.push(p));
        (settings, paths)
    }

    #[test]
    fn defaults_are_an_hour_a_mebibyte_and_per_consumer() {
        let (settings, issues) = check(r#"{"mode": "exact"}"#);
        assert!(issues.is_empty());
        assert_eq!(settings.unwrap(), CacheSettings { mode: CacheMode::Exact, ttl_s: 3600, max_entry_bytes: 1 << 20, scope: CacheScope::Consumer });
        assert_eq!(check(r#"{"mode": "exact", "scope": "shared:docs-bot"}"#).0.unwrap().scope, CacheScope::Shared("docs-bot".into()));
    }

    #[test]
    fn bad_values_are_named_with_their_path() {
        assert_eq!(check(r#"{"mode": "fuzzy"}"#).1, ["models.m.cache.mode"]);
        assert_eq!(check(r#"{"mode": "exact", "ttl_s": 0}"#).1, ["models.m.cache.ttl_s"]);
        assert_eq!(check(r#"{"mode": "exact", "max_entry_bytes": 26214401}"#).1, ["models.m.cache.max_entry_bytes"]);
        assert_eq!(check(r#"{"mode": "exact", "scope": "shared:"}"#).1, ["models.m.cache.scope"]);
        assert_eq!(check(r#"{"mode": "exact", "scope": "everyone"}"#).1, ["models.m.cache.scope"]);
        assert_eq!(check(r#"{"mode": "semantic"}"#).1, ["models.m.cache.semantic"]);
        assert_eq!(check(r#"{"mode": "exact", "semantic": {"embedding_model": "embed"}}"#).1, ["models.m.cache.semantic"]);
        assert_eq!(check(r#"{"mode": "semantic", "semantic": {"embedding_model": "chat"}}"#).1, ["models.m.cache.semantic.embedding_model"]);
        assert_eq!(check(r#"{"mode": "semantic", "semantic": {"embedding_model": "embed", "threshold": 1.5}}"#).1, ["models.m.cache.semantic.threshold"]);
    }

    #[test]
    fn semantic_settings_parse_with_the_last_user_turn_by_default() {
        let (settings, issues) = check(r#"{"mode": "semantic", "semantic": {"embedding_model": "embed", "threshold": 0.9}}"#);
        assert!(issues.is_empty(), "{issues:?}");
        let CacheMode::Semantic(semantic) = settings.unwrap().mode else { panic!("not semantic") };
        assert_eq!(semantic.query, SemanticQuery::LastUserTurn);
        assert_eq!(semantic.threshold, Some(0.9));
    }

    #[test]
    fn the_consumer_wins_over_the_tenant_over_the_model_and_off_turns_it_off() {
        let exact = CacheSettings { mode: CacheMode::Exact, ttl_s: 60, max_entry_bytes: 10, scope: CacheScope::Consumer };
        let mut rules = CacheRules::default();
        rules.models.insert("m".into(), exact.clone());
        rules.tenants.insert("acme".into(), CacheSettings { ttl_s: 120, ..exact.clone() });
        rules.consumers.insert("web".into(), CacheSettings { mode: CacheMode::Off, ..exact.clone() });
        assert_eq!(rules.for_request(None, None, "m").unwrap().ttl_s, 60);
        assert_eq!(rules.for_request(Some("app"), Some("acme"), "m").unwrap().ttl_s, 120);
        assert!(rules.for_request(Some("web"), Some("acme"), "m").is_none());
        assert!(rules.for_request(None, None, "other").is_none());
    }
}
