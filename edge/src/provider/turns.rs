//! A conversation as alternating user and assistant turns of content blocks, the shape that
//! Anthropic's Messages API and Bedrock's Converse share: tool results are blocks of a user turn
//! and come before its other content, consecutive messages of one role merge into one turn, and
//! empty text is left out (both refuse it). Each provider says only how its blocks look
//! ([`Blocks`]); which messages count and every error are the same for both.

use serde_json::{json, Value};

use super::content::{self, invalid, Image, Part, PastToolCall};
use crate::error::GatewayError;
use crate::openai::ChatRequest;

/// How one provider writes content blocks.
pub trait Blocks {
    /// A text block; the text is never empty.
    fn text(text: String) -> Value;
    /// An image block; `at` names the content part for errors.
    fn image(image: Image, at: &str) -> Result<Value, GatewayError>;
    /// A tool call the assistant made earlier, input as an object.
    fn tool_call(call: PastToolCall) -> Value;
    /// The result of tool call `id`; `text` may be empty.
    fn tool_result(id: &str, text: String) -> Value;
    /// Whether `block` is a tool result.
    fn is_tool_result(block: &Value) -> bool;
}

/// One turn being built; consecutive same-role messages are merged into it.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// The non-system messages (`indexes` into `request.messages`) as alternating
/// `{"role", "content": [blocks]}` turns.
pub fn turns<B: Blocks>(request: &ChatRequest, indexes: &[usize]) -> Result<Vec<Value>, GatewayError> {
    let mut turns: Vec<Turn> = Vec::new();
    // The synthetic id given to the last legacy `function_call`, for the `function` reply.
    let mut legacy_id: Option<String> = None;
    for &i in indexes {
        let Some(message) = request.messages.get(i) else { continue };
        let at = format!("messages[{i}]");
        let (role, blocks) = match message.get("role").and_then(Value::as_str).unwrap_or_default() {
            "user" => ("user", user_blocks::<B>(message, &at)?),
            "assistant" => ("assistant", assistant_blocks::<B>(message, i, &at, &mut legacy_id)?),
            "tool" => ("user", vec![result_block::<B>(content::tool_call_id(message, &at)?, message, &at)?]),
            "function" => ("user", vec![result_block::<B>(content::legacy_call_id(&legacy_id, &at)?, message, &at)?]),
            other => return Err(invalid(format!("{at}.role '{other}' is not supported here."), format!("{at}.role"))),
        };
        if blocks.is_empty() {
            if role == "user" {
                return Err(invalid(format!("{at}.content must not be empty."), format!("{at}.content")));
            }
            // An assistant turn with no text and no tool calls carries nothing, and empty
            // content is refused: it is left out.
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    Ok(turns
        .into_iter()
        .map(|mut turn| {
            if turn.role == "user" {
                // Tool results first, as both providers require; the sort is stable.
                turn.blocks.sort_by_key(|b| !B::is_tool_result(b));
            }
            json!({ "role": turn.role, "content": turn.blocks })
        })
        .collect())
}

fn user_blocks<B: Blocks>(message: &Value, at: &str) -> Result<Vec<Value>, GatewayError> {
    let at = format!("{at}.content");
    let mut blocks = Vec::new();
    for (j, part) in content::parts(message.get("content"), &at)?.into_iter().enumerate() {
        match part {
            // An empty text part carries nothing.
            Part::Text(text) if text.is_empty() => {}
            Part::Text(text) => blocks.push(B::text(text)),
            Part::Image(image) => blocks.push(B::image(image, &format!("{at}[{j}].image_url.url"))?),
        }
    }
    Ok(blocks)
}

/// An assistant message's text and tool calls.
fn assistant_blocks<B: Blocks>(message: &Value, i: usize, at: &str, legacy_id: &mut Option<String>) -> Result<Vec<Value>, GatewayError> {
    let mut blocks = Vec::new();
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    if !text.is_empty() {
        blocks.push(B::text(text));
    }
    for call in content::identified_tool_calls(message, i, at, legacy_id)? {
        blocks.push(B::tool_call(call));
    }
    Ok(blocks)
}

fn result_block<B: Blocks>(id: &str, message: &Value, at: &str) -> Result<Value, GatewayError> {
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    Ok(B::tool_result(id, text))
}
