//! The exact response cache through the whole pipeline against the in-memory host: hit, miss
//! and bypass; what is in the key; scopes and namespaces; residency; streamed fills and replays
//! in both client APIs; single flight; what is never stored; limits and savings on hits.

use std::cell::Cell;
use std::rc::Rc;

use edge::host::Host;
use edge::testing::{collect_body, CacheTier, MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundResponse, Request};
use serde_json::{json, Value};

mod cache_support;
use cache_support::*;

fn config(mut extra: Value) -> String {
    let models = json!({
        "gpt": { "provider": "up", "cache": { "mode": "exact", "ttl_s": 600 } },
        "gpt-shared": { "provider": "up", "upstream_model": "gpt", "cache": { "mode": "exact", "scope": "tenant" } },
        "gpt-nocache": { "provider": "up", "upstream_model": "gpt" },
        "embed": { "provider": "up", "type": "embeddings", "cache": { "mode": "exact" } }
    });
    extra.as_object_mut().unwrap().entry("prices").or_insert(json!({ "gpt": { "input": "1.00", "output": "2.00" } }));
    config_with(models, extra)
}

/// An OpenAI upstream that counts its calls and answers with the call number in the text, so a
/// replay is told apart from a fresh answer. `stream: true` gets SSE (no `[DONE]` when `truncate`).
struct Upstream {
    calls: Rc<Cell<u32>>,
}

fn host_with(config: String, status: u16, truncate: bool, delay_ms: Option<u64>) -> (MemoryHost, Upstream) {
    let calls = Rc::new(Cell::new(0));
    let counter = calls.clone();
    let host = MemoryHost::new().with_config(&config).with_secret("UP_KEY", "sk-up");
    let clock = host.clone();
    let host = host.with_upstream(move |request| {
        counter.set(counter.get() + 1);
        let n = counter.get();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if status != 200 {
            return Scripted::Respond(OutboundResponse {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Body::Bytes(br#"{"error":{"message":"overloaded","type":"server_error"}}"#.to_vec()),
            });
        }
        if request.url.ends_with("/embeddings") {
            let answer = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [n as f64, 0.5]}], "model": "embed", "usage": {"prompt_tokens": 3, "total_tokens": 3}});
            return Scripted::Respond(OutboundResponse { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: Body::Bytes(answer.to_string().into_bytes()) });
        }
        let text = format!("answer {n}");
        let usage = json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500});
        let (content_type, bytes) = if body["stream"] == true {
            let mut sse = String::new();
            for chunk in [
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}),
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt", "choices": [], "usage": usage}),
            ] {
                sse.push_str(&format!("data: {chunk}\n\n"));
            }
            if !truncate {
                sse.push_str("data: [DONE]\n\n");
            }
            ("text/event-stream", sse.into_bytes())
        } else {
            let answer = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}], "usage": usage});
            ("application/json", answer.to_string().into_bytes())
        };
        let body = match delay_ms {
            None => Body::Bytes(bytes),
            Some(ms) => {
                let timer = clock.sleep(ms);
                Body::Stream(Box::pin(futures::stream::once(async move {
                    timer.await;
                    Ok(bytes)
                })))
            }
        };
        Scripted::Respond(OutboundResponse { status: 200, headers: vec![("content-type".into(), content_type.into())], body })
    });
    (host, Upstream { calls })
}

fn host(config: String) -> (MemoryHost, Upstream) {
    host_with(config, 200, false, None)
}

fn chat(key: &str, body: Value) -> Request {
    post("/v1/chat/completions", key, body, &[])
}

fn ask(text: &str) -> Value {
    json!({"model": "gpt", "max_tokens": 100, "messages": [{"role": "user", "content": text}]})
}

#[test]
fn a_repeated_request_is_a_hit_with_age_and_the_same_answer() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    let (first, body) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert_eq!((first.status, header(&first, "x-gateway-cache")), (200, Some("miss")));
    assert_eq!(content(&body), "answer 1");
    host.advance(5_000);
    let (second, body) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert_eq!(header(&second, "x-gateway-cache"), Some("hit"));
    assert_eq!(header(&second, "age"), Some("5"));
    assert_eq!(content(&body), "answer 1");
    assert_eq!(upstream.calls.get(), 1);
    let (off, _) = run(&gateway, &host, chat(ALICE, json!({"model": "gpt-nocache", "messages": [{"role": "user", "content": "hi"}]})));
    assert_eq!(header(&off, "x-gateway-cache"), None, "no cache configured: no header");
    host.advance(600_000);
    let (expired, _) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert_eq!(header(&expired, "x-gateway-cache"), Some("miss"), "past ttl_s");
}

#[test]
fn a_hit_records_what_it_saved_and_uses_nothing() {
    let (host, _) = host(config(json!({})));
    let gateway = Gateway::new();
    run(&gateway, &host, chat(ALICE, ask("hi")));
    run(&gateway, &host, chat(ALICE, ask("hi")));
    let events = host.events();
    let (miss, hit) = (events[0].clone(), events[1].clone());
    assert_eq!(serde_json::to_value(&miss).unwrap()["cache"], json!({"status": "miss"}));
    assert_eq!(miss.usage.unwrap().total_tokens, 1500);
    let hit_json = serde_json::to_value(&hit).unwrap();
    assert_eq!(hit_json["cache"]["status"], "hit");
    assert_eq!(hit.usage, None, "a hit used no upstream tokens");
    let saved = &hit_json["cache"]["saved"];
    assert_eq!((saved["input_tokens"].as_u64(), saved["output_tokens"].as_u64()), (Some(1000), Some(500)));
    // 1000 input at $1/M + 500 output at $2/M = $0.002.
    assert_eq!(saved["cost_nanos"], 2_000_000);
    assert!(saved["gco2e"].as_f64().unwrap() > 0.0);
}

#[test]
fn every_parameter_changes_the_key_and_formatting_does_not() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    run(&gateway, &host, chat(ALICE, json!({"model": "gpt", "temperature": 1, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})));
    let reordered = r#"{"messages": [{"content": "hi", "role": "user"}], "max_tokens": 100, "temperature": 1e0, "model": "gpt"}"#;
    let mut request = chat(ALICE, Value::Null);
    request.body = Body::Bytes(reordered.as_bytes().to_vec());
    let (same, _) = run(&gateway, &host, request);
    assert_eq!(header(&same, "x-gateway-cache"), Some("hit"), "key order and number formatting do not matter");
    for (field, value) in [("temperature", json!(0.5)), ("top_p", json!(0.5)), ("seed", json!(3)), ("stop", json!(["x"])), ("n", json!(2)), ("max_tokens", json!(99)), ("x_unknown", json!(true))] {
        let mut body = json!({"model": "gpt", "temperature": 1, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
        body[field] = value;
        let (response, _) = run(&gateway, &host, chat(ALICE, body));
        assert_eq!(header(&response, "x-gateway-cache"), Some("miss"), "{field}");
    }
    assert_eq!(upstream.calls.get(), 8);
}

#[test]
fn the_same_conversation_through_both_apis_finds_one_entry() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    let openai = json!({"model": "gpt", "max_tokens": 100, "temperature": 0.5, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]});
    run(&gateway, &host, chat(ALICE, openai));
    let anthropic = json!({"model": "gpt", "max_tokens": 100, "temperature": 0.5, "system": "be brief", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
    let (response, body) = run(&gateway, &host, post("/v1/messages", ALICE, anthropic, &[("anthropic-version", "2023-06-01")]));
    assert_eq!(header(&response, "x-gateway-cache"), Some("hit"), "{body}");
    let message: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((message["type"].as_str(), message["content"][0]["text"].as_str()), (Some("message"), Some("answer 1")));
    assert_eq!(upstream.calls.get(), 1);
}

#[test]
fn consumers_never_share_entries_unless_their_scope_says_so() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    run(&gateway, &host, chat(ALICE, ask("hi")));
    let (bob, body) = run(&gateway, &host, chat(BOB, ask("hi")));
    assert_eq!((header(&bob, "x-gateway-cache"), content(&body).as_str()), (Some("miss"), "answer 2"));
    // The tenant scope: alice and bob (tenant acme) share.
    let shared = |key| chat(key, json!({"model": "gpt-shared", "messages": [{"role": "user", "content": "hi"}]}));
    run(&gateway, &host, shared(ALICE));
    let (bob, _) = run(&gateway, &host, shared(BOB));
    assert_eq!(header(&bob, "x-gateway-cache"), Some("hit"));
    assert_eq!(upstream.calls.get(), 3);
}

#[test]
fn a_namespace_narrows_the_callers_own_scope_only() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    let in_ns = |key| post("/v1/chat/completions", key, ask("hi"), &[("x-gateway-cache-namespace", "drafts")]);
    run(&gateway, &host, in_ns(ALICE));
    let (plain, _) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert_eq!(header(&plain, "x-gateway-cache"), Some("miss"), "a namespace is its own set of entries");
    let (bob, _) = run(&gateway, &host, in_ns(BOB));
    assert_eq!(header(&bob, "x-gateway-cache"), Some("miss"), "the same namespace name of another consumer is not shared");
    let (again, _) = run(&gateway, &host, in_ns(ALICE));
    assert_eq!(header(&again, "x-gateway-cache"), Some("hit"));
    assert_eq!(upstream.calls.get(), 3);
    let (bad, body) = run(&gateway, &host, post("/v1/chat/completions", ALICE, ask("hi"), &[("x-gateway-cache-namespace", "a/b")]));
    assert_eq!(bad.status, 400, "{body}");
}

#[test]
fn cache_control_bypasses_refreshes_and_declines_to_store() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    let with = |text: &str, headers: &[(&str, &str)]| post("/v1/chat/completions", ALICE, ask(text), headers);
    let (stored, _) = run(&gateway, &host, with("a", &[("cache-control", "no-store")]));
    assert_eq!(header(&stored, "x-gateway-cache"), Some("miss"));
    let (after_no_store, _) = run(&gateway, &host, with("a", &[]));
    assert_eq!(header(&after_no_store, "x-gateway-cache"), Some("miss"), "no-store stored nothing");
    let (bypass, body) = run(&gateway, &host, with("a", &[("cache-control", "no-cache")]));
    assert_eq!((header(&bypass, "x-gateway-cache"), content(&body).as_str()), (Some("bypass"), "answer 3"));
    let (refreshed, body) = run(&gateway, &host, with("a", &[]));
    assert_eq!((header(&refreshed, "x-gateway-cache"), content(&body).as_str()), (Some("hit"), "answer 3"), "no-cache refreshed the entry");
    host.advance(20_000);
    let (too_old, _) = run(&gateway, &host, with("a", &[("cache-control", "max-age=10")]));
    assert_eq!(header(&too_old, "x-gateway-cache"), Some("miss"));
    let (short, _) = run(&gateway, &host, with("b", &[("x-gateway-cache-ttl", "5")]));
    assert_eq!(header(&short, "x-gateway-cache"), Some("miss"));
    host.advance(6_000);
    let (expired, _) = run(&gateway, &host, with("b", &[]));
    assert_eq!(header(&expired, "x-gateway-cache"), Some("miss"), "x-gateway-cache-ttl shortened the entry's life");
    assert_eq!(upstream.calls.get(), 6);
}

#[test]
fn a_residency_bound_tenants_entries_stay_in_the_location_tier_inside_its_jurisdiction() {
    let (host, upstream) = host(config(json!({"models": {"gpt": {"provider": "up", "cache": {"mode": "exact"}}}})));
    let gateway = Gateway::new();
    run(&gateway, &host, chat(ALICE, ask("hi")));
    assert_eq!(host.cache_entries().iter().map(|(tier, _)| *tier).collect::<Vec<_>>(), [CacheTier::Local, CacheTier::Global]);
    let outside = || chat(CAROL, ask("eu"));
    let (first, _) = run(&gateway, &host, outside());
    assert_eq!(header(&first, "x-gateway-cache"), Some("bypass"), "outside the EU nothing may hold it");
    assert_eq!(host.cache_entries().len(), 2);
    let inside = || {
        let mut request = chat(CAROL, ask("eu"));
        request.facts.is_eu_country = Some(true);
        request
    };
    run(&gateway, &host, inside());
    let (hit, _) = run(&gateway, &host, inside());
    assert_eq!(header(&hit, "x-gateway-cache"), Some("hit"));
    let tiers: Vec<CacheTier> = host.cache_entries().into_iter().map(|(tier, _)| tier).collect();
    assert_eq!(tiers.iter().filter(|t| **t == CacheTier::Global).count(), 1, "only alice's entry is global: {tiers:?}");
    assert_eq!(tiers.len(), 3);
    assert_eq!(upstream.calls.get(), 3);
}

#[test]
fn a_whole_answer_replays_as_a_well_formed_stream_in_both_apis() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    run(&gateway, &host, chat(ALICE, ask("hi")));
    let mut streamed = ask("hi");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (response, body) = run(&gateway, &host, chat(ALICE, streamed));
    assert_eq!(header(&response, "x-gateway-cache"), Some("hit"));
    assert!(header(&response, "content-type").unwrap().starts_with("text/event-stream"));
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert_eq!(streamed_text(&body), "answer 1");
    let events = sse_events(&body);
    assert_eq!(events[0].1["choices"][0]["delta"]["role"], "assistant");
    assert!(events.iter().any(|(_, e)| e["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(events.last().unwrap().1["usage"]["total_tokens"], 1500, "the usage chunk the client asked for");
    let mut no_usage = ask("hi");
    no_usage["stream"] = json!(true);
    let (_, body) = run(&gateway, &host, chat(ALICE, no_usage));
    assert!(!body.contains("\"usage\":{"), "no usage chunk unless asked: {body}");
    let anthropic = json!({"model": "gpt", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (response, body) = run(&gateway, &host, post("/v1/messages", ALICE, anthropic, &[("anthropic-version", "2023-06-01")]));
    assert_eq!(header(&response, "x-gateway-cache"), Some("hit"));
    let names: Vec<String> = sse_events(&body).into_iter().filter_map(|(name, _)| name).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"), "{body}");
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(names.iter().any(|n| n == "content_block_delta"));
    assert!(body.contains("answer 1"));
    assert_eq!(upstream.calls.get(), 1);
}

#[test]
fn a_completed_stream_fills_the_cache_and_a_truncated_one_does_not() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    let mut streamed = ask("hi");
    streamed["stream"] = json!(true);
    let (first, body) = run(&gateway, &host, chat(ALICE, streamed));
    assert_eq!(header(&first, "x-gateway-cache"), Some("miss"));
    assert_eq!(streamed_text(&body), "answer 1");
    let (whole, body) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert_eq!(header(&whole, "x-gateway-cache"), Some("hit"));
    assert_eq!(content(&body), "answer 1");
    let saved = serde_json::to_value(host.events().last().unwrap()).unwrap()["cache"]["saved"].clone();
    assert_eq!(saved["total_tokens"], 1500, "the stream's usage was stored");
    assert_eq!(upstream.calls.get(), 1);

    let (host, upstream) = host_with(config(json!({})), 200, true, None);
    let mut streamed = ask("cut");
    streamed["stream"] = json!(true);
    let (_, body) = run(&gateway, &host, chat(ALICE, streamed));
    assert!(body.contains("error"), "a stream without [DONE] ends with an error event: {body}");
    assert!(host.cache_entries().is_empty());
    let (again, _) = run(&gateway, &host, chat(ALICE, ask("cut")));
    assert_eq!(header(&again, "x-gateway-cache"), Some("miss"));
    assert_eq!(upstream.calls.get(), 2);
}

#[test]
fn errors_are_never_stored() {
    let (host, upstream) = host_with(config(json!({})), 503, false, None);
    let gateway = Gateway::new();
    let (first, _) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert!(first.status >= 500);
    let (second, _) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert!(second.status >= 500);
    assert!(host.cache_entries().is_empty());
    assert!(upstream.calls.get() >= 2);
}

#[test]
fn identical_concurrent_misses_make_one_upstream_call() {
    let (host, upstream) = host_with(config(json!({})), 200, false, Some(100));
    let gateway = Gateway::new();
    let responses = host.block_on(async {
        let requests = (0..5).map(|_| async {
            let mut response = gateway.handle(chat(ALICE, ask("together")), &host).await;
            let body = collect_body(std::mem::replace(&mut response.body, Body::Empty)).await;
            (response, String::from_utf8(body).unwrap())
        });
        let responses = futures::future::join_all(requests).await;
        host.run_background().await;
        responses
    });
    assert_eq!(upstream.calls.get(), 1, "one leader went upstream");
    let statuses: Vec<_> = responses.iter().map(|(r, _)| header(r, "x-gateway-cache").unwrap().to_string()).collect();
    assert_eq!(statuses.iter().filter(|s| *s == "miss").count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "hit").count(), 4, "{statuses:?}");
    assert!(responses.iter().all(|(_, body)| content(body) == "answer 1"));
}

#[test]
fn a_hit_counts_one_request_and_no_tokens_against_limits() {
    let limits = json!({"rate_limits": [
        { "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 100 },
        { "scope": ["consumer"], "metric": "total_tokens", "window": "minute", "limit": 1000000 }
    ]});
    let (host, _) = host(config(limits));
    let gateway = Gateway::new();
    run(&gateway, &host, chat(ALICE, ask("hi")));
    let used = |metric: policy::limits::Metric| {
        let reply = futures::executor::block_on(host.counter("consumer:alice", None, &policy::limits::CounterOp::Status)).unwrap();
        let policy::limits::CounterReply::Status { limits } = reply else { panic!("status") };
        let status = limits.into_iter().find(|l| l.metric == metric).unwrap();
        (status.used, status.reserved)
    };
    assert_eq!(used(policy::limits::Metric::TotalTokens), (1500, 0));
    assert_eq!(used(policy::limits::Metric::Requests).0, 1);
    let (hit, _) = run(&gateway, &host, chat(ALICE, ask("hi")));
    assert_eq!(header(&hit, "x-gateway-cache"), Some("hit"));
    assert_eq!(used(policy::limits::Metric::TotalTokens), (1500, 0), "no tokens on a hit");
    assert_eq!(used(policy::limits::Metric::Requests).0, 2, "but a request");
}

#[test]
fn embeddings_are_cached_too() {
    let (host, upstream) = host(config(json!({})));
    let gateway = Gateway::new();
    let request = || post("/v1/embeddings", ALICE, json!({"model": "embed", "input": "hello"}), &[]);
    let (first, _) = run(&gateway, &host, request());
    assert_eq!(header(&first, "x-gateway-cache"), Some("miss"));
    let (second, body) = run(&gateway, &host, request());
    assert_eq!(header(&second, "x-gateway-cache"), Some("hit"));
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["data"][0]["embedding"][0], 1.0);
    assert_eq!(upstream.calls.get(), 1);
}
