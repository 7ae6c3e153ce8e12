//! OpenTelemetry traces and metrics of each API request, exported over OTLP/HTTP JSON
//! (docs/observability.md).
//!
//! Sans-IO like the rest of the core: the pipeline records plain facts into a [`Trace`] as the
//! request runs (ids, attempt and phase timings, request parameters, response facts, captured
//! content when opted in); when the request's usage event is emitted, [`export`] hands the trace
//! and the event to `Host::wait_until`, where [`span`] turns them into spans and metric data
//! points and [`otlp`] encodes them. Nothing of it runs before the response.
//!
//! Attribute names follow the OpenTelemetry GenAI semantic conventions as of
//! semantic-conventions v1.41.0 (status: Development).

pub mod otlp;
pub mod span;
pub mod trace;
pub mod traceparent;

use crate::config::{Config, OpenAiFlavor, ProviderConfig};
use crate::event::UsageEvent;
use crate::host::{with_timeout, Host, OutboundRequest};

pub use trace::{request_attributes, span_id, AttrValue, Attempt, Attrs, Message, Phase, Trace};

/// The trace of a request that just arrived, when telemetry is configured: a child of the
/// client's `traceparent` when it has a valid one, else a new trace (sampled by the ratio).
pub fn start<H: Host>(config: &Config, headers: &[(String, String)], host: &H) -> Option<Box<Trace>> {
    let settings = config.telemetry.clone()?;
    let parent = crate::http::find_header(headers, "traceparent").and_then(traceparent::parse);
    let (trace_id, sampled) = match parent {
        Some(p) => (p.trace_id, p.sampled()),
        None => {
            let id = (u128::from(host.random_u64()) << 64) | u128::from(host.random_u64());
            // Draw in [0, 1): 53 random bits.
            let draw = (host.random_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (id.max(1), draw < settings.sample_ratio)
        }
    };
    let tracestate = parent.and(crate::http::find_header(headers, "tracestate")).and_then(traceparent::tracestate);
    Some(Box::new(Trace {
        settings,
        trace_id,
        span_id: span_id(host),
        parent: parent.map(|p| p.span_id),
        tracestate,
        sampled,
        system: None,
        request: Vec::new(),
        response_id: None,
        response_model: None,
        finish_reasons: Vec::new(),
        attempts: Vec::new(),
        phases: Vec::new(),
        first_chunk_ms: None,
        capture_content: false,
        input_messages: None,
        output_messages: None,
    }))
}

/// A guard phase's attributes: its profile, how many actions it took, what blocked.
pub fn guard_attrs(summary: Option<&crate::event::GuardSummary>) -> Attrs {
    let Some(summary) = summary else { return Vec::new() };
    let mut attrs: Attrs = vec![
        ("gateway.guard.profile", summary.profile.as_str().into()),
        ("gateway.guard.actions", summary.actions.iter().map(|a| u64::from(a.count)).sum::<u64>().into()),
    ];
    if let Some(rule) = &summary.blocked {
        attrs.push(("gateway.guard.blocked", rule.as_str().into()));
    }
    attrs
}

/// The convention's `gen_ai.provider.name` for a configured provider: its well-known value
/// where the kind (or an OpenAI-compatible URL) identifies one, else the provider's own name.
pub fn provider_system(provider: &ProviderConfig, name: &str) -> String {
    let known = match provider {
        ProviderConfig::OpenAi(p) => match p.flavor {
            OpenAiFlavor::OpenAi => Some("openai"),
            OpenAiFlavor::Mistral => Some("mistral_ai"),
            OpenAiFlavor::Groq => Some("groq"),
            OpenAiFlavor::DeepSeek => Some("deepseek"),
            _ => known_host(&p.base_url),
        },
        ProviderConfig::Azure(_) => Some("azure.ai.openai"),
        ProviderConfig::Anthropic(_) => Some("anthropic"),
        ProviderConfig::Gemini(g) => Some(match g.api {
            crate::config::GeminiApi::GenerativeLanguage { .. } => "gcp.gemini",
            crate::config::GeminiApi::Vertex { .. } => "gcp.vertex_ai",
        }),
        ProviderConfig::Bedrock(_) => Some("aws.bedrock"),
        ProviderConfig::Cohere(_) => Some("cohere"),
        ProviderConfig::WorkersAiBinding(_) | ProviderConfig::Mock => None,
    };
    known.map(str::to_string).unwrap_or_else(|| name.to_string())
}

/// Well-known providers behind an OpenAI-compatible base URL.
fn known_host(base_url: &str) -> Option<&'static str> {
    let host = server_of(base_url)?.0;
    [
        ("api.openai.com", "openai"),
        ("api.x.ai", "x_ai"),
        ("api.perplexity.ai", "perplexity"),
        ("api.deepseek.com", "deepseek"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.groq.com", "groq"),
    ]
    .into_iter()
    .find(|(h, _)| *h == host)
    .map(|(_, system)| system)
}

/// `server.address` and `server.port` of a URL.
pub fn server_of(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':').map_or(Some(default), |p| p.parse().ok())?)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default),
        }
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// Hand the request's export to the background: its spans to `{endpoint}/v1/traces` (when
/// sampled) and its metric points to `{endpoint}/v1/metrics`. Failures are swallowed.
pub fn export<H: Host>(host: &H, trace: &Trace, event: UsageEvent, end_ms: u64) {
    let settings = trace.settings.clone();
    let traces = settings.traces && trace.sampled;
    if !traces && !settings.metrics {
        return;
    }
    let trace = trace.clone();
    let background = host.clone();
    host.wait_until(async move {
        let host = background;
        let bodies = build(&trace, &event, end_ms, traces);
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        for (name, secret) in &settings.headers {
            match host.secret(secret) {
                Some(value) => headers.push((name.clone(), value)),
                // Without its credential the collector would refuse: send nothing.
                None => return,
            }
        }
        for (path, body) in bodies {
            let request = OutboundRequest { method: "POST", url: format!("{}{path}", settings.endpoint), headers: headers.clone(), body: body.into_bytes() };
            let _ = with_timeout(&host, settings.timeout_ms, host.fetch(request)).await;
        }
    });
}

/// The export bodies of one request: (`/v1/traces`, spans) when `traces`, and
/// (`/v1/metrics`, points) when metrics are on.
pub fn build(trace: &Trace, event: &UsageEvent, end_ms: u64, traces: bool) -> Vec<(&'static str, String)> {
    let resource = otlp::Resource { service_name: &trace.settings.service_name };
    let mut out = Vec::with_capacity(2);
    if traces {
        let spans = span::spans(trace, event, end_ms);
        out.push(("/v1/traces", otlp::traces_body(&resource, trace, &spans)));
    }
    if trace.settings.metrics {
        let points = span::metrics(trace, event, end_ms);
        out.push(("/v1/metrics", otlp::metrics_body(&resource, &points)));
    }
    out
}

#[cfg(test)]
mod tests;
