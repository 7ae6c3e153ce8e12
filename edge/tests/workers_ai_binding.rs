//! Workers AI through the Worker's AI binding, through the whole pipeline against the in-memory
//! host (which scripts the binding like an upstream): native inputs out, OpenAI's shape back,
//! streams included, and a clear error where the host has no binding.

use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundResponse, Request, RequestFacts};
use serde_json::{json, Value};

fn config() -> String {
    json!({
        "auth": { "mode": "none" },
        "providers": { "cf": { "kind": "workers_ai", "binding": "AI" } },
        "models": {
            "llama": { "provider": "cf", "upstream_model": "@cf/meta/llama-3.1-8b-instruct" },
            "bge": { "provider": "cf", "upstream_model": "@cf/baai/bge-small-en-v1.5", "type": "embeddings" }
        }
    })
    .to_string()
}

fn post(path: &str, body: Value) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Body::Bytes(body.to_string().into_bytes()),
        facts: RequestFacts::default(),
    }
}

fn answer(content_type: &str, body: &str) -> Scripted {
    Scripted::Respond(OutboundResponse { status: 200, headers: vec![("content-type".into(), content_type.into())], body: Body::Bytes(body.as_bytes().to_vec()) })
}

fn run(host: &MemoryHost, request: Request) -> (u16, String) {
    host.block_on(async {
        let response = Gateway::new().handle(request, host).await;
        (response.status, String::from_utf8(collect_body(response.body).await).unwrap())
    })
}

#[test]
fn chat_goes_through_the_binding_in_its_native_format() {
    let host = MemoryHost::new().with_config(&config()).with_upstream(|r| {
        assert_eq!(r.url, "binding://AI/@cf/meta/llama-3.1-8b-instruct");
        answer("application/json", r#"{"response":"Bonjour","usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#)
    });
    let (status, body) = run(&host, post("/v1/chat/completions", json!({ "model": "llama", "max_tokens": 20, "messages": [{ "role": "user", "content": "Say hi in French" }] })));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Bonjour");
    assert_eq!(body["usage"]["total_tokens"], 11);
    let inputs: Value = serde_json::from_slice(&host.requests()[0].body).unwrap();
    assert_eq!(inputs, json!({ "messages": [{ "role": "user", "content": "Say hi in French" }], "max_tokens": 20 }));
    assert_eq!(host.events().pop().unwrap().usage.unwrap().output_tokens, 2);
}

#[test]
fn streams_are_translated_to_openai_chunks() {
    let host = MemoryHost::new().with_config(&config()).with_upstream(|_| {
        answer("text/event-stream", "data: {\"response\":\"Bon\"}\n\ndata: {\"response\":\"jour\"}\n\ndata: {\"response\":\"\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\ndata: [DONE]\n\n")
    });
    let (status, body) = run(&host, post("/v1/chat/completions", json!({ "model": "llama", "stream": true, "stream_options": { "include_usage": true }, "messages": [{ "role": "user", "content": "hi" }] })));
    assert_eq!(status, 200);
    let chunks: Vec<Value> = body.lines().filter_map(|l| l.strip_prefix("data: ")).filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, "Bonjour");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 11);
    assert!(body.trim_end().ends_with("data: [DONE]"));
}

#[test]
fn embeddings_go_through_the_binding() {
    let host = MemoryHost::new().with_config(&config()).with_upstream(|_| answer("application/json", r#"{"shape":[1,3],"data":[[0.5,0.25,-1.0]]}"#));
    let (status, body) = run(&host, post("/v1/embeddings", json!({ "model": "bge", "input": "hello" })));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"][0]["embedding"], json!([0.5, 0.25, -1.0]));
}

#[test]
fn binding_and_rest_settings_are_exclusive() {
    let doc = config().replace(r#""binding":"AI""#, r#""binding":"AI","account_id":"0123456789abcdef0123456789abcdef","api_token_secret":"CF_TOKEN""#);
    let errors = edge::config::Config::parse(&doc).unwrap_err().to_string();
    assert!(errors.contains("providers.cf.binding"), "{errors}");
}
