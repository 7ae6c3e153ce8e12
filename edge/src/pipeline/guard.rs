//! The guard phase: which parts of an OpenAI request and response are text, and what
//! the guards did, for the usage event. The detection and the policies live in `policy::guard`.
//!
//! Scanned on the way in: every message's `content` (string or text parts), tool-call
//! `arguments`, and tool results. Image, audio and file parts are passed on unscanned and counted
//! in the report. On the way out: each choice's `content`, whole or streamed.

use std::collections::BTreeMap;
use std::rc::Rc;

use policy::guard::{BlockReason, Direction, GuardReport, Guards, Placeholders, StreamGuard};
use serde_json::{json, Map, Value};

use crate::config::{Config, GuardProfile, ModelRoute, Moderation, OpenAiProviderConfig, ProviderConfig};
use crate::error::GatewayError;
use crate::event::GuardSummary;
use crate::host::{with_timeout, Host, OutboundRequest};
use crate::http::read_body;
use crate::isolate::IsolateState;
use crate::openai::ChatRequest;
use crate::pipeline::context::RequestContext;

/// A streamed choice's `delta` object.
pub type Delta = Map<String, Value>;

/// One guarded text in a stream: a choice's content (`None`) or one of its tool calls' arguments.
pub type StreamKey = (u64, Option<u64>);

/// The guard state of one request.
pub struct RequestGuard {
    pub guards: Rc<Guards>,
    pub profile: GuardProfile,
    pub placeholders: Placeholders,
    pub report: GuardReport,
    /// The policy for streamed output: the profile's, or with `output: false` one that checks
    /// nothing and only restores placeholders. Built once, used for every chunk.
    stream_policy: policy::guard::GuardPolicy,
}

fn blocked(reason: BlockReason, report: &mut GuardReport, output: bool) -> GatewayError {
    let rule = reason.rule();
    report.blocked = Some(reason);
    GatewayError::ContentBlocked { rule, output }
}

impl RequestGuard {
    pub fn new(guards: Rc<Guards>, profile: GuardProfile) -> Self {
        let mut stream_policy = profile.policy.clone();
        if !stream_policy.scan_output {
            stream_policy.pii.clear();
            stream_policy.deny.clear();
            stream_policy.rules.clear();
            // Its compiled rule matcher belongs to the rules just cleared.
            stream_policy.stream = policy::guard::StreamHold::new(stream_policy.stream.max_bytes);
        }
        RequestGuard { guards, profile, placeholders: Placeholders::default(), report: GuardReport::default(), stream_policy }
    }

    fn check(&mut self, text: &str, direction: Direction) -> Result<Option<String>, BlockReason> {
        self.guards.apply(&self.profile.policy, text, direction, &mut self.placeholders, &mut self.report)
    }

    /// Scan and rewrite every text the request carries to the model.
    pub fn guard_input(&mut self, request: &mut ChatRequest) -> Result<(), GatewayError> {
        self.guard_messages(request)?;
        self.placeholders.freeze();
        Ok(())
    }

    fn guard_messages(&mut self, request: &mut ChatRequest) -> Result<(), GatewayError> {
        for message in &mut request.messages {
            let Some(message) = message.as_object_mut() else { continue };
            if let Some(content) = message.get_mut("content") {
                self.guard_content(content)?;
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                        if let Some(new) = self.check(arguments, Direction::Input).map_err(|r| blocked(r, &mut self.report, false))? {
                            *arguments = new;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn guard_content(&mut self, content: &mut Value) -> Result<(), GatewayError> {
        match content {
            Value::String(text) => {
                if let Some(new) = self.check(text, Direction::Input).map_err(|r| blocked(r, &mut self.report, false))? {
                    *text = new;
                }
            }
            Value::Array(parts) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(Value::String(text)) = part.get_mut("text") {
                                if let Some(new) = self.check(text, Direction::Input).map_err(|r| blocked(r, &mut self.report, false))? {
                                    *text = new;
                                }
                            }
                        }
                        Some(_) => self.report.images_unscanned += 1,
                        None => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The texts sent to the model, after redaction, for an external moderation check.
    pub fn input_texts(request: &ChatRequest) -> Vec<String> {
        let mut texts = Vec::new();
        for message in &request.messages {
            match message.get("content") {
                Some(Value::String(s)) if !s.is_empty() => texts.push(s.clone()),
                Some(Value::Array(parts)) => texts.extend(
                    parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).filter(|s| !s.is_empty()).map(str::to_string),
                ),
                _ => {}
            }
        }
        texts
    }

    /// Scan a whole chat completion (each choice's content and tool-call arguments): block,
    /// rewrite, and restore placeholders.
    pub fn guard_completion(&mut self, completion: &mut Value) -> Result<bool, GatewayError> {
        let mut changed = false;
        let Some(choices) = completion.get_mut("choices").and_then(Value::as_array_mut) else { return Ok(false) };
        for choice in choices {
            let Some(message) = choice.get_mut("message") else { continue };
            if let Some(Value::String(content)) = message.get_mut("content") {
                changed |= self.guard_output_text(content)?;
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                        changed |= self.guard_output_text(arguments)?;
                    }
                }
            }
        }
        Ok(changed)
    }

    fn guard_output_text(&mut self, text: &mut String) -> Result<bool, GatewayError> {
        let mut changed = false;
        if self.profile.policy.scan_output {
            if let Some(new) = self.check(text, Direction::Output).map_err(|r| blocked(r, &mut self.report, true))? {
                *text = new;
                changed = true;
            }
        }
        if self.profile.policy.reversible && !self.placeholders.is_empty() {
            let restored = self.placeholders.restore(text);
            if restored != *text {
                *text = restored;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Whether streamed responses need the per-chunk output guard.
    pub fn guards_stream(&self) -> bool {
        self.profile.policy.scan_output || (self.profile.policy.reversible && !self.placeholders.is_empty())
    }

    /// Guard one streamed chunk in place: each choice's content and tool-call argument deltas.
    /// Text held back is released with a later delta, at the latest with the choice's
    /// `finish_reason` chunk. `Err` ends the stream with an error event.
    pub fn guard_chunk(&mut self, streams: &mut BTreeMap<StreamKey, StreamGuard>, chunk: &mut Value) -> Result<(), GatewayError> {
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else { return Ok(()) };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else { continue };

            let piece = delta.get("content").and_then(Value::as_str).unwrap_or("").to_string();
            let guard = streams.entry((index, None)).or_default();
            let released = self.push(guard, &piece)?;
            if delta.contains_key("content") || !released.is_empty() {
                delta.insert("content".into(), Value::String(released));
            }
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for call in calls {
                    let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                        let guard = streams.entry((index, Some(tool))).or_default();
                        *arguments = self.push(guard, arguments)?;
                    }
                }
            }
            if finished {
                self.release_choice(streams, index, delta)?;
            }
        }
        Ok(())
    }

    /// The choice ended: put everything still held for it into this delta.
    fn release_choice(&mut self, streams: &mut BTreeMap<StreamKey, StreamGuard>, index: u64, delta: &mut Map<String, Value>) -> Result<(), GatewayError> {
        let keys: Vec<StreamKey> = streams.range((index, None)..=(index, Some(u64::MAX))).map(|(k, _)| *k).collect();
        for key in keys {
            let mut guard = streams.remove(&key).unwrap_or_default();
            let rest = self.finish(&mut guard)?;
            if rest.is_empty() {
                continue;
            }
            match key.1 {
                None => {
                    let content = delta.entry("content").or_insert_with(|| Value::String(String::new()));
                    if let Value::String(content) = content {
                        content.push_str(&rest);
                    }
                }
                Some(tool) => {
                    let calls = delta.entry("tool_calls").or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(calls) = calls {
                        calls.push(json!({ "index": tool, "function": { "arguments": rest } }));
                    }
                }
            }
        }
        Ok(())
    }

    /// The stream ended without `finish_reason` for some choices: a delta for each with the rest.
    pub fn release_unfinished(&mut self, streams: &mut BTreeMap<StreamKey, StreamGuard>) -> Result<Vec<(u64, Delta)>, GatewayError> {
        let mut choices: Vec<u64> = streams.keys().map(|(choice, _)| *choice).collect();
        choices.dedup();
        let mut out = Vec::new();
        for index in choices {
            let mut delta = Map::new();
            self.release_choice(streams, index, &mut delta)?;
            if !delta.is_empty() {
                out.push((index, delta));
            }
        }
        Ok(out)
    }

    fn push(&mut self, guard: &mut StreamGuard, piece: &str) -> Result<String, GatewayError> {
        guard
            .push(&self.guards, &self.stream_policy, piece, &mut self.placeholders, &mut self.report)
            .map_err(|r| blocked(r, &mut self.report, true))
    }

    pub fn finish(&mut self, guard: &mut StreamGuard) -> Result<String, GatewayError> {
        guard
            .finish(&self.guards, &self.stream_policy, &mut self.placeholders, &mut self.report)
            .map_err(|r| blocked(r, &mut self.report, true))
    }

    pub fn summary(&self) -> GuardSummary {
        GuardSummary::from_report(&self.profile.name, &self.report)
    }
}

/// The moderation call: `POST {base_url}/moderations` with the request's texts.
pub fn moderation_request(provider: &OpenAiProviderConfig, model: &str, texts: Vec<String>, api_key: Option<&str>) -> OutboundRequest {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(key) = api_key {
        headers.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    OutboundRequest {
        method: "POST",
        url: format!("{}/moderations", provider.base_url),
        headers,
        body: json!({ "model": model, "input": texts }).to_string().into_bytes(),
    }
}

/// Read a moderation response: `Some(true)` if any input was flagged, `None` if unreadable.
pub fn moderation_flagged(body: &[u8]) -> Option<bool> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let results = value.get("results")?.as_array()?;
    Some(results.iter().any(|r| r.get("flagged").and_then(Value::as_bool).unwrap_or(false)))
}

/// Guard the request's input: the profile that applies to this caller and model (none: nothing
/// to do), its detectors and rules over every text, then the optional moderation call. The
/// returned state guards the output and restores placeholders in it.
pub async fn guard_input<H: Host>(
    state: &IsolateState,
    config: &Config,
    ctx: &mut RequestContext,
    route: &ModelRoute,
    request: &mut ChatRequest,
    host: &H,
) -> Result<Option<RequestGuard>, GatewayError> {
    let Some(profile) = config.guard_for(ctx.caller.api_consumer(), route) else { return Ok(None) };
    let mut guard = RequestGuard::new(state.guards_for(config), profile.clone());
    let checked = guard.guard_input(request);
    ctx.guard = Some(guard.summary());
    checked?;
    if let Some(moderation) = guard.profile.moderation.clone() {
        let checked = moderate(config, host, &moderation, RequestGuard::input_texts(request), &mut guard).await;
        ctx.guard = Some(guard.summary());
        checked?;
    }
    Ok(Some(guard))
}

/// Guard a whole completion's output; `Ok(true)` when the guard changed it.
pub fn guard_output(ctx: &mut RequestContext, guard: Option<&mut RequestGuard>, completion: &mut Value) -> Result<bool, GatewayError> {
    let Some(guard) = guard else { return Ok(false) };
    let checked = guard.guard_completion(completion);
    ctx.guard = Some(guard.summary());
    checked
}

/// Ask the configured moderation endpoint about the request's texts (after redaction).
async fn moderate<H: Host>(
    config: &Config,
    host: &H,
    moderation: &Moderation,
    texts: Vec<String>,
    guard: &mut RequestGuard,
) -> Result<(), GatewayError> {
    if texts.is_empty() {
        return Ok(());
    }
    let Some(ProviderConfig::OpenAi(provider)) = config.providers.get(&moderation.provider) else {
        return Err(GatewayError::ModerationUnavailable);
    };
    let key = match &provider.api_key_secret {
        Some(name) => Some(host.secret(name).ok_or_else(|| GatewayError::MissingSecret { name: name.clone() })?),
        None => None,
    };
    let request = moderation_request(provider, &moderation.model, texts, key.as_deref());
    let call = async {
        let response = host.fetch(request).await.ok()?;
        if !(200..300).contains(&response.status) {
            return None;
        }
        let body = read_body(response.body, 1024 * 1024).await.ok()?;
        moderation_flagged(&body)
    };
    match with_timeout(host, moderation.timeout_ms, call).await.flatten() {
        Some(true) => {
            guard.report.record("moderation".into(), policy::guard::GuardAction::Block, Direction::Input);
            guard.report.blocked = Some(BlockReason::Rule("moderation".into()));
            Err(GatewayError::ContentBlocked { rule: "moderation".into(), output: false })
        }
        Some(false) => Ok(()),
        None if moderation.block_on_error => {
            guard.report.record("moderation_unavailable".into(), policy::guard::GuardAction::Block, Direction::Input);
            Err(GatewayError::ModerationUnavailable)
        }
        None => {
            guard.report.record("moderation_unavailable".into(), policy::guard::GuardAction::Log, Direction::Input);
            Ok(())
        }
    }
}
