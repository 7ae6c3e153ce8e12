//! The `limits` section: the request size, how much of an upstream answer the gateway holds at
//! once (a whole body, one stream event) and the timeouts of the upstream call, the stream and
//! the configuration refresh, each kept within a fixed range (a value outside it is an issue).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_body_bytes: Option<u64>,
    max_upstream_body_bytes: Option<u64>,
    max_sse_event_bytes: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    stream_idle_timeout_ms: Option<u64>,
    config_refresh_ms: Option<u64>,
}

/// Size and time limits, already bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Largest upstream body held whole (a non-streamed answer, an error body is less): a larger
    /// one is a 502 instead of memory the isolate never gets back.
    pub max_upstream_body_bytes: usize,
    /// Largest single event of an upstream stream.
    pub max_sse_event_bytes: usize,
    pub upstream_timeout_ms: u64,
    pub stream_idle_timeout_ms: u64,
    pub config_refresh_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_upstream_body_bytes: 8 * 1024 * 1024,
            max_sse_event_bytes: crate::sse::DEFAULT_MAX_EVENT_BYTES,
            upstream_timeout_ms: 120_000,
            stream_idle_timeout_ms: 60_000,
            config_refresh_ms: 30_000,
        }
    }
}

const MAX_BODY_LIMIT: u64 = 100 * 1024 * 1024;

/// Bound each limit; an out-of-range value is an issue and leaves the default.
pub(super) fn validate_limits(raw: RawLimits, issue: &mut impl FnMut(String, String)) -> Limits {
    let mut limits = Limits::default();
    let bounded = |value: Option<u64>, default: u64, min: u64, max: u64, path: &str, issue: &mut dyn FnMut(String, String)| {
        match value {
            None => default,
            Some(v) if v < min || v > max => {
                issue(path.into(), format!("must be between {min} and {max}, got {v}"));
                default
            }
            Some(v) => v,
        }
    };
    limits.max_body_bytes = bounded(
        raw.max_body_bytes,
        limits.max_body_bytes as u64,
        1024,
        MAX_BODY_LIMIT,
        "limits.max_body_bytes",
        issue,
    ) as usize;
    limits.max_upstream_body_bytes = bounded(
        raw.max_upstream_body_bytes,
        limits.max_upstream_body_bytes as u64,
        64 * 1024,
        MAX_BODY_LIMIT,
        "limits.max_upstream_body_bytes",
        issue,
    ) as usize;
    limits.max_sse_event_bytes = bounded(
        raw.max_sse_event_bytes,
        limits.max_sse_event_bytes as u64,
        4 * 1024,
        16 * 1024 * 1024,
        "limits.max_sse_event_bytes",
        issue,
    ) as usize;
    limits.upstream_timeout_ms =
        bounded(raw.upstream_timeout_ms, limits.upstream_timeout_ms, 1, 900_000, "limits.upstream_timeout_ms", issue);
    limits.stream_idle_timeout_ms = bounded(
        raw.stream_idle_timeout_ms,
        limits.stream_idle_timeout_ms,
        1,
        900_000,
        "limits.stream_idle_timeout_ms",
        issue,
    );
    limits.config_refresh_ms =
        bounded(raw.config_refresh_ms, limits.config_refresh_ms, 0, 86_400_000, "limits.config_refresh_ms", issue);
    limits
}
