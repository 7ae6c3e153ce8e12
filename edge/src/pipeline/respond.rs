//! The respond phase: the upstream's answer becomes the client's response, streamed chunk by
//! chunk ([`crate::pipeline::stream`]) or whole, in the client's API (OpenAI chunks and objects,
//! or Anthropic events and messages on `/v1/messages`), with the output guarded, the usage
//! settled against the reservation, and the usage event recorded when the body ends.

use crate::cache::EntryKind;
use crate::config::{Config, ModelRoute};
use crate::error::GatewayError;
use crate::event::Outcome;
use crate::host::{Body, ByteStream, Host};
use crate::http::Response;
use crate::messages::{AnthropicEventEncoder, MessagesMeta};
use crate::pipeline::cache::Fill;
use crate::pipeline::context::RequestContext;
use crate::pipeline::dispatch::{openai_body, response_context, upstream_body, Dispatched};
use crate::pipeline::guard::{guard_output, RequestGuard};
use crate::pipeline::limit::{self, Charge, Reservation};
use crate::pipeline::record::record;
use crate::pipeline::stream::{translate_stream, ClientFormat, OutputGuard, StreamEnd, StreamPlan};
use crate::provider::{self, Translated};

/// The API the client speaks on this request.
pub enum ClientApi {
    OpenAi,
    Anthropic(MessagesMeta),
}

/// What the respond phase carries over from the earlier ones besides the upstream's answer.
pub struct Reply {
    pub client: ClientApi,
    /// The client asked for a stream.
    pub stream: bool,
    /// Remove usage from the client's stream (the gateway asked for it, the client did not).
    pub strip_usage: bool,
    pub guard: Option<RequestGuard>,
    pub reservation: Reservation,
    /// Store the answer in the response cache once it completed successfully.
    pub fill: Option<Fill>,
    /// The answer is a cache hit replayed in OpenAI format: no provider translation.
    pub from_cache: bool,
}

/// Answer a dispatched chat request.
pub async fn respond_chat<H: Host>(
    config: &Config,
    ctx: &mut RequestContext,
    call: Dispatched<'_>,
    reply: Reply,
    host: &H,
) -> Result<Response, GatewayError> {
    let Dispatched { route, provider, upstream, deadline, route_header, scrub } = call;
    let Reply { client, stream, strip_usage, mut guard, mut reservation, fill, from_cache } = reply;
    // Charge the price of the target that served the request (routing may have moved it).
    reservation.served_by(&route.upstream_model);
    let mut headers: Vec<(String, String)> = reservation.headers(host.now_ms()).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    if let Some(value) = route_header {
        headers.push(("x-gateway-route".into(), value));
        if let Some(summary) = &ctx.route {
            headers.push(("x-gateway-target".into(), policy::route::header_safe(&summary.target)));
            headers.push(("x-gateway-region".into(), policy::route::header_safe(&summary.region)));
        }
    }
    let response_ctx = response_context(host, ctx, &route);
    let max_event_bytes = config.limits.max_sse_event_bytes;
    let decoder = if from_cache { None } else { provider::stream_decoder(provider, &response_ctx, max_event_bytes) };
    // A translating provider streams in its own format (SSE, AWS event-stream); an
    // OpenAI-compatible one must answer a streamed request with SSE to be streamed on.
    let streams = decoder.is_some() || upstream.header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
    if stream && streams {
        let body = match upstream.body {
            Body::Stream(s) => s,
            Body::Bytes(b) => Box::pin(futures::stream::iter([Ok(b)])) as ByteStream,
            Body::Empty => Box::pin(futures::stream::empty()) as ByteStream,
        };
        // Telemetry: when the first chunk arrived; the whole answer when its content is captured.
        let first_chunk = std::rc::Rc::new(std::cell::Cell::new(None));
        let body = match ctx.trace.is_some() {
            true => {
                let (seen, clock) = (first_chunk.clone(), host.clone());
                Box::pin(futures::StreamExt::inspect(body, move |_| {
                    if seen.get().is_none() {
                        seen.set(Some(clock.now_ms()));
                    }
                })) as ByteStream
            }
            false => body,
        };
        let capture = ctx.trace.as_ref().is_some_and(|t| t.capture_content && t.sampled);
        let plan = StreamPlan {
            provider: route.provider.clone(),
            strip_usage,
            idle_timeout_ms: config.limits.stream_idle_timeout_ms,
            decoder,
            max_event_bytes,
            scrub,
            client: match &client {
                ClientApi::OpenAi => ClientFormat::OpenAi,
                ClientApi::Anthropic(meta) => ClientFormat::Other(Box::new(AnthropicEventEncoder::new(
                    &meta.model,
                    &response_ctx.id.replace("chatcmpl-", "msg_"),
                ))),
            },
            count_delivered: !reservation.is_empty(),
            record_answer: fill.is_some() || capture || ctx.log.is_some(),
        };
        let mut finished = ctx.clone();
        let event_host = host.clone();
        let charged = reservation.clone();
        let (settled, settlement) = futures::channel::oneshot::channel::<Charge>();
        let body = translate_stream(body, host.clone(), plan, guard.map(OutputGuard::new), move |end: StreamEnd| {
            finished.usage = end.usage;
            finished.provider_usage = end.raw_usage;
            if end.guard.is_some() {
                finished.guard = end.guard;
                if let Some(trace) = finished.trace.as_mut() {
                    // The stream was guarded from its head to its end.
                    let head = finished.started_ms + finished.latency_ms.unwrap_or(0);
                    trace.phase(&event_host, "gateway.guard.output", head, crate::telemetry::guard_attrs(finished.guard.as_ref()));
                }
            }
            if let Some(trace) = finished.trace.as_mut() {
                trace.first_chunk_ms = first_chunk.get().map(|at: u64| at.saturating_sub(finished.started_ms));
                if let Some(answer) = &end.answer {
                    trace.note_response(answer);
                }
            }
            // Charge what the provider reported. Without it, a client that left is charged what
            // it was sent; a stream that failed, its reservation.
            let charge = match (&end.usage, end.outcome) {
                (None, Outcome::ClientDisconnected) => charged.delivered_charge(end.delivered_output_tokens),
                (usage, _) => charged.charge(usage.as_ref()),
            };
            if !charged.is_empty() {
                finished.quota = Some(charged.summary(&charge));
            }
            if let (Some(log), Some(answer)) = (finished.log.as_mut(), &end.answer) {
                log.response = Some(answer.clone());
            }
            record(&event_host, &finished, 200, end.outcome, end.error);
            if let (Some(fill), Some(mut answer)) = (fill, end.answer) {
                // The decoder's usage is exact (cache writes included); the body carries it for replays.
                if let Some(usage) = &end.usage {
                    answer["usage"] = usage.to_openai();
                }
                fill.store(&event_host, &finished, EntryKind::Chat, answer, end.usage);
            }
            let _ = settled.send(charge);
        });
        if !reservation.is_empty() {
            // Registered now, while the request is alive: the end may come when the platform
            // drops the body after the client went away, too late to register new work.
            let settle_host = host.clone();
            host.wait_until(async move {
                if let Ok(charge) = settlement.await {
                    limit::settle(reservation, charge, settle_host).await;
                }
            });
        }
        let mut response = Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream; charset=utf-8".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: Body::Stream(body),
        };
        response.headers.extend(headers);
        return Ok(tag(response, &route));
    }
    let answered = async {
        let bytes = upstream_body(host, &route.provider, upstream.body, deadline, ctx, config.limits.max_upstream_body_bytes).await?;
        match provider::chat_response(provider, &bytes, &response_ctx).filter(|_| !from_cache) {
            Some(translated) => Ok((translated?, None)),
            None => Ok((openai_body(&route.provider, &bytes)?, Some(bytes))),
        }
    };
    let (translated, forward) = match answered.await {
        Ok(answer) => answer,
        Err(error) => {
            limit::release(&reservation, host).await;
            return Err(error);
        }
    };
    let charge = reservation.charge(translated.usage.as_ref());
    if !reservation.is_empty() {
        ctx.quota = Some(reservation.summary(&charge));
    }
    let usage = translated.usage;
    let cached = fill.map(|fill| (fill, translated.body.clone()));
    let response = match &client {
        ClientApi::OpenAi => whole_response(host, translated, forward, ctx, guard.as_mut()),
        ClientApi::Anthropic(meta) => {
            let mut translated = translated;
            let started = host.now_ms();
            let checked = guard_output(ctx, guard.as_mut(), &mut translated.body);
            observe_output(host, ctx, guard.is_some(), started, &translated.body);
            checked?;
            let message = crate::messages::to_anthropic_message(&translated.body, &meta.model, usage);
            whole_response(host, Translated { body: message, ..translated }, None, ctx, None)
        }
    };
    host.wait_until(limit::settle(reservation, charge, host.clone()));
    if let (Some((fill, body)), Ok(_)) = (cached, &response) {
        fill.store(host, ctx, EntryKind::Chat, body, usage);
    }
    response.map(|mut r| {
        r.headers.extend(headers);
        tag(r, &route)
    })
}

/// Answer with a whole (translated) response: record its usage, guard its output, emit the
/// usage event. `forward` is the upstream's own OpenAI-format body, sent byte for byte unless a
/// guard changed it.
pub fn whole_response<H: Host>(
    host: &H,
    translated: Translated,
    forward: Option<Vec<u8>>,
    ctx: &mut RequestContext,
    guard: Option<&mut RequestGuard>,
) -> Result<Response, GatewayError> {
    ctx.usage = translated.usage;
    ctx.provider_usage = translated.raw_usage;
    let mut value = translated.body;
    let (started, guarded) = (host.now_ms(), guard.is_some());
    let checked = guard_output(ctx, guard, &mut value);
    observe_output(host, ctx, guarded, started, &value);
    let modified = checked? || forward.is_none();
    if let Some(log) = ctx.log.as_mut() {
        log.response = Some(value.clone());
    }
    record(host, ctx, 200, Outcome::Completed, None);
    match forward {
        Some(bytes) if !modified => Ok(Response::json_bytes(200, bytes)),
        _ => Ok(Response::json(200, &value)),
    }
}

/// Telemetry of a whole answer: the output guard's span (when one ran) and what the response
/// says of itself.
fn observe_output<H: Host>(host: &H, ctx: &mut RequestContext, guarded: bool, started: u64, body: &serde_json::Value) {
    let Some(trace) = ctx.trace.as_mut() else { return };
    if guarded {
        trace.phase(host, "gateway.guard.output", started, crate::telemetry::guard_attrs(ctx.guard.as_ref()));
    }
    trace.note_response(body);
}

/// Say which provider and upstream model answered.
pub fn tag(response: Response, route: &ModelRoute) -> Response {
    response
        .with_header("x-gateway-provider", route.provider.clone())
        .with_header("x-gateway-model", route.upstream_model.clone())
}
