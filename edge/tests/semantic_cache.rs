//! The semantic cache tier through the whole pipeline against the in-memory host, with an
//! embeddings upstream that answers controlled vectors: a paraphrase is served from the earlier
//! answer (with its similarity), and everything that must not be is not — a changed number at a
//! high similarity, another consumer, another system prompt, a similarity below the threshold.
//! The embedding is made once per request and the vector indexed once per fill; a failing
//! embedding upstream costs the hit, never the answer.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use edge::cache::chat_context_hash;
use edge::host::Host;
use edge::testing::{MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundResponse, Request, VectorPartition};
use serde_json::{json, Value};

mod cache_support;
use cache_support::*;

const FRANCE: &str = "What is the capital of France?";
const FRANCE_PARAPHRASE: &str = "Tell me the capital of France";
const FRANCE_FAR: &str = "Which city is the capital of France?";
const PRIME_17: &str = "Is 17 a prime number?";
const PRIME_19: &str = "Is 19 a prime number?";

fn config(extra: Value) -> String {
    let models = json!({
        "gpt": { "provider": "up", "cache": { "mode": "semantic", "semantic": { "embedding_model": "embed" } } },
        "embed": { "provider": "up", "type": "embeddings" }
    });
    config_with(models, extra)
}

/// The vector the mock embeddings model gives each text: 4 dimensions, so the similarities are
/// chosen by the test (cosine to `FRANCE`: paraphrase 0.95, far 0.70; 17 to 19: 0.99).
fn vector_of(text: &str) -> Vec<f64> {
    match text {
        FRANCE => vec![1.0, 0.0, 0.0, 0.0],
        FRANCE_PARAPHRASE => vec![0.95, 0.312_25, 0.0, 0.0],
        FRANCE_FAR => vec![0.7, 0.714_14, 0.0, 0.0],
        PRIME_17 => vec![0.0, 0.0, 1.0, 0.0],
        PRIME_19 => vec![0.0, 0.0, 0.99, 0.141_07],
        _ => vec![0.0, 0.0, 0.0, 1.0],
    }
}

/// The mock upstream: chat answers carry the call number ("answer N"); embeddings are
/// [`vector_of`] the input, or a 503 while `embeddings_fail` is set.
struct Upstream {
    chats: Rc<Cell<u32>>,
    embeddings: Rc<RefCell<Vec<String>>>,
    embeddings_fail: Rc<Cell<bool>>,
}

fn host(extra: Value) -> (MemoryHost, Upstream) {
    let upstream = Upstream { chats: Rc::default(), embeddings: Rc::default(), embeddings_fail: Rc::default() };
    let (chats, embeddings, fail) = (upstream.chats.clone(), upstream.embeddings.clone(), upstream.embeddings_fail.clone());
    let host = MemoryHost::new().with_config(&config(extra)).with_secret("UP_KEY", "sk-up").with_upstream(move |request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let respond = |status: u16, content_type: &str, bytes: Vec<u8>| {
            Scripted::Respond(OutboundResponse { status, headers: vec![("content-type".into(), content_type.into())], body: Body::Bytes(bytes) })
        };
        if request.url.ends_with("/embeddings") {
            let input = body["input"].as_str().unwrap().to_string();
            embeddings.borrow_mut().push(input.clone());
            if fail.get() {
                return respond(503, "application/json", br#"{"error":{"message":"down","type":"server_error"}}"#.to_vec());
            }
            let answer = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vector_of(&input)}],
                "model": "embed", "usage": {"prompt_tokens": 7, "total_tokens": 7}});
            return respond(200, "application/json", answer.to_string().into_bytes());
        }
        chats.set(chats.get() + 1);
        let answer = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("answer {}", chats.get())}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}});
        respond(200, "application/json", answer.to_string().into_bytes())
    });
    (host, upstream)
}

fn chat_request(key: &str, body: Value, headers: &[(&str, &str)]) -> Request {
    post("/v1/chat/completions", key, body, headers)
}

fn ask(text: &str) -> Value {
    json!({"model": "gpt", "max_tokens": 100, "messages": [{"role": "user", "content": text}]})
}

fn ask_with_system(system: &str, text: &str) -> Value {
    json!({"model": "gpt", "max_tokens": 100, "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]})
}

/// The partition a consumer's request to `gpt` lives in (no system prompt, no guard profile).
fn partition_of(consumer: &str, body: Value) -> String {
    let request: edge::openai::ChatRequest = serde_json::from_value(body).unwrap();
    policy::cache::partition_id(&format!("consumer:{consumer}"), "gpt", &chat_context_hash(None, &request))
}

fn indexed(host: &MemoryHost, consumer: &str, body: Value, jurisdiction: Option<&str>) -> usize {
    let partition = partition_of(consumer, body);
    host.vector_count(&VectorPartition { index: "responses", partition: &partition, jurisdiction })
}

fn last_cache_event(host: &MemoryHost) -> Value {
    serde_json::to_value(host.events().last().unwrap()).unwrap()["cache"].clone()
}

#[test]
fn a_paraphrase_is_a_semantic_hit_with_its_similarity() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    let (first, body) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!(header(&first, "x-gateway-cache"), Some("miss"));
    assert_eq!(content(&body), "answer 1");
    let (second, body) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE_PARAPHRASE), &[]));
    assert_eq!(second.status, 200);
    assert_eq!(header(&second, "x-gateway-cache"), Some("semantic-hit"));
    assert_eq!(header(&second, "x-gateway-cache-similarity"), Some("0.9500"));
    assert!(header(&second, "age").is_some());
    assert_eq!(content(&body), "answer 1", "the earlier answer");
    assert_eq!(upstream.chats.get(), 1);
    let event = last_cache_event(&host);
    assert_eq!(event["status"], "semantic_hit");
    assert!((event["similarity"].as_f64().unwrap() - 0.95).abs() < 1e-3, "{event}");
    assert_eq!(event["embedding_tokens"], 7);
    assert_eq!(event["saved"]["total_tokens"], 1500);
}

#[test]
fn a_changed_number_is_a_miss_however_similar() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    run(&gateway, &host, chat_request(ALICE, ask(PRIME_17), &[]));
    let (second, body) = run(&gateway, &host, chat_request(ALICE, ask(PRIME_19), &[]));
    assert_eq!(header(&second, "x-gateway-cache"), Some("miss"), "0.99 similar, but 17 is not 19");
    assert_eq!(header(&second, "x-gateway-cache-similarity"), None);
    assert_eq!(content(&body), "answer 2");
    assert_eq!(upstream.chats.get(), 2);
}

#[test]
fn another_consumer_searches_another_partition() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    let (bob, _) = run(&gateway, &host, chat_request(BOB, ask(FRANCE_PARAPHRASE), &[]));
    assert_eq!(header(&bob, "x-gateway-cache"), Some("miss"));
    assert_eq!(upstream.chats.get(), 2);
    assert_eq!(indexed(&host, "alice", ask(FRANCE), None), 1);
    assert_eq!(indexed(&host, "bob", ask(FRANCE), None), 1);
}

#[test]
fn another_system_prompt_is_another_partition() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    run(&gateway, &host, chat_request(ALICE, ask_with_system("Answer in one word.", FRANCE), &[]));
    let (other, _) = run(&gateway, &host, chat_request(ALICE, ask_with_system("Answer at length.", FRANCE_PARAPHRASE), &[]));
    assert_eq!(header(&other, "x-gateway-cache"), Some("miss"));
    let (same, body) = run(&gateway, &host, chat_request(ALICE, ask_with_system("Answer in one word.", FRANCE_PARAPHRASE), &[]));
    assert_eq!(header(&same, "x-gateway-cache"), Some("semantic-hit"), "the same system prompt shares the partition");
    assert_eq!(content(&body), "answer 1");
    assert_eq!(upstream.chats.get(), 2);
}

#[test]
fn below_the_threshold_is_a_miss() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    let (far, _) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE_FAR), &[]));
    assert_eq!(header(&far, "x-gateway-cache"), Some("miss"), "0.70 < 0.78");
    assert_eq!(upstream.chats.get(), 2);
}

#[test]
fn a_failing_embedding_upstream_is_a_miss_and_the_answer_is_served() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    upstream.embeddings_fail.set(true);
    let (response, body) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!(response.status, 200);
    assert_eq!(header(&response, "x-gateway-cache"), Some("miss"));
    assert_eq!(content(&body), "answer 1");
    let event = last_cache_event(&host);
    assert_eq!(event["semantic_error"], "embedding: upstream_error", "{event}");
    assert_eq!(indexed(&host, "alice", ask(FRANCE), None), 0, "nothing to index without a vector");
    // The exact tier still works.
    let (exact, _) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!(header(&exact, "x-gateway-cache"), Some("hit"));
    assert_eq!(upstream.chats.get(), 1);
}

#[test]
fn an_unreachable_index_is_a_miss_and_the_answer_is_served() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    host.break_vectors(true);
    let (response, body) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!((response.status, content(&body)), (200, "answer 1".to_string()));
    assert_eq!(last_cache_event(&host)["semantic_error"], "index: unavailable");
    host.break_vectors(false);
    let (paraphrase, _) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE_PARAPHRASE), &[]));
    assert_eq!(header(&paraphrase, "x-gateway-cache"), Some("miss"), "the broken fill indexed nothing");
    assert_eq!(upstream.chats.get(), 2);
}

#[test]
fn a_semantic_hit_charges_one_request_and_no_tokens() {
    let limits = json!({"rate_limits": [
        { "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 100 },
        { "scope": ["consumer"], "metric": "total_tokens", "window": "minute", "limit": 1000000 }
    ]});
    let (host, _) = host(limits);
    let gateway = Gateway::new();
    let used = |metric: policy::limits::Metric| {
        let reply = futures::executor::block_on(host.counter("consumer:alice", None, &policy::limits::CounterOp::Status)).unwrap();
        let policy::limits::CounterReply::Status { limits } = reply else { panic!("status") };
        limits.into_iter().find(|l| l.metric == metric).unwrap().used
    };
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!(used(policy::limits::Metric::TotalTokens), 1500);
    let (hit, _) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE_PARAPHRASE), &[]));
    assert_eq!(header(&hit, "x-gateway-cache"), Some("semantic-hit"));
    assert_eq!(used(policy::limits::Metric::TotalTokens), 1500, "no tokens on a semantic hit");
    assert_eq!(used(policy::limits::Metric::Requests), 2, "but a request");
    assert_eq!(host.events().last().unwrap().usage, None);
}

#[test]
fn one_embedding_per_request_and_one_vector_per_fill() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!(*upstream.embeddings.borrow(), [FRANCE], "embedded once, for lookup and store");
    assert_eq!(indexed(&host, "alice", ask(FRANCE), None), 1);
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE_PARAPHRASE), &[]));
    assert_eq!(indexed(&host, "alice", ask(FRANCE), None), 1, "a hit indexes nothing");
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!(*upstream.embeddings.borrow(), [FRANCE, FRANCE_PARAPHRASE], "an exact hit embeds nothing");
    run(&gateway, &host, chat_request(ALICE, ask(PRIME_17), &[]));
    assert_eq!(indexed(&host, "alice", ask(FRANCE), None), 2, "each fill indexes its query");
    assert_eq!(upstream.embeddings.borrow().len(), 3);
}

#[test]
fn no_store_indexes_nothing_and_no_cache_skips_the_tier() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[("cache-control", "no-store")]));
    assert_eq!(indexed(&host, "alice", ask(FRANCE), None), 0);
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    assert_eq!(indexed(&host, "alice", ask(FRANCE), None), 1);
    let embedded = upstream.embeddings.borrow().len();
    let (fresh, _) = run(&gateway, &host, chat_request(ALICE, ask(FRANCE_PARAPHRASE), &[("cache-control", "no-cache")]));
    assert_eq!(header(&fresh, "x-gateway-cache"), Some("bypass"));
    assert_eq!(upstream.embeddings.borrow().len(), embedded, "a bypass does not embed");
    assert_eq!(upstream.chats.get(), 3);
}

#[test]
fn a_residency_bound_tenant_is_indexed_only_in_its_jurisdiction() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    let carol = |text: &str, in_eu: bool| {
        let mut request = chat_request(CAROL, ask(text), &[]);
        request.facts.is_eu_country = Some(in_eu);
        request
    };
    let (outside, _) = run(&gateway, &host, carol(FRANCE, false));
    assert_eq!(header(&outside, "x-gateway-cache"), Some("bypass"));
    assert!(upstream.embeddings.borrow().is_empty(), "no tier may hold it here: not even embedded");
    run(&gateway, &host, carol(FRANCE, true));
    assert_eq!(indexed(&host, "carol", ask(FRANCE), Some("eu")), 1);
    assert_eq!(indexed(&host, "carol", ask(FRANCE), None), 0, "never in a global partition");
    let (hit, _) = run(&gateway, &host, carol(FRANCE_PARAPHRASE, true));
    assert_eq!(header(&hit, "x-gateway-cache"), Some("semantic-hit"));
}

#[test]
fn a_streamed_request_gets_a_semantic_hit_as_a_valid_stream() {
    let (host, upstream) = host(json!({}));
    let gateway = Gateway::new();
    run(&gateway, &host, chat_request(ALICE, ask(FRANCE), &[]));
    let mut streamed = ask(FRANCE_PARAPHRASE);
    streamed["stream"] = json!(true);
    let (response, body) = run(&gateway, &host, chat_request(ALICE, streamed, &[]));
    assert_eq!(header(&response, "x-gateway-cache"), Some("semantic-hit"));
    assert!(header(&response, "content-type").unwrap().starts_with("text/event-stream"));
    assert!(body.ends_with("data: [DONE]\n\n"), "the stream ends with [DONE]: {body}");
    let chunks = sse_events(&body);
    assert!(chunks.iter().all(|(_, chunk)| chunk["object"] == "chat.completion.chunk"), "{body}");
    let text = streamed_text(&body);
    assert_eq!(text, "answer 1");
    assert_eq!(upstream.chats.get(), 1);
}
