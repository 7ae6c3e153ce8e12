use std::rc::Rc;

use serde_json::Value;

use super::span::{metrics, spans, SpanKind};
use super::*;
use crate::config::Telemetry;
use crate::openai::ChatRequest;
use crate::event::Outcome;

fn settings() -> Rc<Telemetry> {
    Rc::new(Telemetry {
        endpoint: "https://collector.test:4318".into(),
        headers: Vec::new(),
        timeout_ms: 1000,
        service_name: "gw".into(),
        traces: true,
        metrics: true,
        sample_ratio: 1.0,
        capture_content: false,
        consumers: Default::default(),
        models: Default::default(),
    })
}

fn trace() -> Trace {
    Trace {
        settings: settings(),
        trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
        span_id: 0x1111,
        parent: Some(0x00f067aa0ba902b7),
        tracestate: Some("congo=t61".into()),
        sampled: true,
        system: Some("openai".into()),
        request: vec![("gen_ai.request.temperature", AttrValue::Double(0.2)), ("gen_ai.request.max_tokens", AttrValue::Int(50))],
        response_id: Some("chatcmpl-1".into()),
        response_model: Some("gpt-4o-mini-2024-07-18".into()),
        finish_reasons: vec!["stop".into()],
        attempts: vec![
            Attempt { span_id: 0x2222, start_ms: 1_010, end_ms: 1_100, provider: "primary".into(), system: "openai".into(), model: "gpt-4o-mini".into(), server: Some(("api.openai.com".into(), 443)), status: Some(503), error: Some("upstream_error") },
            Attempt { span_id: 0x3333, start_ms: 1_100, end_ms: 1_300, provider: "backup".into(), system: "anthropic".into(), model: "claude".into(), server: Some(("api.anthropic.com".into(), 443)), status: Some(200), error: None },
        ],
        phases: vec![Phase { span_id: 0x4444, name: "gateway.guard.input", start_ms: 1_001, end_ms: 1_002, attrs: Vec::new() }],
        first_chunk_ms: None,
        capture_content: false,
        input_messages: None,
        output_messages: None,
    }
}

fn event() -> UsageEvent {
    crate::testing::sample_usage_event()
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

#[test]
fn the_server_span_is_named_by_operation_and_model_and_carries_the_conventions_attributes() {
    let spans = spans(&trace(), &event(), 1_400);
    let server = &spans[0];
    assert_eq!(server.name, "chat smart");
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!((server.start_ms, server.end_ms), (1_000, 1_400));
    let get = |k: &str| server.attrs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
    assert_eq!(get("gen_ai.operation.name"), Some("chat".into()));
    assert_eq!(get("gen_ai.provider.name"), Some("openai".into()), "the trace's system wins over the configured name");
    assert_eq!(get("gen_ai.request.model"), Some("smart".into()));
    assert_eq!(get("gen_ai.response.model"), Some("gpt-4o-mini-2024-07-18".into()));
    assert_eq!(get("gen_ai.response.id"), Some("chatcmpl-1".into()));
    assert_eq!(get("gen_ai.response.finish_reasons"), Some(AttrValue::Strs(vec!["stop".into()])));
    assert_eq!(get("gen_ai.usage.input_tokens"), Some(AttrValue::Int(12)));
    assert_eq!(get("gen_ai.usage.output_tokens"), Some(AttrValue::Int(5)));
    assert_eq!(get("gen_ai.usage.cache_read.input_tokens"), Some(AttrValue::Int(4)));
    assert_eq!(get("gen_ai.usage.reasoning.output_tokens"), None, "zero is not reported");
    assert_eq!(get("server.address"), Some("api.anthropic.com".into()), "the attempt that answered");
    assert_eq!(get("gateway.cache.status"), Some("miss".into()));
    assert_eq!(get("gateway.consumer"), Some("web".into()));
    assert_eq!(get("error.type"), None);
    assert!(server.error.is_none());
    let attempts: Vec<&str> = spans.iter().filter(|s| s.kind == SpanKind::Client).map(|s| s.name.as_str()).collect();
    assert_eq!(attempts, ["chat gpt-4o-mini", "chat claude"]);
    assert_eq!(spans[1].error.as_deref(), Some("upstream_error"));
    assert!(spans[1..].iter().all(|s| s.parent == Some(0x1111)));
}

#[test]
fn a_failure_sets_error_type_and_status_error() {
    let mut failed = event();
    failed.outcome = Outcome::Failed;
    failed.error = Some("rate_limit_exceeded");
    failed.status = 429;
    failed.usage = None;
    let spans = spans(&trace(), &failed, 1_400);
    assert!(spans[0].attrs.contains(&("error.type", "rate_limit_exceeded".into())));
    assert_eq!(spans[0].error.as_deref(), Some("rate_limit_exceeded"));
    let points = metrics(&trace(), &failed, 1_400);
    assert!(points.iter().any(|p| p.name == "gateway.limit.rejections"));
    assert!(!points.iter().any(|p| p.name == "gen_ai.client.token.usage"), "no usage, no token points");
}

#[test]
fn the_traces_body_follows_the_otlp_json_mapping() {
    let trace = trace();
    let spans = spans(&trace, &event(), 1_400);
    let body: Value = serde_json::from_str(&otlp::traces_body(&otlp::Resource { service_name: "gw" }, &trace, &spans)).unwrap();
    let resource = &body["resourceSpans"][0]["resource"]["attributes"];
    assert_eq!(attr(resource, "service.name").unwrap(), &serde_json::json!({ "stringValue": "gw" }));
    let list = body["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    let server = &list[0];
    assert_eq!(server["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server["spanId"], "0000000000001111");
    assert_eq!(server["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(server["traceState"], "congo=t61");
    assert_eq!(server["kind"], 2);
    assert_eq!(server["startTimeUnixNano"], "1000000000");
    assert_eq!(server["endTimeUnixNano"], "1400000000");
    assert_eq!(attr(&server["attributes"], "gen_ai.usage.input_tokens").unwrap(), &serde_json::json!({ "intValue": "12" }));
    assert_eq!(attr(&server["attributes"], "gen_ai.request.temperature").unwrap(), &serde_json::json!({ "doubleValue": 0.2 }));
    assert_eq!(attr(&server["attributes"], "gateway.stream").unwrap(), &serde_json::json!({ "boolValue": false }));
    assert_eq!(
        attr(&server["attributes"], "gen_ai.response.finish_reasons").unwrap(),
        &serde_json::json!({ "arrayValue": { "values": [{ "stringValue": "stop" }] } })
    );
    assert_eq!(server["status"], serde_json::json!({}));
    assert_eq!(list[1]["kind"], 3);
    assert_eq!(list[1]["status"], serde_json::json!({ "code": 2, "message": "upstream_error" }));
    assert!(list[1].get("traceState").is_none());
    assert_eq!(list[3]["kind"], 1);
}

#[test]
fn the_metrics_body_has_delta_histograms_with_the_conventions_buckets() {
    let mut streamed = trace();
    streamed.first_chunk_ms = Some(250);
    let mut e = event();
    e.stream = true;
    let points = metrics(&streamed, &e, 1_400);
    let body: Value = serde_json::from_str(&otlp::metrics_body(&otlp::Resource { service_name: "gw" }, &points)).unwrap();
    let metrics = body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].as_array().unwrap();
    let tokens: Vec<&Value> = metrics.iter().filter(|m| m["name"] == "gen_ai.client.token.usage").collect();
    assert_eq!(tokens.len(), 2);
    let input = tokens.iter().find(|m| attr(&m["histogram"]["dataPoints"][0]["attributes"], "gen_ai.token.type").unwrap()["stringValue"] == "input").unwrap();
    assert_eq!(input["unit"], "{token}");
    let h = &input["histogram"];
    assert_eq!(h["aggregationTemporality"], 1);
    let dp = &h["dataPoints"][0];
    assert_eq!(dp["count"], "1");
    assert_eq!(dp["sum"], 12.0);
    assert_eq!(dp["explicitBounds"].as_array().unwrap().len(), 14);
    let counts: Vec<&str> = dp["bucketCounts"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(counts.len(), 15);
    assert_eq!(counts.iter().position(|c| *c == "1"), Some(2), "12 tokens fall in (4, 16]");
    assert_eq!(attr(&dp["attributes"], "gateway.consumer").unwrap()["stringValue"], "web");
    let duration = metrics.iter().find(|m| m["name"] == "gen_ai.client.operation.duration").unwrap();
    assert_eq!(duration["unit"], "s");
    assert_eq!(duration["histogram"]["dataPoints"][0]["sum"], 0.4);
    let ttfc = metrics.iter().find(|m| m["name"] == "gen_ai.client.operation.time_to_first_chunk").unwrap();
    assert_eq!(ttfc["histogram"]["dataPoints"][0]["sum"], 0.25);
    let requests = metrics.iter().find(|m| m["name"] == "gateway.requests").unwrap();
    assert_eq!(requests["sum"]["dataPoints"][0]["asInt"], "1");
    assert_eq!(requests["sum"]["isMonotonic"], true);
    assert_eq!(attr(&requests["sum"]["dataPoints"][0]["attributes"], "gateway.outcome").unwrap()["stringValue"], "completed");
    for m in metrics {
        let points = m.get("histogram").or(m.get("sum")).unwrap()["dataPoints"].as_array().unwrap();
        for p in points {
            let keys: Vec<&str> = p["attributes"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
            assert!(!keys.contains(&"gateway.request_id"), "metric attributes stay bounded: {keys:?}");
        }
    }
}

#[test]
fn token_subjects_do_not_label_metrics() {
    let mut e = event();
    e.issuer = Some("https://idp".into());
    e.consumer = Some("user-123".into());
    let points = metrics(&trace(), &e, 1_400);
    assert!(points.iter().all(|p| !p.attrs.iter().any(|(k, _)| *k == "gateway.consumer")));
}

#[test]
fn providers_map_to_the_conventions_well_known_names() {
    use crate::config::{AnthropicConfig, OpenAiProviderConfig};
    let openai = |flavor, url: &str| ProviderConfig::OpenAi(OpenAiProviderConfig { base_url: url.into(), api_key_secret: None, timeout_ms: None, flavor });
    assert_eq!(provider_system(&openai(OpenAiFlavor::OpenAi, "https://api.openai.com/v1"), "x"), "openai");
    assert_eq!(provider_system(&openai(OpenAiFlavor::Mistral, "https://api.mistral.ai/v1"), "x"), "mistral_ai");
    assert_eq!(provider_system(&openai(OpenAiFlavor::Compatible, "https://api.x.ai/v1"), "x"), "x_ai");
    assert_eq!(provider_system(&openai(OpenAiFlavor::Compatible, "http://10.0.0.1:8000/v1"), "local"), "local");
    let anthropic = ProviderConfig::Anthropic(AnthropicConfig { base_url: "https://api.anthropic.com".into(), api_key_secret: "K".into(), version: "v".into(), timeout_ms: None });
    assert_eq!(provider_system(&anthropic, "claude"), "anthropic");
    assert_eq!(provider_system(&ProviderConfig::Mock, "mock"), "mock");
}

#[test]
fn server_address_and_port_come_from_the_url() {
    assert_eq!(server_of("https://api.openai.com/v1/chat"), Some(("api.openai.com".into(), 443)));
    assert_eq!(server_of("http://127.0.0.1:8787/v1"), Some(("127.0.0.1".into(), 8787)));
    assert_eq!(server_of("http://[::1]:9000/x"), Some(("::1".into(), 9000)));
    assert_eq!(server_of("https://user:pw@Host.Example/x"), Some(("host.example".into(), 443)));
    assert_eq!(server_of("not a url"), None);
}

#[test]
fn request_parameters_become_request_attributes() {
    let request: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "m", "messages": [], "max_tokens": 64, "temperature": 0.5, "top_p": 1, "stop": ["a", "b"], "seed": 7,
        "frequency_penalty": 0.1, "presence_penalty": -0.2, "n": 2
    }))
    .unwrap();
    let attrs = request_attributes(&request);
    let keys: Vec<&str> = attrs.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "gen_ai.request.max_tokens",
            "gen_ai.request.temperature",
            "gen_ai.request.top_p",
            "gen_ai.request.frequency_penalty",
            "gen_ai.request.presence_penalty",
            "gen_ai.request.seed",
            "gen_ai.request.stop_sequences",
            "gen_ai.request.choice.count"
        ]
    );
    let bare: ChatRequest = serde_json::from_value(serde_json::json!({ "model": "m", "messages": [] })).unwrap();
    assert!(request_attributes(&bare).is_empty());
}

#[test]
fn captured_content_is_redacted_and_in_the_conventions_shape() {
    let mut t = trace();
    t.capture_content = true;
    t.input_messages = Some(vec![Message { role: "user".into(), text: "my key is sk-proj-abcdefghijklmnopqrstuvwxyz0123 and mail bob@example.com".into(), finish_reason: None }]);
    t.note_response(&serde_json::json!({ "choices": [] }));
    let server = &spans(&t, &event(), 1_400)[0];
    let (_, AttrValue::Str(input)) = server.attrs.iter().find(|(k, _)| *k == "gen_ai.input.messages").unwrap() else { panic!() };
    assert!(!input.contains("sk-proj-abc") && !input.contains("bob@example.com"), "{input}");
    let parsed: Value = serde_json::from_str(input).unwrap();
    assert_eq!(parsed[0]["role"], "user");
    assert_eq!(parsed[0]["parts"][0]["type"], "text");
    assert!(parsed[0]["parts"][0]["content"].as_str().unwrap().contains("[SECRET]"), "{input}");
}
