//! OpenAI wire types for the inbound API.
//!
//! Only the fields the gateway acts on are typed; everything else stays in `rest` and is
//! forwarded untouched, so new OpenAI parameters work without a gateway release.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client asked for the final usage chunk of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The output token cap the client asked for, under either of its names.
    pub fn max_output_tokens(&self) -> Option<u64> {
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| self.rest.get(*k).and_then(Value::as_u64))
    }

    /// Number of choices requested (`n`, default 1).
    pub fn choices(&self) -> u64 {
        self.rest.get("n").and_then(Value::as_u64).unwrap_or(1)
    }

    fn validate(&self) -> Result<(), GatewayError> {
        if self.model.trim().is_empty() {
            return Err(invalid("'model' must not be empty.", "model"));
        }
        if self.messages.is_empty() {
            return Err(invalid("'messages' must contain at least one message.", "messages"));
        }
        for (i, message) in self.messages.iter().enumerate() {
            let Some(object) = message.as_object() else {
                return Err(invalid(&format!("messages[{i}] must be an object."), &format!("messages[{i}]")));
            };
            match object.get("role").and_then(Value::as_str) {
                Some(role) if ROLES.contains(&role) => {}
                Some(role) => {
                    return Err(invalid(
                        &format!("messages[{i}].role '{role}' is not one of {}.", ROLES.join(", ")),
                        &format!("messages[{i}].role"),
                    ))
                }
                None => {
                    return Err(invalid(
                        &format!("messages[{i}].role is required and must be a string."),
                        &format!("messages[{i}].role"),
                    ))
                }
            }
        }
        for key in ["max_tokens", "max_completion_tokens"] {
            if let Some(v) = self.rest.get(key) {
                if !v.is_null() && v.as_u64().is_none_or(|n| n == 0) {
                    return Err(invalid(&format!("'{key}' must be a positive integer."), key));
                }
            }
        }
        if let Some(n) = self.rest.get("n") {
            if !n.is_null() && n.as_u64().is_none_or(|n| n == 0 || n > 128) {
                return Err(invalid("'n' must be an integer between 1 and 128.", "n"));
            }
        }
        Ok(())
    }
}

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Value,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl EmbeddingsRequest {
    /// The inputs as a list, each either text or a token array.
    pub fn inputs(&self) -> Vec<EmbeddingInput<'_>> {
        match &self.input {
            Value::String(s) => vec![EmbeddingInput::Text(s)],
            Value::Array(items) if items.iter().all(Value::is_number) => vec![EmbeddingInput::Tokens(items)],
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => EmbeddingInput::Text(s),
                    Value::Array(tokens) => EmbeddingInput::Tokens(tokens),
                    _ => EmbeddingInput::Tokens(&[]),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Requested vector size, if the client set `dimensions`.
    pub fn dimensions(&self) -> Option<u64> {
        self.rest.get("dimensions").and_then(Value::as_u64)
    }

    pub fn wants_base64(&self) -> bool {
        self.rest.get("encoding_format").and_then(Value::as_str) == Some("base64")
    }

    fn validate(&self) -> Result<(), GatewayError> {
        if self.model.trim().is_empty() {
            return Err(invalid("'model' must not be empty.", "model"));
        }
        let ok = match &self.input {
            Value::String(s) => !s.is_empty(),
            Value::Array(items) if items.is_empty() => false,
            Value::Array(items) if items.iter().all(Value::is_number) => items.iter().all(|t| t.as_u64().is_some()),
            Value::Array(items) => items.iter().all(|item| match item {
                Value::String(s) => !s.is_empty(),
                Value::Array(tokens) => !tokens.is_empty() && tokens.iter().all(|t| t.as_u64().is_some()),
                _ => false,
            }),
            _ => false,
        };
        if !ok {
            return Err(invalid(
                "'input' must be a non-empty string, array of strings, array of token ids, or array of token arrays.",
                "input",
            ));
        }
        if let Some(format) = self.rest.get("encoding_format") {
            if !matches!(format.as_str(), Some("float" | "base64")) {
                return Err(invalid("'encoding_format' must be 'float' or 'base64'.", "encoding_format"));
            }
        }
        if let Some(d) = self.rest.get("dimensions") {
            if d.as_u64().is_none_or(|d| d == 0 || d > 8192) {
                return Err(invalid("'dimensions' must be an integer between 1 and 8192.", "dimensions"));
            }
        }
        Ok(())
    }
}

/// One embedding input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EmbeddingInput<'a> {
    Text(&'a str),
    Tokens(&'a [Value]),
}

fn invalid(message: &str, param: &str) -> GatewayError {
    GatewayError::InvalidRequest { message: message.to_string(), param: Some(param.to_string()) }
}

/// A request body type the gateway parses and validates.
pub trait ApiRequest: Sized + for<'de> Deserialize<'de> {
    fn check(&self) -> Result<(), GatewayError>;
}

impl ApiRequest for ChatRequest {
    fn check(&self) -> Result<(), GatewayError> {
        self.validate()
    }
}

impl ApiRequest for EmbeddingsRequest {
    fn check(&self) -> Result<(), GatewayError> {
        self.validate()
    }
}

/// Parse a JSON body into a request: syntax errors are `invalid_json`, wrong shapes are
/// `invalid_request` naming the field.
pub fn parse_request<T: ApiRequest>(body: &[u8]) -> Result<T, GatewayError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson { detail: e.to_string() })?;
    if !value.is_object() {
        return Err(GatewayError::InvalidRequest {
            message: "The request body must be a JSON object.".into(),
            param: None,
        });
    }
    let request: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = crate::config::field_path(e.path().to_string(), &e.inner().to_string());
        let detail = e.into_inner().to_string();
        GatewayError::InvalidRequest {
            message: format!("Invalid request: {detail}{}", if path.is_empty() { String::new() } else { format!(" at '{path}'") }),
            param: (!path.is_empty()).then_some(path),
        }
    })?;
    request.check()?;
    Ok(request)
}

/// Token usage as the provider reported it, normalised.
///
/// `input_tokens` counts every prompt token including cached reads and cache writes (OpenAI's
/// `prompt_tokens`); `cached_input_tokens` is the part read from the provider's cache and
/// `cache_write_tokens` the part written to it. Anthropic and Bedrock report input without the
/// cache parts: translators add them so nothing is counted twice or missed.
/// `output_tokens` includes `reasoning_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Read an OpenAI `usage` object (chat completions and embeddings).
    pub fn from_openai(usage: &Value) -> Option<Usage> {
        let object = usage.as_object()?;
        let get = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let input = get(object.get("prompt_tokens"));
        let output = get(object.get("completion_tokens"));
        Some(Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: object.get("total_tokens").and_then(Value::as_u64).unwrap_or(input.saturating_add(output)),
            cached_input_tokens: get(usage.pointer("/prompt_tokens_details/cached_tokens")),
            cache_write_tokens: 0,
            reasoning_tokens: get(usage.pointer("/completion_tokens_details/reasoning_tokens")),
        })
    }

    /// Usage from separately reported parts, with `input_tokens` the fresh (uncached) input
    /// only, as Anthropic and Bedrock report it.
    pub fn from_parts(fresh_input: u64, cache_read: u64, cache_write: u64, output: u64, reasoning: u64) -> Usage {
        // Saturating: the counts come from the upstream and must not overflow (a panic in debug).
        let input = fresh_input.saturating_add(cache_read).saturating_add(cache_write);
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: input.saturating_add(output),
            cached_input_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: reasoning,
        }
    }

    /// The OpenAI `usage` object for this usage.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": { "cached_tokens": self.cached_input_tokens },
            "completion_tokens_details": { "reasoning_tokens": self.reasoning_tokens }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi","x_extra":1}],"seed":7,"vendor_param":{"a":[1,2]}}"#;
        let request: ChatRequest = parse_request(body).unwrap();
        let back = serde_json::to_value(&request).unwrap();
        assert_eq!(back["seed"], 7);
        assert_eq!(back["vendor_param"]["a"][1], 2);
        assert_eq!(back["messages"][0]["x_extra"], 1);
        assert!(back.get("stream").is_none());
    }

    #[test]
    fn syntax_and_shape_errors_are_distinguished() {
        assert!(matches!(parse_request::<ChatRequest>(b"{nope"), Err(GatewayError::InvalidJson { .. })));
        let err = parse_request::<ChatRequest>(br#"{"model": 5, "messages": []}"#).unwrap_err();
        assert!(matches!(err, GatewayError::InvalidRequest { param: Some(ref p), .. } if p == "model"), "{err:?}");
        let err = parse_request::<ChatRequest>(br#"{"model": "m"}"#).unwrap_err();
        assert!(matches!(err, GatewayError::InvalidRequest { param: Some(ref p), .. } if p == "messages"), "{err:?}");
        let err = parse_request::<ChatRequest>(br#"{"model": "m", "messages": [{"role": "robot"}]}"#).unwrap_err();
        assert!(matches!(err, GatewayError::InvalidRequest { param: Some(ref p), .. } if p == "messages[0].role"));
        let err = parse_request::<ChatRequest>(br#"[1]"#).unwrap_err();
        assert!(matches!(err, GatewayError::InvalidRequest { .. }));
    }

    #[test]
    fn embeddings_input_shapes() {
        for good in [r#""a""#, r#"["a","b"]"#, "[1,2,3]", "[[1],[2,3]]"] {
            let body = format!(r#"{{"model":"e","input":{good}}}"#);
            assert!(parse_request::<EmbeddingsRequest>(body.as_bytes()).is_ok(), "{good}");
        }
        for bad in [r#""""#, "[]", "[[]]", r#"[{"a":1}]"#, "3", "[-1]"] {
            let body = format!(r#"{{"model":"e","input":{bad}}}"#);
            assert!(parse_request::<EmbeddingsRequest>(body.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_is_normalised_from_openai() {
        let usage = Usage::from_openai(&serde_json::json!({
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 8}
        }))
        .unwrap();
        assert_eq!(usage, Usage { input_tokens: 100, output_tokens: 20, total_tokens: 120, cached_input_tokens: 64, cache_write_tokens: 0, reasoning_tokens: 8 });
        assert_eq!(Usage::from_openai(&usage.to_openai()), Some(usage));
        assert_eq!(Usage::from_openai(&Value::Null), None);
    }
}
