//! The record phase: one usage event per request, emitted when the request is finished however
//! it finished (an error, a whole response, a stream's end or the client's disconnect).

use crate::event::{Outcome, UsageEvent};
use crate::host::Host;
use crate::pipeline::context::RequestContext;

impl RequestContext {
    /// The usage event of this request as it ends with `status` and `outcome`.
    pub fn event(&self, status: u16, outcome: Outcome, error: Option<&'static str>, duration_ms: u64) -> UsageEvent {
        UsageEvent {
            request_id: self.request_id.clone(),
            operation: self.operation,
            consumer: self.caller.consumer.clone(),
            issuer: self.caller.issuer.clone(),
            tenant: self.caller.tenant.clone(),
            tier: self.caller.tier.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            upstream_model: self.upstream_model.clone(),
            stream: self.stream,
            status,
            outcome,
            error,
            error_detail: self.error_detail.clone(),
            // A hit used nothing upstream: what the stored call used is in `cache.saved`.
            usage: if self.cache_hit() { None } else { self.usage },
            provider_usage: self.provider_usage.clone(),
            quota: self.quota.clone(),
            route: self.route.clone().map(|mut route| {
                if let Some(usage) = &self.usage {
                    let table = route.carbon_table.as_deref().unwrap_or_else(|| policy::route::CarbonTable::shipped());
                    route.gco2e = Some(table.gco2e(usage.input_tokens, usage.output_tokens, route.params_b, &route.provider, &route.region));
                }
                route
            }),
            latency_ms: self.latency_ms.unwrap_or(duration_ms),
            duration_ms,
            country: self.location.country.clone(),
            colo: self.location.colo.clone(),
            guard: self.guard.clone(),
            cache: self.cache.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// The request was answered from the response cache.
    pub fn cache_hit(&self) -> bool {
        self.cache.as_ref().is_some_and(|c| matches!(c.status, crate::event::CacheStatus::Hit | crate::event::CacheStatus::SemanticHit))
    }
}

/// Emit the request's usage event now, and hand its telemetry export to the background.
pub fn record<H: Host>(host: &H, ctx: &RequestContext, status: u16, outcome: Outcome, error: Option<&'static str>) {
    let now = host.now_ms();
    let event = ctx.event(status, outcome, error, now.saturating_sub(ctx.started_ms));
    host.emit(&event);
    if let Some(config) = &ctx.config {
        crate::rollups::record(host, config, &event);
        crate::request_log::record(host, config, &event, ctx.caller.consumer_key(), ctx.log.as_ref());
    }
    if let Some(trace) = &ctx.trace {
        crate::telemetry::export(host, trace, event, now);
    }
}
