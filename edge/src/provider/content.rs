//! Reading an OpenAI chat request the way every translating provider needs it: system text
//! apart, content parts (text, image URL, image data URL), tools, tool choice, response format,
//! stop sequences and sampling parameters, each checked once with errors that name the field.

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::openai::ChatRequest;

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Image(Image),
}

/// An image given as a URL or inline as base64 (from a `data:` URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Url(String),
    Base64 { media_type: String, data: String },
}

/// A client error naming the field at fault: the one error every request translator returns.
pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest { message: message.into(), param: Some(param.into()) }
}

/// Parse a `data:<media type>;base64,<data>` URL.
pub fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    if media_type.is_empty() || data.is_empty() {
        return None;
    }
    Some((media_type.to_ascii_lowercase(), data.to_string()))
}

/// The parts of a message's `content` (a string, an array of parts, or null/absent = none).
/// `at` is the field path for errors, e.g. `messages[2].content`.
pub fn parts(content: Option<&Value>, at: &str) -> Result<Vec<Part>, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{at}[{i}]");
                match item.get("type").and_then(Value::as_str) {
                    Some("text") | Some("input_text") | Some("refusal") => item
                        .get("text")
                        .or_else(|| item.get("refusal"))
                        .and_then(Value::as_str)
                        .map(|t| Part::Text(t.to_string()))
                        .ok_or_else(|| invalid(format!("{at}.text must be a string."), format!("{at}.text"))),
                    Some("image_url") => {
                        let url = item
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid(format!("{at}.image_url.url must be a string."), format!("{at}.image_url.url")))?;
                        if url.starts_with("data:") {
                            let (media_type, data) = parse_data_url(url).ok_or_else(|| {
                                invalid(
                                    format!("{at}.image_url.url must be an https URL or a data:<type>;base64,<data> URL."),
                                    format!("{at}.image_url.url"),
                                )
                            })?;
                            Ok(Part::Image(Image::Base64 { media_type, data }))
                        } else {
                            Ok(Part::Image(Image::Url(url.to_string())))
                        }
                    }
                    Some(other) => Err(invalid(
                        format!("{at}.type '{other}' is not supported by this provider (use text or image_url)."),
                        format!("{at}.type"),
                    )),
                    None => Err(invalid(format!("{at}.type is required."), format!("{at}.type"))),
                }
            })
            .collect(),
        Some(_) => Err(invalid(format!("{at} must be a string or an array of content parts."), at.to_string())),
    }
}

/// The text of a content value, its text parts joined (for roles that take only text).
pub fn text_of(content: Option<&Value>, at: &str) -> Result<String, GatewayError> {
    let mut text = String::new();
    for part in parts(content, at)? {
        match part {
            Part::Text(t) => text.push_str(&t),
            Part::Image(_) => return Err(invalid(format!("{at} may only contain text here."), at.to_string())),
        }
    }
    Ok(text)
}

/// A function tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (an empty object schema when absent).
    pub parameters: Value,
    pub strict: Option<bool>,
}

/// The request's `tools` (also the legacy `functions`).
pub fn tools(request: &ChatRequest) -> Result<Vec<Tool>, GatewayError> {
    let mut out = Vec::new();
    if let Some(tools) = request.rest.get("tools").filter(|t| !t.is_null()) {
        let list = tools.as_array().ok_or_else(|| invalid("'tools' must be an array.", "tools"))?;
        for (i, tool) in list.iter().enumerate() {
            let at = format!("tools[{i}]");
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid(format!("{at}.type must be 'function'."), format!("{at}.type")));
            }
            let function = tool.get("function").ok_or_else(|| invalid(format!("{at}.function is required."), format!("{at}.function")))?;
            out.push(function_tool(function, &format!("{at}.function"))?);
        }
    } else if let Some(functions) = request.rest.get("functions").and_then(Value::as_array) {
        for (i, function) in functions.iter().enumerate() {
            out.push(function_tool(function, &format!("functions[{i}]"))?);
        }
    }
    Ok(out)
}

fn function_tool(function: &Value, at: &str) -> Result<Tool, GatewayError> {
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(format!("{at}.name is required."), format!("{at}.name")))?;
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => serde_json::json!({ "type": "object", "properties": {} }),
        Some(p) if p.is_object() => p.clone(),
        Some(_) => return Err(invalid(format!("{at}.parameters must be a JSON Schema object."), format!("{at}.parameters"))),
    };
    Ok(Tool {
        name: name.to_string(),
        description: function.get("description").and_then(Value::as_str).map(str::to_string),
        parameters,
        strict: function.get("strict").and_then(Value::as_bool),
    })
}

/// How the model may use the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Must call some tool.
    Required,
    /// Must call this function.
    Function(String),
}

/// The request's `tool_choice` (or legacy `function_call`); `None` when not set.
pub fn tool_choice(request: &ChatRequest) -> Result<Option<ToolChoice>, GatewayError> {
    let (value, field) = match (request.rest.get("tool_choice"), request.rest.get("function_call")) {
        (Some(v), _) if !v.is_null() => (v, "tool_choice"),
        (_, Some(v)) if !v.is_null() => (v, "function_call"),
        _ => return Ok(None),
    };
    match value {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(invalid(format!("'{field}' must be auto, none, required or a function, got '{other}'."), field)),
        },
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| o.get("name"))
            .and_then(Value::as_str)
            .map(|n| Some(ToolChoice::Function(n.to_string())))
            .ok_or_else(|| invalid(format!("'{field}' must name a function."), field)),
        _ => Err(invalid(format!("'{field}' must be a string or an object."), field)),
    }
}

/// Name of the tool that forces JSON output for `response_format: json_schema` on providers
/// without a JSON mode (Anthropic, Bedrock): its input schema is the client's schema, and its
/// input is the answer. Reserved: client tools may not use it, so a call of it is always the
/// JSON answer.
pub const JSON_TOOL: &str = "gateway_json_response";

/// Appended to the system prompt for `response_format: json_object` on those providers.
pub const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object only, with no text before or after it.";

/// The client's tools and tool choice where [`JSON_TOOL`] may be added beside them: its name is
/// refused, and a forced function must be one of the tools.
pub fn tools_beside_json_tool(request: &ChatRequest) -> Result<(Vec<Tool>, Option<ToolChoice>), GatewayError> {
    let tools = tools(request)?;
    if tools.iter().any(|t| t.name == JSON_TOOL) {
        return Err(invalid(format!("The tool name '{JSON_TOOL}' is reserved by the gateway."), "tools"));
    }
    let choice = tool_choice(request)?;
    if let Some(ToolChoice::Function(name)) = &choice {
        if !tools.iter().any(|t| &t.name == name) {
            return Err(invalid(format!("'tool_choice' names the function '{name}', which is not in 'tools'."), "tool_choice"));
        }
    }
    Ok((tools, choice))
}

/// The requested output format.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    /// Any JSON object (`json_object`).
    JsonObject,
    /// JSON matching a schema (`json_schema`).
    JsonSchema { name: String, schema: Value, strict: bool },
}

pub fn response_format(request: &ChatRequest) -> Result<ResponseFormat, GatewayError> {
    let Some(format) = request.rest.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let spec = format.get("json_schema").ok_or_else(|| {
                invalid("'response_format.json_schema' is required for type json_schema.", "response_format.json_schema")
            })?;
            let schema = spec.get("schema").filter(|s| s.is_object()).cloned().ok_or_else(|| {
                invalid("'response_format.json_schema.schema' must be an object.", "response_format.json_schema.schema")
            })?;
            Ok(ResponseFormat::JsonSchema {
                name: spec.get("name").and_then(Value::as_str).unwrap_or("response").to_string(),
                schema,
                strict: spec.get("strict").and_then(Value::as_bool).unwrap_or(false),
            })
        }
        _ => Err(invalid("'response_format.type' must be text, json_object or json_schema.", "response_format.type")),
    }
}

/// The request's `stop` sequences (a string or an array of strings).
pub fn stop_sequences(request: &ChatRequest) -> Result<Vec<String>, GatewayError> {
    match request.rest.get("stop") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| invalid("'stop' must be a string or an array of strings.", "stop")))
            .collect(),
        Some(_) => Err(invalid("'stop' must be a string or an array of strings.", "stop")),
    }
}

/// A numeric sampling parameter, if set (`temperature`, `top_p`, `frequency_penalty`, ...).
pub fn number(request: &ChatRequest, key: &str) -> Result<Option<f64>, GatewayError> {
    match request.rest.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| invalid(format!("'{key}' must be a number."), key)),
    }
}

/// The system and developer messages' text, in order, and the index of every other message.
pub fn split_system(request: &ChatRequest) -> Result<(Vec<String>, Vec<usize>), GatewayError> {
    let mut system = Vec::new();
    let mut rest = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        match message.get("role").and_then(Value::as_str) {
            Some("system") | Some("developer") => {
                system.push(text_of(message.get("content"), &format!("messages[{i}].content"))?);
            }
            _ => rest.push(i),
        }
    }
    Ok((system, rest))
}

/// A tool call the assistant made earlier in the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct PastToolCall {
    pub id: String,
    pub name: String,
    /// The parsed arguments (providers want an object, OpenAI sends a JSON string).
    pub arguments: Value,
}

/// An assistant message's `tool_calls` (or legacy `function_call`).
pub fn past_tool_calls(message: &Value, at: &str) -> Result<Vec<PastToolCall>, GatewayError> {
    let mut out = Vec::new();
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (i, call) in calls.iter().enumerate() {
            let at = format!("{at}.tool_calls[{i}]");
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let function = call.get("function").ok_or_else(|| invalid(format!("{at}.function is required."), format!("{at}.function")))?;
            out.push(past_call(id, function, &at)?);
        }
    } else if let Some(function) = message.get("function_call").filter(|f| f.is_object()) {
        out.push(past_call(String::new(), function, &format!("{at}.function_call"))?);
    }
    Ok(out)
}

/// [`past_tool_calls`] with the ids providers that match results to calls by id need: each
/// call's own id (required), or for a legacy `function_call` (which has none) `call_legacy_{i}`,
/// recorded in `legacy_id` so the following `function` reply can be matched to it. Names are
/// required.
pub fn identified_tool_calls(message: &Value, i: usize, at: &str, legacy_id: &mut Option<String>) -> Result<Vec<PastToolCall>, GatewayError> {
    let legacy = message.get("tool_calls").and_then(Value::as_array).is_none();
    let mut calls = past_tool_calls(message, at)?;
    for (j, call) in calls.iter_mut().enumerate() {
        if legacy {
            call.id = format!("call_legacy_{i}");
            *legacy_id = Some(call.id.clone());
        } else if call.id.is_empty() {
            return Err(invalid(format!("{at}.tool_calls[{j}].id is required."), format!("{at}.tool_calls[{j}].id")));
        }
        if call.name.is_empty() {
            let field = if legacy { format!("{at}.function_call.name") } else { format!("{at}.tool_calls[{j}].function.name") };
            return Err(invalid(format!("{field} is required."), field));
        }
    }
    Ok(calls)
}

/// The call a `tool` message answers: its `tool_call_id`, required.
pub fn tool_call_id<'a>(message: &'a Value, at: &str) -> Result<&'a str, GatewayError> {
    message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid(format!("{at}.tool_call_id is required for tool messages."), format!("{at}.tool_call_id")))
}

/// The call a legacy `function` message answers: the last legacy `function_call`, whose id
/// [`identified_tool_calls`] recorded in `legacy_id`.
pub fn legacy_call_id<'a>(legacy_id: &'a Option<String>, at: &str) -> Result<&'a str, GatewayError> {
    legacy_id.as_deref().ok_or_else(|| invalid(format!("{at} answers no earlier assistant function_call."), format!("{at}.role")))
}

fn past_call(id: String, function: &Value, at: &str) -> Result<PastToolCall, GatewayError> {
    let name = function.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let arguments = match function.get("arguments") {
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| invalid(format!("{at}.arguments must be a JSON object encoded as a string."), format!("{at}.arguments")))?,
        Some(v) if v.is_object() => v.clone(),
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(_) => return Err(invalid(format!("{at}.arguments must be a JSON string."), format!("{at}.arguments"))),
    };
    Ok(PastToolCall { id, name, arguments })
}

/// Keep only the members of `rest` whose names are in `allowed` (provider-specific parameters
/// the target understands), for translators that pass some through.
pub fn pass_through(rest: &Map<String, Value>, allowed: &[&str], into: &mut Map<String, Value>) {
    for key in allowed {
        if let Some(value) = rest.get(*key) {
            into.insert((*key).to_string(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::parse_request;

    fn request(body: &str) -> ChatRequest {
        parse_request(body.as_bytes()).unwrap()
    }

    #[test]
    fn content_parts_and_data_urls() {
        let content = serde_json::json!([
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/PNG;base64,iVBOR"}},
            {"type": "image_url", "image_url": {"url": "https://x.example/cat.jpg"}}
        ]);
        let got = parts(Some(&content), "messages[0].content").unwrap();
        assert_eq!(got[0], Part::Text("look".into()));
        assert_eq!(got[1], Part::Image(Image::Base64 { media_type: "image/png".into(), data: "iVBOR".into() }));
        assert_eq!(got[2], Part::Image(Image::Url("https://x.example/cat.jpg".into())));
        let bad = serde_json::json!([{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]);
        let err = parts(Some(&bad), "messages[0].content").unwrap_err();
        assert!(matches!(err, GatewayError::InvalidRequest { param: Some(p), .. } if p == "messages[0].content[0].image_url.url"));
    }

    #[test]
    fn tools_choice_format_and_stop() {
        let r = request(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],
               "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
               "tool_choice":{"type":"function","function":{"name":"f"}},
               "response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"},"strict":true}},
               "stop":"END"}"#,
        );
        assert_eq!(tools(&r).unwrap()[0].name, "f");
        assert_eq!(tool_choice(&r).unwrap(), Some(ToolChoice::Function("f".into())));
        assert!(matches!(response_format(&r).unwrap(), ResponseFormat::JsonSchema { strict: true, .. }));
        assert_eq!(stop_sequences(&r).unwrap(), vec!["END".to_string()]);
    }

    #[test]
    fn past_tool_call_arguments_are_parsed() {
        let m = serde_json::json!({"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]});
        let calls = past_tool_calls(&m, "messages[1]").unwrap();
        assert_eq!(calls[0].arguments["a"], 1);
        let bad = serde_json::json!({"role":"assistant","tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{oops"}}]});
        assert!(past_tool_calls(&bad, "messages[1]").is_err());
    }
}
