//! JSON Schemas rewritten to Gemini's `Schema`, for tool parameters and `json_schema` response
//! formats.

use serde_json::{json, Map, Value};

/// Nesting bound for schema rewriting (also stops `$ref` cycles).
const MAX_SCHEMA_DEPTH: usize = 32;

/// How many `$ref`s are inlined along one path: recursive types are cut off below this.
const MAX_REF_DEPTH: usize = 3;

/// Most schema nodes one rewrite may produce: inlining a recursive `$ref` that appears twice
/// per level would otherwise grow exponentially with the depth bound.
const MAX_SCHEMA_NODES: usize = 2_000;

/// A JSON Schema rewritten to Gemini's `Schema` (an OpenAPI 3.0 subset).
///
/// Kept: `type` (upper-cased), `format` (only the ones Gemini lists for the type), `title`,
/// `description`, `nullable`, `enum` (string enums only), `properties`, `required` (only names
/// that are properties), `items`, `anyOf`, `minItems`/`maxItems`, `minLength`/`maxLength`,
/// `minProperties`/`maxProperties`, `minimum`/`maximum`, `pattern`, `example`, `default`,
/// `propertyOrdering`. Local `$ref`s (`#/$defs/..`, `#/definitions/..`) are inlined, at most
/// [`MAX_REF_DEPTH`] deep (recursive types are cut off there); `oneOf` is read as `anyOf`; a
/// one-element `allOf` is merged; everything else is dropped.
pub fn schema(value: &Value) -> Value {
    let mut walk = Walk { root: value, budget: MAX_SCHEMA_NODES };
    Value::Object(rewrite(value, 0, 0, &mut walk))
}

/// What one schema rewrite carries along: the root (for `$ref`s) and the nodes left.
struct Walk<'a> {
    root: &'a Value,
    budget: usize,
}

fn rewrite(value: &Value, depth: usize, refs: usize, walk: &mut Walk<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(object) = value.as_object() else { return out };
    if depth > MAX_SCHEMA_DEPTH || walk.budget == 0 {
        return out;
    }
    walk.budget -= 1;
    // A reference or a single-element allOf: the target, with this schema's own annotations.
    let root = walk.root;
    if let Some(target) = object.get("$ref").and_then(Value::as_str).and_then(|r| resolve(root, r)) {
        if refs < MAX_REF_DEPTH {
            out = rewrite(target, depth + 1, refs + 1, walk);
        }
    } else if let Some(only) = object.get("allOf").and_then(Value::as_array).filter(|a| a.len() == 1).and_then(|a| a.first()) {
        out = rewrite(only, depth + 1, refs, walk);
    }
    let mut nullable = false;
    match object.get("type") {
        Some(Value::String(t)) if t == "null" => nullable = true,
        Some(Value::String(t)) => {
            if let Some(t) = gemini_type(t) {
                out.insert("type".into(), json!(t));
            }
        }
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            nullable = names.contains(&"null");
            let kinds: Vec<&str> = names.iter().filter_map(|t| gemini_type(t)).collect();
            match kinds.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), json!(one));
                }
                many => {
                    out.insert("anyOf".into(), Value::Array(many.iter().map(|t| json!({ "type": t })).collect()));
                }
            }
        }
        _ => {}
    }
    if let Some(variants) = object.get("anyOf").or_else(|| object.get("oneOf")).and_then(Value::as_array) {
        let mut kept = Vec::new();
        for variant in variants {
            if variant.get("type").and_then(Value::as_str) == Some("null") {
                nullable = true;
            } else {
                kept.push(Value::Object(rewrite(variant, depth + 1, refs, walk)));
            }
        }
        match kept.len() {
            0 => {}
            1 => {
                if let Some(Value::Object(only)) = kept.pop() {
                    for (key, value) in only {
                        out.entry(key).or_insert(value);
                    }
                }
            }
            _ => {
                out.insert("anyOf".into(), Value::Array(kept));
            }
        }
    }
    for key in ["title", "description", "pattern"] {
        if let Some(text) = object.get(key).and_then(Value::as_str) {
            out.insert(key.into(), json!(text));
        }
    }
    for key in ["minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"] {
        if let Some(n) = object.get(key).and_then(Value::as_u64) {
            out.insert(key.into(), json!(n));
        }
    }
    for key in ["minimum", "maximum"] {
        if let Some(n) = object.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), n.clone());
        }
    }
    for key in ["example", "default"] {
        if let Some(v) = object.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if nullable || object.get("nullable").and_then(Value::as_bool) == Some(true) {
        out.insert("nullable".into(), json!(true));
    }
    let strings = |v: &Value| -> Option<Vec<Value>> { v.as_array()?.iter().map(|e| e.as_str().map(|s| json!(s))).collect() };
    if let Some(values) = object.get("enum").and_then(strings) {
        out.insert("enum".into(), Value::Array(values));
    } else if let Some(constant) = object.get("const").and_then(Value::as_str) {
        out.insert("enum".into(), json!([constant]));
    }
    if let Some(format) = object.get("format").and_then(Value::as_str) {
        let allowed: &[&str] = match out.get("type").and_then(Value::as_str) {
            Some("STRING") => &["enum", "date-time"],
            Some("NUMBER") => &["float", "double"],
            Some("INTEGER") => &["int32", "int64"],
            _ => &[],
        };
        if allowed.contains(&format) {
            out.insert("format".into(), json!(format));
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let rewritten: Map<String, Value> =
            properties.iter().map(|(name, s)| (name.clone(), Value::Object(rewrite(s, depth + 1, refs, walk)))).collect();
        out.insert("properties".into(), Value::Object(rewritten));
    }
    if let Some(ordering) = object.get("propertyOrdering").and_then(strings) {
        out.insert("propertyOrdering".into(), Value::Array(ordering));
    }
    if let Some(required) = object.get("required").and_then(Value::as_array) {
        let known = out.get("properties").and_then(Value::as_object);
        let kept: Vec<Value> = required
            .iter()
            .filter_map(Value::as_str)
            .filter(|name| known.is_some_and(|p| p.contains_key(*name)))
            .map(|name| json!(name))
            .collect();
        if !kept.is_empty() {
            out.insert("required".into(), Value::Array(kept));
        }
    }
    let items = match object.get("items") {
        Some(Value::Array(tuple)) => tuple.first(),
        other => other,
    };
    if let Some(items) = items.filter(|i| i.is_object()) {
        out.insert("items".into(), Value::Object(rewrite(items, depth + 1, refs, walk)));
    }
    out
}

fn gemini_type(json_type: &str) -> Option<&'static str> {
    Some(match json_type.to_ascii_lowercase().as_str() {
        "string" => "STRING",
        "number" => "NUMBER",
        "integer" => "INTEGER",
        "boolean" => "BOOLEAN",
        "array" => "ARRAY",
        "object" => "OBJECT",
        _ => return None,
    })
}

/// A local JSON pointer reference (`#/...`) inside the root schema.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

