//! The `guards` section: named guard profiles (PII actions, prompt-injection threshold, deny and
//! allow lists, regex rules, an optional external moderation call), compiled into
//! `policy::guard::GuardPolicy`. A profile with any problem is left out.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::issues::{valid_name, yes};
use super::models::ModelRoute;
use super::providers::ProviderConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    #[serde(default)]
    pii: BTreeMap<String, String>,
    #[serde(default)]
    reversible: bool,
    #[serde(default)]
    injection: Option<RawInjection>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default = "yes")]
    output: bool,
    #[serde(default)]
    moderation: Option<RawModeration>,
    #[serde(default)]
    stream_hold_max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInjection {
    threshold: f32,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: String,
    pattern: String,
    action: String,
    #[serde(default)]
    on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModeration {
    provider: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    on_error: Option<String>,
}

/// An external moderation check (an OpenAI-compatible `/moderations` endpoint) run on inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    pub provider: String,
    pub model: String,
    pub timeout_ms: u64,
    /// Block the request when the moderation call fails or times out (fail closed).
    pub block_on_error: bool,
}

/// A named guard profile: the policy plus the optional external moderation call.
#[derive(Debug, Clone)]
pub struct GuardProfile {
    pub name: String,
    pub policy: policy::guard::GuardPolicy,
    pub moderation: Option<Moderation>,
}

/// The guard profiles, and that every model's `guard` names one of them.
pub(super) fn validate_guards(
    raw: BTreeMap<String, RawGuard>,
    providers: &BTreeMap<String, ProviderConfig>,
    models: &BTreeMap<String, ModelRoute>,
    issue: &mut impl FnMut(String, String),
) -> BTreeMap<String, GuardProfile> {
    let mut guards = BTreeMap::new();
    for (name, raw) in raw {
        let path = format!("guards.{name}");
        if let Some(profile) = validate_guard(&name, raw, &path, providers, issue) {
            guards.insert(name, profile);
        }
    }
    for (name, route) in models {
        if let Some(guard) = &route.guard {
            if !guards.contains_key(guard) {
                issue(format!("models.{name}.guard"), format!("unknown guard profile '{guard}'"));
            }
        }
    }
    guards
}

/// Bounds of `stream_hold_max_bytes`: below a kilobyte a key block could not be told from
/// prose; above a mebibyte a stream could sit silent for the whole response.
const STREAM_HOLD_MIN_BYTES: usize = 1024;
const STREAM_HOLD_MAX_BYTES: usize = 1 << 20;

fn validate_guard(
    name: &str,
    raw: RawGuard,
    path: &str,
    providers: &BTreeMap<String, ProviderConfig>,
    issue: &mut impl FnMut(String, String),
) -> Option<GuardProfile> {
    use policy::guard::{CustomRule, GuardAction, GuardPolicy, PiiKind, StreamHold};
    let action = |value: &str, at: String, issue: &mut dyn FnMut(String, String)| {
        let parsed = GuardAction::from_name(value);
        if parsed.is_none() {
            issue(at, format!("unknown action '{value}' (use redact, mask, block or log)"));
        }
        parsed
    };
    let mut ok = true;
    let mut pii = BTreeMap::new();
    for (kind, value) in &raw.pii {
        let names: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
        match PiiKind::from_name(kind) {
            Some(k) => match action(value, format!("{path}.pii.{kind}"), issue) {
                Some(a) => {
                    pii.insert(k, a);
                }
                None => ok = false,
            },
            None => {
                issue(format!("{path}.pii.{kind}"), format!("unknown PII type (use {})", names.join(", ")));
                ok = false;
            }
        }
    }
    let injection = match raw.injection {
        None => None,
        Some(inj) => {
            if !(0.0..=1.0).contains(&inj.threshold) || inj.threshold == 0.0 {
                issue(format!("{path}.injection.threshold"), format!("must be in (0, 1], got {}", inj.threshold));
                ok = false;
            }
            let a = match inj.action.as_deref() {
                None => Some(GuardAction::Block),
                Some(v @ ("block" | "log")) => GuardAction::from_name(v),
                Some(v) => {
                    issue(format!("{path}.injection.action"), format!("must be block or log, got '{v}'"));
                    None
                }
            };
            a.map(|a| (inj.threshold, a))
        }
    };
    let mut rules = Vec::new();
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let at = format!("{path}.rules[{i}]");
        if !valid_name(&rule.name) {
            issue(format!("{at}.name"), "use letters, digits, '-', '_' and '.'".into());
            ok = false;
        }
        let regex = match regex::RegexBuilder::new(&rule.pattern).size_limit(1 << 20).build() {
            Ok(r) => Some(r),
            Err(e) => {
                issue(format!("{at}.pattern"), format!("invalid regular expression: {e}"));
                ok = false;
                None
            }
        };
        let (input, output) = match rule.on.as_deref() {
            None | Some("both") => (true, true),
            Some("input") => (true, false),
            Some("output") => (false, true),
            Some(other) => {
                issue(format!("{at}.on"), format!("must be input, output or both, got '{other}'"));
                ok = false;
                (true, true)
            }
        };
        let a = action(&rule.action, format!("{at}.action"), issue);
        if let (Some(regex), Some(action)) = (regex, a) {
            rules.push(CustomRule { name: rule.name, regex, action, input, output });
        } else {
            ok = false;
        }
    }
    let moderation = match raw.moderation {
        None => None,
        Some(m) => {
            if !matches!(providers.get(&m.provider), Some(ProviderConfig::OpenAi(_))) {
                issue(format!("{path}.moderation.provider"), format!("'{}' is not a configured openai-kind provider", m.provider));
                ok = false;
            }
            let block_on_error = match m.on_error.as_deref() {
                None | Some("block") => true,
                Some("allow") => false,
                Some(other) => {
                    issue(format!("{path}.moderation.on_error"), format!("must be block or allow, got '{other}'"));
                    ok = false;
                    true
                }
            };
            Some(Moderation {
                provider: m.provider,
                model: m.model.unwrap_or_else(|| "omni-moderation-latest".into()),
                timeout_ms: m.timeout_ms.unwrap_or(2_000).clamp(1, 60_000),
                block_on_error,
            })
        }
    };
    let stream_hold_max_bytes = match raw.stream_hold_max_bytes {
        None => policy::guard::DEFAULT_STREAM_HOLD_MAX_BYTES,
        Some(n) if (STREAM_HOLD_MIN_BYTES..=STREAM_HOLD_MAX_BYTES).contains(&n) => n,
        Some(n) => {
            issue(
                format!("{path}.stream_hold_max_bytes"),
                format!("must be between {STREAM_HOLD_MIN_BYTES} and {STREAM_HOLD_MAX_BYTES}, got {n}"),
            );
            ok = false;
            policy::guard::DEFAULT_STREAM_HOLD_MAX_BYTES
        }
    };
    let policy = GuardPolicy {
        pii,
        reversible: raw.reversible,
        injection,
        deny: raw.deny.iter().map(|d| d.to_lowercase()).filter(|d| !d.is_empty()).collect(),
        allow: raw.allow,
        rules,
        scan_output: raw.output,
        stream: StreamHold::new(stream_hold_max_bytes),
    };
    ok.then(|| GuardProfile { name: name.to_string(), policy, moderation })
}
