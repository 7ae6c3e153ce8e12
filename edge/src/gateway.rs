//! The gateway's entry point: one [`Gateway`] per isolate, [`Gateway::handle`] per request.
//!
//! It sends each request where it belongs (a CORS preflight answered here, `/admin/` to
//! [`crate::admin`], everything else through [`crate::pipeline`]), and finishes every response
//! the same way: a failure becomes an error in the route's own API format (Anthropic's on
//! `/v1/messages`, OpenAI's elsewhere) and is recorded, and every response carries its request id
//! and the CORS headers its origin is allowed.

use crate::error::GatewayError;
use crate::event::Outcome;
use crate::host::{Body, Host};
use crate::http::{Request, Response};
use crate::isolate::IsolateState;
use crate::pipeline::context::RequestContext;
use crate::pipeline::endpoint::Endpoint;
use crate::pipeline::record::record;

/// The response headers a browser may read under CORS.
const EXPOSED_HEADERS: &str = "x-request-id, x-gateway-trace-id, x-gateway-cache, x-gateway-cache-similarity, age, x-gateway-provider, x-gateway-model, x-gateway-route, x-gateway-target, x-gateway-region, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens";

/// The Workers cron schedule that evaluates the alert rules (wrangler.toml `[triggers] crons`).
pub const ALERTS_CRON: &str = "*/5 * * * *";

/// The gateway core. Create one per isolate/instance and call [`Gateway::handle`] per request.
#[derive(Default)]
pub struct Gateway {
    state: IsolateState,
}

impl Gateway {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle one request. Never panics on bad input; every failure is an error in the API's
    /// own format.
    pub async fn handle<H: Host>(&self, request: Request, host: &H) -> Response {
        let started_ms = host.now_ms();
        let mut ctx = RequestContext::new(format!("req_{:016x}", host.random_u64()), started_ms, &request);
        let origin = request.header("origin").map(str::to_string);
        let preflight = request.method == "OPTIONS";
        let anthropic_api = Endpoint::from_path(&request.path) == Some(Endpoint::Messages);
        let result = if preflight {
            self.preflight(&request, host).await
        } else if request.path == "/admin" || request.path.starts_with("/admin/") {
            ctx.operation = "admin";
            match self.state.config.current(host).await {
                Ok(config) => crate::admin::handle(&self.state, &config, request, host).await,
                Err(error) => Err(error),
            }
        } else {
            crate::pipeline::serve(&self.state, request, host, &mut ctx).await
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                if !preflight {
                    ctx.error_detail = error.log_detail();
                    if ctx.config.is_none() {
                        // Refused before the pipeline read the configuration: the rollups count
                        // it under the isolate's last configuration, if it ever read one.
                        ctx.config = self.state.config.cached();
                    }
                    record(host, &ctx, error.status(), Outcome::Failed, Some(error.label()));
                }
                if anthropic_api {
                    Response::error_with(&error, &crate::messages::anthropic_error_body(&error))
                } else {
                    Response::error(&error)
                }
            }
        };
        if let Some(trace) = &ctx.trace {
            response.headers.push(("x-gateway-trace-id".into(), trace.trace_id_hex()));
        }
        response.headers.push(("x-request-id".into(), ctx.request_id));
        if let (Some(origin), Some(config)) = (origin, self.state.config.cached()) {
            if let Some(cors) = &config.cors {
                if cors.allow_origins.iter().any(|o| o == "*" || *o == origin) {
                    response.headers.push(("access-control-allow-origin".into(), origin));
                    response.headers.push(("vary".into(), "origin".into()));
                    response.headers.push(("access-control-expose-headers".into(), EXPOSED_HEADERS.into()));
                }
            }
        }
        response
    }

    /// Scheduled work: refresh live carbon intensities when a feed is configured, then evaluate
    /// the alert rules (`crate::alerts`). Returns a one-line summary for the platform's log;
    /// never a token or a secret.
    pub async fn scheduled<H: Host>(&self, host: &H) -> String {
        self.scheduled_cron(host, "").await
    }

    /// The work of one Workers cron trigger: [`ALERTS_CRON`] evaluates the alert rules only, any
    /// other schedule refreshes the carbon intensities only, and `""` (no cron named) does both.
    pub async fn scheduled_cron<H: Host>(&self, host: &H, cron: &str) -> String {
        let config = match self.state.config.current(host).await {
            Ok(config) => config,
            Err(error) => return format!("scheduled: no usable configuration ({})", error.label()),
        };
        let mut parts = Vec::new();
        if cron != ALERTS_CRON {
            parts.push(match self.state.carbon.refresh(&config, host).await {
                Ok(report) => format!("scheduled: carbon intensities refreshed for {} regions, {} failed {:?}", report.updated.len(), report.failed.len(), report.failed),
                Err(crate::carbon::RefreshError::NotConfigured) => "scheduled: no carbon_feed configured; nothing to do".into(),
                Err(error) => format!("scheduled: carbon refresh stored nothing: {error:?}"),
            });
        }
        if cron.is_empty() || cron == ALERTS_CRON {
            parts.push(match crate::alerts::run(&self.state, &config, host).await {
                Ok(report) => {
                    let rules = report["rules"].as_array().map_or(&[][..], Vec::as_slice);
                    format!("alerts: {} rules evaluated, {} firing", rules.len(), rules.iter().filter(|r| r["firing"] == true).count())
                }
                Err(crate::alerts::EvaluateError::NotConfigured) => "alerts: none configured".into(),
                Err(crate::alerts::EvaluateError::Store) => "alerts: the rollups could not be read".into(),
            });
        }
        parts.join("; ")
    }

    /// A CORS preflight: answered at the edge for allowed origins, without authentication.
    async fn preflight<H: Host>(&self, request: &Request, host: &H) -> Result<Response, GatewayError> {
        let config = self.state.config.current(host).await?;
        let origin = request.header("origin").unwrap_or_default();
        let allowed = config.cors.as_ref().is_some_and(|c| c.allow_origins.iter().any(|o| o == "*" || o == origin));
        if !allowed {
            return Err(GatewayError::NotFound { path: request.path.clone() });
        }
        let headers = request
            .header("access-control-request-headers")
            .unwrap_or("authorization, content-type")
            .to_string();
        Ok(Response { status: 204, headers: Vec::new(), body: Body::Empty }
            .with_header("access-control-allow-methods", "GET, POST, OPTIONS")
            .with_header("access-control-allow-headers", headers)
            .with_header("access-control-max-age", "600"))
    }
}
