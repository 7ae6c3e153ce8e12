//! What a client that goes away is charged, and that usage events add up to the counters:
//! a stream abandoned mid-way (upstream sending or silent, OpenAI and Anthropic clients), a
//! client that leaves before the response head, and a mixed run summed event by event.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use edge::event::Outcome;
use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, BodyError, Gateway, OutboundResponse, Request, RequestFacts};
use futures::channel::mpsc;
use futures::executor::LocalPool;
use futures::StreamExt;
use policy::limits::{CounterOp, CounterReply, LimitStatus, Metric};
use serde_json::{json, Value};

const KEY: &str = "sk-client-web";
const SUBJECT: &str = "consumer:web";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Output-token and money limits on the consumer; `gpt` is an OpenAI upstream the test scripts,
/// `routed` falls back from target `a` to target `b`.
fn config() -> String {
    json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000, "stream_idle_timeout_ms": 500 },
        "auth": { "mode": "api_keys", "consumers": [{ "id": "web", "key_sha256": hex_sha256(KEY) }] },
        "providers": {
            "up": { "kind": "openai", "base_url": "https://upstream.test/v1" },
            "a": { "kind": "openai", "base_url": "https://a.test/v1" },
            "b": { "kind": "openai", "base_url": "https://b.test/v1" }
        },
        "models": {
            "gpt": { "provider": "up", "upstream_model": "gpt-4o-mini" },
            "routed": {
                "targets": [
                    { "id": "a", "provider": "a", "upstream_model": "gpt-4o-mini", "region": "us-east-1", "jurisdiction": "us" },
                    { "id": "b", "provider": "b", "upstream_model": "gpt-4o-mini", "region": "us-west-2", "jurisdiction": "us" }
                ],
                "strategy": { "type": "ordered" },
                "max_attempts": 2
            }
        },
        "prices": { "gpt-4o-mini": { "input": "1.00", "output": "2.00" } },
        "rate_limits": [{ "scope": ["consumer"], "metric": "output_tokens", "window": "day", "limit": 1000000 }],
        "budgets": [{ "scope": ["consumer"], "window": "month", "usd": "100" }]
    })
    .to_string()
}

fn post(path: &str, body: Value) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into()), ("authorization".into(), format!("Bearer {KEY}"))],
        body: Body::Bytes(body.to_string().into_bytes()),
        facts: RequestFacts::default(),
    }
}

type Sender = mpsc::UnboundedSender<Result<Vec<u8>, BodyError>>;

/// A host whose upstream streams what the test sends on the returned channel.
fn streaming_host() -> (MemoryHost, Sender) {
    let (sender, receiver) = mpsc::unbounded();
    let receiver = Rc::new(RefCell::new(Some(receiver)));
    let host = MemoryHost::new().with_config(&config()).with_upstream(move |_| {
        let receiver = receiver.borrow_mut().take().expect("one streamed call");
        Scripted::Respond(OutboundResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: Body::Stream(Box::pin(receiver)),
        })
    });
    (host, sender)
}

fn chunk(content: &str) -> Vec<u8> {
    format!("data: {}\n\n", json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}], "usage": null}))
        .into_bytes()
}

fn limits(host: &MemoryHost) -> Vec<LimitStatus> {
    match futures::executor::block_on(edge::Host::counter(host, SUBJECT, None, &CounterOp::Status)) {
        Ok(CounterReply::Status { limits }) => limits,
        other => panic!("status: {other:?}"),
    }
}

/// Used and reserved of one metric (a counter never touched reads as zero).
fn used(host: &MemoryHost, metric: Metric) -> (u64, u64) {
    limits(host).iter().find(|l| l.metric == metric).map_or((0, 0), |l| (l.used, l.reserved))
}

/// Open a stream, let the client read `delivered` chunks, send `extra` chunks it does not read,
/// then drop the body (the client hangs up) and run the post-response work.
fn abandon_stream(path: &str, body: Value, delivered: &[&str], extra: &[&str]) -> MemoryHost {
    let (host, upstream) = streaming_host();
    let mut pool = LocalPool::new();
    let mut response = pool.run_until(Gateway::new().handle(post(path, body), &host));
    if response.status != 200 {
        let body = pool.run_until(collect_body(std::mem::replace(&mut response.body, Body::Empty)));
        panic!("{}: {}", response.status, String::from_utf8_lossy(&body));
    }
    let Body::Stream(mut body) = response.body else { panic!("not streamed") };
    for text in delivered {
        upstream.unbounded_send(Ok(chunk(text))).unwrap();
        let mut seen = String::new();
        while !seen.contains(text) {
            seen.push_str(&String::from_utf8(pool.run_until(body.next()).unwrap().unwrap()).unwrap());
        }
    }
    for text in extra {
        upstream.unbounded_send(Ok(chunk(text))).unwrap();
    }
    assert!(host.events().is_empty(), "nothing recorded while the stream is open");
    drop(body);
    pool.run_until(host.run_background());
    host
}

fn chat_body() -> Value {
    json!({ "model": "gpt", "stream": true, "max_tokens": 500, "messages": [{ "role": "user", "content": "tell me a story" }] })
}

fn the_disconnect_event(host: &MemoryHost) -> edge::UsageEvent {
    let events = host.events();
    assert_eq!(events.len(), 1, "exactly one event");
    assert_eq!(events[0].outcome, Outcome::ClientDisconnected);
    events[0].clone()
}

#[test]
fn an_abandoned_stream_is_charged_what_was_delivered() {
    let host = abandon_stream("/v1/chat/completions", chat_body(), &["Once upon ", "a time 1234567"], &["unread"]);
    let event = the_disconnect_event(&host);
    let quota = event.quota.expect("quota summary");
    let (output, reserved) = used(&host, Metric::OutputTokens);
    // "Once upon ": 9 characters of prose (3 tokens) and a trailing space (1); "a time
    // 1234567": 6 characters of prose (2), the space before the digits (1), seven digits (3).
    // "unread" never reached the client.
    assert_eq!(output, 4 + 2 + 1 + 3, "charged the delivered text, not the reservation of {}", quota.reserved_output_tokens);
    assert_eq!(reserved, 0, "nothing left in flight");
    let (cost, _) = used(&host, Metric::Cost);
    assert!(cost > 0);
    assert_eq!(quota.cost_nanos, Some(cost), "the event shows what the counters charged");
}

#[test]
fn an_abandoned_stream_is_charged_while_the_upstream_is_silent() {
    let host = abandon_stream("/v1/chat/completions", chat_body(), &["Once upon "], &[]);
    the_disconnect_event(&host);
    let (output, reserved) = used(&host, Metric::OutputTokens);
    assert_eq!((output, reserved), (4, 0));
}

#[test]
fn an_abandoned_messages_stream_is_charged_what_was_delivered() {
    let body = json!({ "model": "gpt", "stream": true, "max_tokens": 500, "messages": [{ "role": "user", "content": "tell me a story" }] });
    let host = abandon_stream("/v1/messages", body, &["Once upon "], &["unread"]);
    let event = the_disconnect_event(&host);
    let (output, reserved) = used(&host, Metric::OutputTokens);
    assert_eq!((output, reserved), (4, 0));
    let (cost, _) = used(&host, Metric::Cost);
    assert_eq!(event.quota.unwrap().cost_nanos, Some(cost));
}

#[test]
fn a_client_that_leaves_before_the_response_head_stops_fallback_and_is_charged_the_prompt() {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let seen = calls.clone();
    let host = MemoryHost::new().with_config(&config()).with_upstream(move |request| {
        seen.borrow_mut().push(request.url.clone());
        Scripted::Hang
    });
    let mut pool = LocalPool::new();
    {
        let gateway = Gateway::new();
        let mut handle = Box::pin(gateway.handle(post("/v1/chat/completions", json!({ "model": "routed", "max_tokens": 50, "messages": [{ "role": "user", "content": "hi" }] })), &host));
        assert!(pool.run_until(futures::future::poll_fn(|cx| std::task::Poll::Ready(handle.as_mut().poll(cx).is_pending()))));
        assert_eq!(calls.borrow().len(), 1, "waiting for the first target");
        // The client hangs up while the first target is still silent.
    }
    host.advance(5_000);
    pool.run_until(host.run_background());
    assert_eq!(calls.borrow().len(), 1, "no fallback after the client left");
    let event = the_disconnect_event(&host);
    let (output, reserved) = used(&host, Metric::OutputTokens);
    assert_eq!((output, reserved), (0, 0), "nothing delivered, nothing left in flight");
    let quota = event.quota.unwrap();
    let (cost, _) = used(&host, Metric::Cost);
    assert!(cost > 0, "the prompt is charged");
    assert_eq!(quota.cost_nanos, Some(cost));
}

#[test]
fn usage_events_sum_to_what_the_counters_charged() {
    let host = MemoryHost::new().with_config(&config()).with_upstream(|request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let text = body["messages"][0]["content"].as_str().unwrap().to_string();
        let stream = body["stream"].as_bool().unwrap_or(false);
        let usage = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10});
        let (content_type, bytes) = match (stream, text.as_str()) {
            // Streams: with usage, or cut without any (settled at the reservation).
            (true, "usage") => ("text/event-stream", [chunk("hi"), format!("data: {}\n\ndata: [DONE]\n\n", json!({"choices": [], "usage": usage})).into_bytes()].concat()),
            (true, _) => ("text/event-stream", [chunk("hi"), b"data: [DONE]\n\n".to_vec()].concat()),
            (false, "usage") => ("application/json", json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": usage}).to_string().into_bytes()),
            (false, _) => ("application/json", json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}).to_string().into_bytes()),
        };
        Scripted::Respond(OutboundResponse { status: 200, headers: vec![("content-type".into(), content_type.into())], body: Body::Bytes(bytes) })
    });
    let gateway = Gateway::new();
    for (stream, content) in [(false, "usage"), (false, "none"), (true, "usage"), (true, "none")] {
        let request = post("/v1/chat/completions", json!({ "model": "gpt", "stream": stream, "max_tokens": 40, "messages": [{ "role": "user", "content": content }] }));
        futures::executor::block_on(async {
            let mut response = gateway.handle(request, &host).await;
            assert_eq!(response.status, 200);
            collect_body(std::mem::replace(&mut response.body, Body::Empty)).await;
            host.run_background().await;
        });
    }
    let events = host.events();
    assert_eq!(events.len(), 4);
    let summed: u64 = events.iter().map(|e| e.quota.as_ref().and_then(|q| q.cost_nanos).expect("every charge has a cost")).sum();
    let (cost, reserved) = used(&host, Metric::Cost);
    assert_eq!(reserved, 0);
    assert_eq!(summed, cost, "events: {:?}", events.iter().map(|e| e.quota.clone()).collect::<Vec<_>>());
}

#[test]
fn n_choices_without_max_tokens_reserve_n_outputs() {
    let host = MemoryHost::new().with_config(&config()).with_upstream(|_| Scripted::Hang);
    let mut pool = LocalPool::new();
    let mut reserved_for = |n: u64| {
        let request = post("/v1/chat/completions", json!({ "model": "gpt", "n": n, "messages": [{ "role": "user", "content": "hi" }] }));
        let gateway = Gateway::new();
        let mut handle = Box::pin(gateway.handle(request, &host));
        pool.run_until(futures::future::poll_fn(|cx| std::task::Poll::Ready(handle.as_mut().poll(cx).is_pending())));
        let (_, reserved) = used(&host, Metric::OutputTokens);
        drop(handle);
        pool.run_until(host.run_background());
        reserved
    };
    let one = reserved_for(1);
    assert!(one > 0);
    assert_eq!(reserved_for(3), 3 * one, "n = 3 reserves three outputs");
}
