//! OpenTelemetry export through the whole pipeline against the in-memory host: the collector is
//! a scripted upstream, so the test reads what the gateway POSTed to `/v1/traces` and
//! `/v1/metrics`, and what trace context the provider calls carried.

use edge::testing::{MemoryHost, Scripted};
use edge::{Body, FetchError, Gateway, OutboundResponse, Request, RequestFacts};
use serde_json::{json, Value};

const KEY: &str = "sk-client-web";
const OTHER_KEY: &str = "sk-client-ops";
const PROVIDER_SECRET: &str = "sk-provider-secret-value";
const OTLP_TOKEN: &str = "Bearer otlp-collector-token";
const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(telemetry: Option<Value>) -> String {
    let mut doc = json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000 },
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "web", "key_sha256": hex_sha256(KEY), "tenant": "acme" },
            { "id": "ops", "key_sha256": hex_sha256(OTHER_KEY) }
        ]},
        "guards": { "mask-email": { "pii": { "email": "redact" } } },
        "providers": {
            "primary": { "kind": "openai", "base_url": "https://primary.test/v1", "api_key_secret": "UP_KEY" },
            "backup": { "kind": "openai", "base_url": "https://backup.test:8443/v1", "api_key_secret": "UP_KEY" }
        },
        "models": {
            "gpt": { "provider": "primary", "upstream_model": "gpt-4o-mini" },
            "guarded": { "provider": "primary", "upstream_model": "gpt-4o-mini", "guard": "mask-email" },
            "smart": {
                "targets": [
                    { "id": "a", "provider": "primary", "upstream_model": "gpt-4o-mini", "region": "us-east-1", "jurisdiction": "us" },
                    { "id": "b", "provider": "backup", "upstream_model": "gpt-4o", "region": "eu-west-1", "jurisdiction": "eu" }
                ],
                "strategy": { "type": "ordered" },
                "max_attempts": 2
            }
        }
    });
    if let Some(t) = telemetry {
        doc["telemetry"] = t;
    }
    doc.to_string()
}

fn telemetry() -> Value {
    json!({
        "otlp": { "endpoint": "https://collector.test:4318", "headers": { "Authorization": { "secret": "OTLP_TOKEN" } }, "service_name": "gw-test" },
        "consumers": { "ops": { "capture_content": true } }
    })
}

fn ok_body() -> OutboundResponse {
    let body = json!({
        "id": "chatcmpl-upstream-42", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Sure, write to alice@example.com" }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    });
    OutboundResponse { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: Body::Bytes(body.to_string().into_bytes()) }
}

fn failing() -> OutboundResponse {
    OutboundResponse { status: 503, headers: Vec::new(), body: Body::Bytes(b"{}".to_vec()) }
}

/// A host whose upstreams answer by host name (the collector accepts everything).
fn host(telemetry: Option<Value>, primary_fails: bool) -> MemoryHost {
    MemoryHost::new()
        .with_config(&config(telemetry))
        .with_secret("UP_KEY", PROVIDER_SECRET)
        .with_secret("OTLP_TOKEN", OTLP_TOKEN)
        .with_upstream(move |request| match request.url.split('/').nth(2).unwrap_or_default() {
            "collector.test:4318" => Scripted::Respond(OutboundResponse { status: 200, headers: Vec::new(), body: Body::Bytes(b"{}".to_vec()) }),
            "primary.test" if primary_fails => Scripted::Respond(failing()),
            "primary.test" | "backup.test:8443" => Scripted::Respond(ok_body()),
            _ => Scripted::Fail(FetchError::Connect("unknown host".into())),
        })
}

fn chat(key: &str, model: &str, content: &str, traceparent: Option<&str>) -> Request {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string()), ("authorization".to_string(), format!("Bearer {key}"))];
    if let Some(tp) = traceparent {
        headers.push(("traceparent".into(), tp.into()));
        headers.push(("tracestate".into(), "congo=t61rcWkgMzE".into()));
    }
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers,
        body: Body::Bytes(json!({ "model": model, "messages": [{ "role": "user", "content": content }], "temperature": 0.3, "max_tokens": 20 }).to_string().into_bytes()),
        facts: RequestFacts::default(),
    }
}

/// Run one request and its background work; the response's headers and every recorded call.
fn run(host: &MemoryHost, request: Request) -> (u16, Vec<(String, String)>, Vec<edge::testing::RecordedRequest>) {
    let gateway = Gateway::new();
    let response = host.block_on(gateway.handle(request, host));
    let status = response.status;
    let headers = response.headers.clone();
    host.block_on(async {
        let _ = edge::testing::collect_body(response.body).await;
        host.run_background().await;
    });
    (status, headers, host.requests())
}

fn posted<'a>(requests: &'a [edge::testing::RecordedRequest], path: &str) -> Vec<&'a edge::testing::RecordedRequest> {
    requests.iter().filter(|r| r.url == format!("https://collector.test:4318{path}")).collect()
}

fn spans(body: &Value) -> Vec<Value> {
    body["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().clone()
}

fn attr(span: &Value, key: &str) -> Option<Value> {
    span["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
}

#[test]
fn a_chat_request_exports_its_server_span_with_the_conventions_attributes() {
    let host = host(Some(telemetry()), false);
    let (status, headers, requests) = run(&host, chat(KEY, "gpt", "hello", None));
    assert_eq!(status, 200);
    let traces = posted(&requests, "/v1/traces");
    assert_eq!(traces.len(), 1, "one batched POST per request");
    assert_eq!(traces[0].method, "POST");
    assert_eq!(traces[0].header("content-type"), Some("application/json"));
    assert_eq!(traces[0].header("authorization"), Some(OTLP_TOKEN), "the collector header comes from its secret");
    let body = traces[0].json();
    let resource = &body["resourceSpans"][0]["resource"];
    assert!(resource["attributes"].as_array().unwrap().iter().any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "gw-test"));
    let spans = spans(&body);
    let server = spans.iter().find(|s| s["kind"] == 2).expect("a server span");
    assert_eq!(server["name"], "chat gpt");
    assert!(server.get("parentSpanId").is_none(), "no client trace: a new root");
    assert_eq!(attr(server, "gen_ai.operation.name").unwrap()["stringValue"], "chat");
    assert_eq!(attr(server, "gen_ai.provider.name").unwrap()["stringValue"], "openai", "the kind gives the well-known name");
    assert_eq!(attr(server, "gateway.provider").unwrap()["stringValue"], "primary");
    assert_eq!(attr(server, "gen_ai.request.model").unwrap()["stringValue"], "gpt");
    assert_eq!(attr(server, "gen_ai.request.temperature").unwrap()["doubleValue"], 0.3);
    assert_eq!(attr(server, "gen_ai.request.max_tokens").unwrap()["intValue"], "20");
    assert_eq!(attr(server, "gen_ai.response.model").unwrap()["stringValue"], "gpt-4o-mini-2024-07-18");
    assert_eq!(attr(server, "gen_ai.response.id").unwrap()["stringValue"], "chatcmpl-upstream-42");
    assert_eq!(attr(server, "gen_ai.response.finish_reasons").unwrap()["arrayValue"]["values"][0]["stringValue"], "stop");
    assert_eq!(attr(server, "gen_ai.usage.input_tokens").unwrap()["intValue"], "10");
    assert_eq!(attr(server, "gen_ai.usage.output_tokens").unwrap()["intValue"], "5");
    assert_eq!(attr(server, "server.address").unwrap()["stringValue"], "primary.test");
    assert_eq!(attr(server, "server.port").unwrap()["intValue"], "443");
    assert_eq!(attr(server, "gateway.consumer").unwrap()["stringValue"], "web");
    assert_eq!(attr(server, "gateway.tenant").unwrap()["stringValue"], "acme");
    assert_eq!(attr(server, "gateway.outcome").unwrap()["stringValue"], "completed");
    assert!(attr(server, "gen_ai.input.messages").is_none(), "content is not exported by default");
    assert!(attr(server, "gen_ai.output.messages").is_none());
    let trace_id = server["traceId"].as_str().unwrap();
    assert_eq!(headers.iter().find(|(k, _)| k == "x-gateway-trace-id").map(|(_, v)| v.as_str()), Some(trace_id));
    let metrics = posted(&requests, "/v1/metrics");
    assert_eq!(metrics.len(), 1);
    let names: Vec<String> = metrics[0].json()["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"gen_ai.client.token.usage".to_string()) && names.contains(&"gen_ai.client.operation.duration".to_string()), "{names:?}");
    assert!(names.contains(&"gateway.requests".to_string()));
    let everything = String::from_utf8_lossy(&traces[0].body).to_string() + &String::from_utf8_lossy(&metrics[0].body);
    assert!(!everything.contains(PROVIDER_SECRET) && !everything.contains(KEY) && !everything.contains("otlp-collector-token"));
}

#[test]
fn a_fallback_shows_two_attempt_spans() {
    let host = host(Some(telemetry()), true);
    let (status, _, requests) = run(&host, chat(KEY, "smart", "hello", None));
    assert_eq!(status, 200);
    let spans = spans(&posted(&requests, "/v1/traces")[0].json());
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    let attempts: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert_eq!(attempts[0]["name"], "chat gpt-4o-mini");
    assert_eq!(attempts[0]["status"]["code"], 2);
    assert_eq!(attr(attempts[0], "http.response.status_code").unwrap()["intValue"], "503");
    assert_eq!(attr(attempts[0], "error.type").unwrap()["stringValue"], "upstream_error");
    assert_eq!(attempts[1]["name"], "chat gpt-4o");
    assert_eq!(attr(attempts[1], "server.address").unwrap()["stringValue"], "backup.test");
    assert_eq!(attr(attempts[1], "server.port").unwrap()["intValue"], "8443");
    assert!(attempts.iter().all(|a| a["parentSpanId"] == server["spanId"]));
    assert_eq!(attr(server, "gateway.route.target").unwrap()["stringValue"], "b");
    // Each upstream call carried its own attempt span as the parent.
    let calls: Vec<_> = requests.iter().filter(|r| !r.url.starts_with("https://collector.test")).collect();
    assert_eq!(calls.len(), 2);
    for (call, span) in calls.iter().zip(&attempts) {
        let tp = call.header("traceparent").expect("traceparent to the provider");
        assert_eq!(tp, format!("00-{}-{}-01", span["traceId"].as_str().unwrap(), span["spanId"].as_str().unwrap()));
    }
}

#[test]
fn the_clients_traceparent_becomes_the_parent_and_travels_upstream() {
    let host = host(Some(telemetry()), false);
    let (_, headers, requests) = run(&host, chat(KEY, "gpt", "hello", Some(CLIENT_TRACEPARENT)));
    let spans = spans(&posted(&requests, "/v1/traces")[0].json());
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    assert_eq!(server["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(server["traceState"], "congo=t61rcWkgMzE");
    let upstream = requests.iter().find(|r| r.url.starts_with("https://primary.test")).unwrap();
    let tp = upstream.header("traceparent").unwrap();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{tp}");
    assert!(!tp.contains("00f067aa0ba902b7"), "the parent upstream is the gateway's attempt span, not the client's");
    assert_eq!(upstream.header("tracestate"), Some("congo=t61rcWkgMzE"));
    assert_eq!(headers.iter().find(|(k, _)| k == "x-gateway-trace-id").unwrap().1, "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn an_invalid_traceparent_starts_a_new_trace() {
    let host = host(Some(telemetry()), false);
    let upper = CLIENT_TRACEPARENT.to_uppercase();
    let (_, _, requests) = run(&host, chat(KEY, "gpt", "hello", Some(&upper)));
    let server = spans(&posted(&requests, "/v1/traces")[0].json()).into_iter().find(|s| s["kind"] == 2).unwrap();
    assert_ne!(server["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(server.get("parentSpanId").is_none());
    assert!(server.get("traceState").is_none(), "tracestate without a valid traceparent is dropped");
}

#[test]
fn content_is_exported_only_for_opted_in_consumers_and_redacted() {
    let prompt = "mail bob@example.com, my key is sk-proj-abcdefghijklmnopqrstuvwxyz012345";
    // `web` did not opt in.
    let host1 = host(Some(telemetry()), false);
    let (_, _, requests) = run(&host1, chat(KEY, "guarded", prompt, None));
    let body = String::from_utf8_lossy(&posted(&requests, "/v1/traces")[0].body).to_string();
    assert!(!body.contains("gen_ai.input.messages") && !body.contains("bob@") && !body.contains("sk-proj"), "{body}");
    // `ops` did: its prompt and completion are exported, redacted.
    let host2 = host(Some(telemetry()), false);
    let (_, _, requests) = run(&host2, chat(OTHER_KEY, "guarded", prompt, None));
    let export = posted(&requests, "/v1/traces")[0];
    let raw = String::from_utf8_lossy(&export.body).to_string();
    assert!(!raw.contains("sk-proj-abcdefghijklmnopqrstuvwxyz012345"), "a secret in the prompt never reaches the collector: {raw}");
    assert!(!raw.contains("bob@example.com") && !raw.contains("alice@example.com"), "{raw}");
    let server = spans(&export.json()).into_iter().find(|s| s["kind"] == 2).unwrap();
    let input: Value = serde_json::from_str(attr(&server, "gen_ai.input.messages").unwrap()["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(input[0]["role"], "user");
    let text = input[0]["parts"][0]["content"].as_str().unwrap();
    assert!(text.starts_with("mail ") && text.contains("[SECRET]"), "{text}");
    let output: Value = serde_json::from_str(attr(&server, "gen_ai.output.messages").unwrap()["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["finish_reason"], "stop");
    assert!(output[0]["parts"][0]["content"].as_str().unwrap().starts_with("Sure, write to "));
    // The guard's own span is a child of the server span.
    let guard = spans(&export.json()).into_iter().find(|s| s["name"] == "gateway.guard.input").expect("input guard span");
    assert_eq!(guard["parentSpanId"], server["spanId"]);
    assert_eq!(attr(&guard, "gateway.guard.profile").unwrap()["stringValue"], "mask-email");
}

#[test]
fn a_failed_request_has_error_type_and_status_error() {
    let host = host(Some(telemetry()), true);
    let (status, _, requests) = run(&host, chat(KEY, "gpt", "hello", None));
    assert_eq!(status, 502);
    let server = spans(&posted(&requests, "/v1/traces")[0].json()).into_iter().find(|s| s["kind"] == 2).unwrap();
    assert_eq!(server["status"]["code"], 2);
    assert_eq!(attr(&server, "error.type").unwrap()["stringValue"], "upstream_error");
}

#[test]
fn telemetry_off_makes_no_export_call_and_sends_no_traceparent() {
    let host = host(None, false);
    let (status, headers, requests) = run(&host, chat(KEY, "gpt", "hello", Some(CLIENT_TRACEPARENT)));
    assert_eq!(status, 200);
    assert!(requests.iter().all(|r| !r.url.starts_with("https://collector.test")));
    assert!(requests.iter().all(|r| r.header("traceparent").is_none()));
    assert!(headers.iter().all(|(k, _)| k != "x-gateway-trace-id"));
}

#[test]
fn an_unsampled_trace_exports_metrics_but_no_spans_and_propagates_the_flag() {
    let mut t = telemetry();
    t["sample_ratio"] = json!(0.0);
    let host = host(Some(t), false);
    let (_, _, requests) = run(&host, chat(KEY, "gpt", "hello", None));
    assert!(posted(&requests, "/v1/traces").is_empty());
    assert_eq!(posted(&requests, "/v1/metrics").len(), 1);
    let tp = requests.iter().find(|r| r.url.starts_with("https://primary.test")).unwrap().header("traceparent").unwrap();
    assert!(tp.ends_with("-00"), "{tp}");
}

#[test]
fn a_collector_failure_is_invisible_to_the_client() {
    let host = MemoryHost::new()
        .with_config(&config(Some(telemetry())))
        .with_secret("UP_KEY", PROVIDER_SECRET)
        .with_secret("OTLP_TOKEN", OTLP_TOKEN)
        .with_upstream(|request| {
            if request.url.starts_with("https://collector.test") {
                Scripted::Fail(FetchError::Connect("down".into()))
            } else {
                Scripted::Respond(ok_body())
            }
        });
    let (status, _, requests) = run(&host, chat(KEY, "gpt", "hello", None));
    assert_eq!(status, 200);
    assert_eq!(posted(&requests, "/v1/traces").len(), 1, "tried once, failure swallowed");
    assert_eq!(host.events().len(), 1);
}

#[test]
fn the_telemetry_section_is_validated_with_paths() {
    let mut t = telemetry();
    t["sample_ratio"] = json!(2.0);
    t["otlp"]["headers"] = json!({ "authorization": { "secret": "Bearer abc" } });
    t["consumers"] = json!({ "nobody": { "capture_content": true } });
    let err = edge::Config::parse(&config(Some(t))).unwrap_err().to_string();
    for path in ["telemetry.otlp.headers.authorization.secret", "telemetry.sample_ratio", "telemetry.consumers.nobody"] {
        assert!(err.contains(path), "{path}: {err}");
    }
    let mut plain = telemetry();
    plain["otlp"]["headers"] = json!({ "authorization": "Bearer abc" });
    assert!(edge::Config::parse(&config(Some(plain))).is_err(), "header values are secret references only");
    let mut private = telemetry();
    private["otlp"]["endpoint"] = json!("http://127.0.0.1:4318");
    let err = edge::Config::parse(&config(Some(private))).unwrap_err().to_string();
    assert!(err.contains("telemetry.otlp.endpoint"), "the outbound policy applies to the collector: {err}");
}

#[test]
fn a_stream_reports_its_time_to_first_chunk_and_captured_completion() {
    let sse = concat!(
        "data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi bob@example.com\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n"
    );
    let host = MemoryHost::new()
        .with_config(&config(Some(telemetry())))
        .with_secret("UP_KEY", PROVIDER_SECRET)
        .with_secret("OTLP_TOKEN", OTLP_TOKEN)
        .with_upstream(move |request| {
            if request.url.starts_with("https://collector.test") {
                return Scripted::Respond(OutboundResponse { status: 200, headers: Vec::new(), body: Body::Bytes(b"{}".to_vec()) });
            }
            Scripted::Respond(OutboundResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
                body: Body::Bytes(sse.as_bytes().to_vec()),
            })
        });
    let mut request = chat(OTHER_KEY, "gpt", "hello", None);
    request.body = Body::Bytes(json!({ "model": "gpt", "stream": true, "messages": [{ "role": "user", "content": "hello" }] }).to_string().into_bytes());
    let (status, _, requests) = run(&host, request);
    assert_eq!(status, 200);
    let metrics = posted(&requests, "/v1/metrics")[0].json();
    let names: Vec<&str> = metrics["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"gen_ai.client.operation.time_to_first_chunk"), "{names:?}");
    let server = spans(&posted(&requests, "/v1/traces")[0].json()).into_iter().find(|s| s["kind"] == 2).unwrap();
    assert_eq!(attr(&server, "gateway.stream").unwrap()["boolValue"], true);
    assert_eq!(attr(&server, "gen_ai.response.id").unwrap()["stringValue"], "chatcmpl-s1");
    assert_eq!(attr(&server, "gen_ai.response.finish_reasons").unwrap()["arrayValue"]["values"][0]["stringValue"], "stop");
    let output = attr(&server, "gen_ai.output.messages").unwrap()["stringValue"].as_str().unwrap().to_string();
    assert!(output.contains("Hi [EMAIL]") && !output.contains("bob@"), "{output}");
}
