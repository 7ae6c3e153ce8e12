//! The configuration as this isolate knows it: the KV document (key [`CONFIG_KV_KEY`]) or the
//! one shipped with the deployment, parsed and validated once per distinct text.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::{Config, ConfigErrors};
use crate::error::GatewayError;
use crate::host::Host;

/// The KV key that holds a configuration document overriding the shipped one.
pub const CONFIG_KV_KEY: &str = "config";

/// A configuration document and where it came from (which decides whose outbound policy applies).
#[derive(PartialEq, Eq)]
enum Source {
    Shipped(String),
    Override(String),
}

/// The parsed configuration and the text it came from.
struct LoadedConfig {
    text: Source,
    parsed: Result<Rc<Config>, ConfigErrors>,
    checked_at_ms: u64,
}

/// The cached configuration of one isolate.
#[derive(Default)]
pub struct ConfigCache {
    slot: RefCell<Option<LoadedConfig>>,
}

impl ConfigCache {
    /// The last good configuration, without any I/O (for response headers after a failure).
    pub fn cached(&self) -> Option<Rc<Config>> {
        self.slot.borrow().as_ref().and_then(|c| c.parsed.as_ref().ok().cloned())
    }

    /// The current configuration: cached, re-read from KV when stale, parsed only when changed.
    pub async fn current<H: Host>(&self, host: &H) -> Result<Rc<Config>, GatewayError> {
        let now = host.now_ms();
        if let Some(loaded) = self.slot.borrow().as_ref() {
            if let Ok(config) = &loaded.parsed {
                if now.saturating_sub(loaded.checked_at_ms) < config.limits.config_refresh_ms {
                    return Ok(config.clone());
                }
            }
        }
        let text = match host.kv_get(CONFIG_KV_KEY).await {
            Ok(Some(text)) => Some(Source::Override(text)),
            Ok(None) => host.shipped_config().map(Source::Shipped),
            Err(error) => {
                // Keep serving with the last good configuration rather than failing every request
                // while the store is unavailable; without one, fail closed.
                if let Some(config) = self.cached() {
                    return Ok(config);
                }
                return Err(GatewayError::ConfigUnavailable { detail: format!("key-value store: {}", error.0) });
            }
        };
        let Some(text) = text else {
            return Err(GatewayError::ConfigUnavailable {
                detail: "no configuration: set the GATEWAY_CONFIG variable or the KV key 'config'".into(),
            });
        };
        let mut slot = self.slot.borrow_mut();
        match slot.as_mut() {
            Some(loaded) if loaded.text == text => loaded.checked_at_ms = now,
            _ => {
                let parsed = match &text {
                    Source::Shipped(t) => Config::parse(t),
                    // Checked under the shipped document's outbound policy, never its own.
                    Source::Override(t) => Config::parse_override(t, host.shipped_config().as_deref()),
                }
                .map(Rc::new);
                *slot = Some(LoadedConfig { text, parsed, checked_at_ms: now });
            }
        }
        let loaded = slot.as_ref().expect("just set");
        loaded.parsed.clone().map_err(|errors| GatewayError::ConfigInvalid {
            errors: errors.0.iter().map(ToString::to_string).collect(),
        })
    }
}
