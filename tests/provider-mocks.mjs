// Local stand-ins for the non-OpenAI providers, each speaking its real wire format (taken from the
// public API references) and rejecting what the real API would reject, so translation mistakes
// fail the e2e tests instead of passing silently:
//
//   Anthropic Messages   POST /anthropic/v1/messages            (x-api-key, anthropic-version; SSE)
//   Gemini               POST /gemini/v1beta/models/{m}:generateContent | :streamGenerateContent?alt=sse
//   Vertex AI            POST /vertex/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:...
//   Bedrock Converse     POST /bedrock/model/{id}/converse | /converse-stream  (SigV4 verified here,
//                        independently of the gateway; AWS event-stream binary frames)
//   Cohere v2            POST /cohere/v2/chat (SSE when stream), POST /cohere/v2/embed
//   Azure OpenAI         POST /azure/openai/deployments/{d}/chat/completions?api-version=...
//
// Behaviour is scripted by the upstream model name:
//   *-tools         two tool calls (get_weather {"city":"Paris"}, get_time {"tz":"Europe/Paris"})
//   *-error         a stream that sends some text, then the provider's in-stream error event
//   *-truncated     a stream that sends some text, then ends without the terminal event
//   *-stalled       (Anthropic) a stream that sends some text, then stays silent until the peer leaves
//   status-400      the provider's 400 error body
//   anything else   "Hello from <provider>. You said: <last user text>" (streamed word by word)
//
//   const mocks = await startProviderMocks();
//   mocks.baseUrl("anthropic")   // "http://127.0.0.1:PORT/anthropic"
//   mocks.requests               // [{ provider, path, headers, body, closedByPeer }]
//   await mocks.close();

import http from "node:http";
import { createHash, createHmac } from "node:crypto";
import { crc32 } from "node:zlib";
import { upstreamEmbedding } from "./mock-upstream.mjs";

export const PROVIDER_KEYS = Object.freeze({
  anthropic: "sk-ant-test-key-0001",
  gemini: "AIza-test-key-0001",
  vertex: "ya29.test-token-0001",
  cohere: "co-test-key-0001",
  azure: "azure-test-key-0001",
  awsAccessKeyId: "AKIDEXAMPLE",
  awsSecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  awsRegion: "eu-central-1",
});

const TOOL_CALLS = [
  { id: "call_weather_1", name: "get_weather", input: { city: "Paris" } },
  { id: "call_time_2", name: "get_time", input: { tz: "Europe/Paris" } },
];

export function replyText(provider, lastUser) {
  return `Hello from ${provider}. You said: ${lastUser}`;
}

function words(text) {
  return text.match(/\S+\s*/g) ?? [""];
}

function kind(model) {
  if (model.endsWith("-tools")) return "tools";
  if (model.endsWith("-error")) return "error";
  if (model.endsWith("-truncated")) return "truncated";
  if (model.endsWith("-stalled")) return "stalled";
  if (model === "status-400") return "status-400";
  return "text";
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function json(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sse(res) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
}

class Invalid extends Error {}
const check = (ok, message) => {
  if (!ok) throw new Invalid(message);
};
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const onlyKeys = (obj, allowed, where) => {
  for (const k of Object.keys(obj)) check(allowed.includes(k), `${where}.${k}: Extra inputs are not permitted`);
};

// ------------------------------------------------------------------------------------ Anthropic

const ANTHROPIC_TOP = ["model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier"];

function validateAnthropic(body) {
  onlyKeys(body, ANTHROPIC_TOP, "body");
  check(typeof body.model === "string" && body.model, "model: Field required");
  check(Number.isInteger(body.max_tokens) && body.max_tokens > 0, "max_tokens: Field required");
  check(Array.isArray(body.messages) && body.messages.length > 0, "messages: Field required");
  if (body.system !== undefined) {
    check(typeof body.system === "string" || (Array.isArray(body.system) && body.system.every((b) => b.type === "text")), "system: Input should be a valid string or list of text blocks");
  }
  const toolUseIds = new Set();
  body.messages.forEach((m, i) => {
    check(m.role === "user" || m.role === "assistant", `messages.${i}.role: Input should be 'user' or 'assistant'`);
    onlyKeys(m, ["role", "content"], `messages.${i}`);
    const blocks = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content;
    check(Array.isArray(blocks), `messages.${i}.content: Input should be a valid list`);
    blocks.forEach((b, j) => {
      const at = `messages.${i}.content.${j}`;
      switch (b.type) {
        case "text":
          check(typeof b.text === "string", `${at}.text: Field required`);
          break;
        case "image":
          check(isObj(b.source) && ((b.source.type === "base64" && /^image\/(jpeg|png|gif|webp)$/.test(b.source.media_type) && typeof b.source.data === "string") || (b.source.type === "url" && /^https?:/.test(b.source.url))), `${at}.source: invalid image source`);
          break;
        case "tool_use":
          check(m.role === "assistant", `${at}: tool_use blocks are only allowed in assistant messages`);
          check(typeof b.id === "string" && typeof b.name === "string" && isObj(b.input), `${at}: tool_use needs id, name and an input object`);
          toolUseIds.add(b.id);
          break;
        case "tool_result":
          check(m.role === "user", `${at}: tool_result blocks are only allowed in user messages`);
          check(toolUseIds.has(b.tool_use_id), `${at}.tool_use_id: unexpected tool_use_id found in tool_result blocks: ${b.tool_use_id}`);
          break;
        case "thinking":
        case "redacted_thinking":
          break;
        default:
          throw new Invalid(`${at}.type: Input tag '${b.type}' found using 'type' does not match any of the expected tags`);
      }
    });
  });
  if (body.tools !== undefined) {
    check(Array.isArray(body.tools), "tools: Input should be a valid list");
    body.tools.forEach((t, i) => check(typeof t.name === "string" && isObj(t.input_schema) && t.input_schema.type === "object", `tools.${i}: a custom tool needs name and input_schema of type object`));
  }
  if (body.tool_choice !== undefined) {
    check(["auto", "any", "tool", "none"].includes(body.tool_choice.type), "tool_choice.type: invalid");
    if (body.tool_choice.type === "tool") check(typeof body.tool_choice.name === "string", "tool_choice.name: Field required");
  }
  if (body.temperature !== undefined) check(body.temperature >= 0 && body.temperature <= 1, "temperature: Input should be less than or equal to 1");
}

function anthropicLastUser(body) {
  for (let i = body.messages.length - 1; i >= 0; i--) {
    const m = body.messages[i];
    if (m.role !== "user") continue;
    if (typeof m.content === "string") return m.content;
    const t = m.content.filter((b) => b.type === "text").map((b) => b.text).join(" ");
    if (t) return t;
  }
  return "";
}

const ANTHROPIC_USAGE = { input_tokens: 12, cache_creation_input_tokens: 5, cache_read_input_tokens: 100, output_tokens: 0 };

function anthropic(body, res) {
  validateAnthropic(body);
  const k = kind(body.model);
  if (k === "status-400") {
    return json(res, 400, { type: "error", error: { type: "invalid_request_error", message: "max_tokens: 999999 > 8192, which is the maximum allowed" } });
  }
  const text = replyText("anthropic", anthropicLastUser(body));
  const id = "msg_01MockAnthropic";
  const outputTokens = k === "tools" ? 40 : words(text).length;
  if (!body.stream) {
    const content = k === "tools" ? TOOL_CALLS.map((c) => ({ type: "tool_use", id: c.id, name: c.name, input: c.input })) : [{ type: "text", text }];
    return json(res, 200, {
      id,
      type: "message",
      role: "assistant",
      model: body.model,
      content,
      stop_reason: k === "tools" ? "tool_use" : "end_turn",
      stop_sequence: null,
      usage: { ...ANTHROPIC_USAGE, output_tokens: outputTokens },
    });
  }
  sse(res);
  const ev = (name, data) => res.write(`event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`);
  ev("message_start", { message: { id, type: "message", role: "assistant", model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...ANTHROPIC_USAGE, output_tokens: 1 } } });
  ev("ping", {});
  if (k === "tools") {
    TOOL_CALLS.forEach((c, index) => {
      ev("content_block_start", { index, content_block: { type: "tool_use", id: c.id, name: c.name, input: {} } });
      const args = JSON.stringify(c.input);
      const half = Math.floor(args.length / 2);
      ev("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: args.slice(0, half) } });
      ev("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: args.slice(half) } });
      ev("content_block_stop", { index });
    });
  } else {
    ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
    const parts = words(text);
    const sent = k === "text" ? parts : parts.slice(0, 2);
    for (const w of sent) ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: w } });
    if (k === "error") {
      ev("error", { error: { type: "overloaded_error", message: "Overloaded" } });
      return res.end();
    }
    if (k === "truncated") return res.end();
    if (k === "stalled") return; // silent; the socket closes when the gateway (or close()) ends it
    ev("content_block_stop", { index: 0 });
  }
  ev("message_delta", { delta: { stop_reason: k === "tools" ? "tool_use" : "end_turn", stop_sequence: null }, usage: { output_tokens: outputTokens } });
  ev("message_stop", {});
  res.end();
}

// --------------------------------------------------------------------------------------- Gemini

const GEMINI_TOP = ["contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent"];
const GEMINI_GEN = ["temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "seed", "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "thinkingConfig", "responseLogprobs", "logprobs"];

function validateGemini(body) {
  for (const k of Object.keys(body)) check(GEMINI_TOP.includes(k), `Invalid JSON payload received. Unknown name "${k}": Cannot find field.`);
  check(Array.isArray(body.contents) && body.contents.length > 0, "* GenerateContentRequest.contents: contents is not specified");
  body.contents.forEach((c, i) => {
    check(c.role === "user" || c.role === "model", `* GenerateContentRequest.contents[${i}].role: Please use a valid role: user, model.`);
    check(Array.isArray(c.parts) && c.parts.length > 0, `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.`);
    c.parts.forEach((p, j) => {
      const data = ["text", "inlineData", "fileData", "functionCall", "functionResponse"].filter((f) => f in p);
      check(data.length === 1, `* GenerateContentRequest.contents[${i}].parts[${j}].data: required oneof field 'data' must have one initialized field`);
      if (p.functionResponse) check(typeof p.functionResponse.name === "string" && p.functionResponse.name, `* contents[${i}].parts[${j}].function_response.name: Name cannot be empty.`);
      if (p.inlineData) check(typeof p.inlineData.mimeType === "string" && typeof p.inlineData.data === "string", `contents[${i}].parts[${j}].inline_data: mimeType and data required`);
    });
  });
  if (body.generationConfig) {
    for (const k of Object.keys(body.generationConfig)) check(GEMINI_GEN.includes(k), `Invalid JSON payload received. Unknown name "${k}" at 'generation_config': Cannot find field.`);
  }
  for (const t of body.tools ?? []) {
    for (const f of t.functionDeclarations ?? []) {
      const bad = JSON.stringify(f.parameters ?? {}).match(/"(additionalProperties|\$schema|strict)"/);
      check(!bad, `Invalid JSON payload received. Unknown name "${bad?.[1]}" at 'tools[0].function_declarations[0].parameters': Cannot find field.`);
    }
  }
}

function geminiLastUser(body) {
  for (let i = body.contents.length - 1; i >= 0; i--) {
    const c = body.contents[i];
    if (c.role !== "user") continue;
    const t = c.parts.filter((p) => typeof p.text === "string").map((p) => p.text).join(" ");
    if (t) return t;
  }
  return "";
}

function gemini(provider, body, res, stream) {
  validateGemini(body);
  const model = res.model;
  const k = kind(model);
  if (k === "status-400") {
    return json(res, 400, { error: { code: 400, message: "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"", status: "INVALID_ARGUMENT" } });
  }
  const text = replyText(provider, geminiLastUser(body));
  const usage = (out) => ({ promptTokenCount: 120, candidatesTokenCount: out, totalTokenCount: 120 + out, cachedContentTokenCount: 100 });
  if (!stream) {
    const parts = k === "tools" ? TOOL_CALLS.map((c) => ({ functionCall: { name: c.name, args: c.input } })) : [{ text }];
    return json(res, 200, {
      candidates: [{ content: { role: "model", parts }, finishReason: "STOP", index: 0 }],
      usageMetadata: usage(words(text).length),
      modelVersion: model,
      responseId: "gemini-resp-1",
    });
  }
  sse(res);
  const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\r\n\r\n`);
  if (k === "tools") {
    send({ candidates: [{ content: { role: "model", parts: [{ functionCall: { name: TOOL_CALLS[0].name, args: TOOL_CALLS[0].input } }] }, index: 0 }], usageMetadata: usage(10), modelVersion: model });
    send({ candidates: [{ content: { role: "model", parts: [{ functionCall: { name: TOOL_CALLS[1].name, args: TOOL_CALLS[1].input } }] }, finishReason: "STOP", index: 0 }], usageMetadata: usage(20), modelVersion: model });
    return res.end();
  }
  const parts = words(text);
  const sent = k === "text" ? parts : parts.slice(0, 2);
  sent.forEach((w, i) => {
    const last = k === "text" && i === sent.length - 1;
    send({ candidates: [{ content: { role: "model", parts: [{ text: w }] }, ...(last ? { finishReason: "STOP" } : {}), index: 0 }], usageMetadata: usage(i + 1), modelVersion: model });
  });
  if (k === "error") send({ error: { code: 503, message: "The model is overloaded.", status: "UNAVAILABLE" } });
  res.end();
}

// -------------------------------------------------------------------------------------- Bedrock

const BEDROCK_TOP = ["messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields", "additionalModelResponseFieldPaths", "guardrailConfig", "promptVariables", "requestMetadata", "performanceConfig"];

/** AWS SigV4 check, written from the AWS General Reference independently of the gateway's signer. */
function verifySigV4(req, rawBody, region) {
  const auth = req.headers.authorization ?? "";
  const m = auth.match(/^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/);
  check(m, "missing or malformed SigV4 Authorization header");
  const [, keyId, date, reg, service, signedHeaders, signature] = m;
  check(keyId === PROVIDER_KEYS.awsAccessKeyId, "The security token included in the request is invalid.");
  check(reg === region && service === "bedrock", `credential scope must be ${region}/bedrock`);
  const amzDate = req.headers["x-amz-date"];
  check(amzDate && amzDate.startsWith(date), "x-amz-date must match the credential date");
  const url = new URL(req.url, "http://x");
  // Canonical URI: each path segment URI-encoded again (non-S3 services).
  const canonicalUri = url.pathname.split("/").map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())).join("/");
  const query = [...url.searchParams.entries()].map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)]).sort().map(([k, v]) => `${k}=${v}`).join("&");
  const names = signedHeaders.split(";");
  check(names.includes("host") && names.includes("x-amz-date"), "host and x-amz-date must be signed");
  const canonicalHeaders = names.map((n) => `${n}:${String(req.headers[n] ?? "").trim().replace(/\s+/g, " ")}\n`).join("");
  const payloadHash = createHash("sha256").update(rawBody).digest("hex");
  if (req.headers["x-amz-content-sha256"]) check(req.headers["x-amz-content-sha256"] === payloadHash, "x-amz-content-sha256 does not match the body");
  const canonical = ["POST", canonicalUri, query, canonicalHeaders, signedHeaders, payloadHash].join("\n");
  const scope = `${date}/${region}/bedrock/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, createHash("sha256").update(canonical).digest("hex")].join("\n");
  let key = createHmac("sha256", "AWS4" + PROVIDER_KEYS.awsSecretAccessKey).update(date).digest();
  for (const part of [region, "bedrock", "aws4_request"]) key = createHmac("sha256", key).update(part).digest();
  const expected = createHmac("sha256", key).update(toSign).digest("hex");
  check(expected === signature, "The request signature we calculated does not match the signature you provided.");
}

function validateBedrock(body) {
  for (const k of Object.keys(body)) check(BEDROCK_TOP.includes(k), `Malformed input request: extraneous key [${k}] is not permitted`);
  check(Array.isArray(body.messages) && body.messages.length > 0, "A conversation must start with a user message.");
  check(body.messages[0].role === "user", "A conversation must start with a user message. Try again with a conversation that starts with a user message.");
  body.messages.forEach((m, i) => {
    check(m.role === "user" || m.role === "assistant", `messages.${i}.role must be user or assistant`);
    if (i > 0) check(m.role !== body.messages[i - 1].role, "A conversation must alternate between user and assistant roles.");
    check(Array.isArray(m.content) && m.content.length > 0, `messages.${i}.content must be a non-empty list`);
    m.content.forEach((b, j) => {
      const keys = Object.keys(b);
      check(keys.length === 1 && ["text", "image", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint"].includes(keys[0]), `messages.${i}.content.${j}: a ContentBlock must have exactly one member`);
      if (b.image) check(["png", "jpeg", "gif", "webp"].includes(b.image.format) && typeof b.image.source?.bytes === "string", `messages.${i}.content.${j}.image: format and source.bytes required`);
      if (b.toolUse) check(typeof b.toolUse.toolUseId === "string" && typeof b.toolUse.name === "string" && isObj(b.toolUse.input), "toolUse needs toolUseId, name, input");
      if (b.toolResult) check(typeof b.toolResult.toolUseId === "string" && Array.isArray(b.toolResult.content), "toolResult needs toolUseId and content list");
    });
  });
  if (body.inferenceConfig) onlyKeys(body.inferenceConfig, ["maxTokens", "temperature", "topP", "stopSequences"], "inferenceConfig");
}

function eventStreamMessage(headers, payload) {
  const headerBufs = Object.entries(headers).map(([name, value]) => {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    const b = Buffer.alloc(1 + n.length + 1 + 2 + v.length);
    b.writeUInt8(n.length, 0);
    n.copy(b, 1);
    b.writeUInt8(7, 1 + n.length);
    b.writeUInt16BE(v.length, 2 + n.length);
    v.copy(b, 4 + n.length);
    return b;
  });
  const hdr = Buffer.concat(headerBufs);
  const body = Buffer.from(JSON.stringify(payload));
  const total = 12 + hdr.length + body.length + 4;
  const prelude = Buffer.alloc(8);
  prelude.writeUInt32BE(total, 0);
  prelude.writeUInt32BE(hdr.length, 4);
  const preludeCrc = Buffer.alloc(4);
  preludeCrc.writeUInt32BE(crc32(prelude) >>> 0, 0);
  const withoutCrc = Buffer.concat([prelude, preludeCrc, hdr, body]);
  const msgCrc = Buffer.alloc(4);
  msgCrc.writeUInt32BE(crc32(withoutCrc) >>> 0, 0);
  return Buffer.concat([withoutCrc, msgCrc]);
}

function bedrock(req, rawBody, body, res, modelId, stream) {
  verifySigV4(req, rawBody, PROVIDER_KEYS.awsRegion);
  validateBedrock(body);
  const k = kind(modelId);
  if (k === "status-400") {
    return json(res, 400, { message: "The model returned the following errors: temperature: must be <= 1" }, { "x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/" });
  }
  const lastUser = [...body.messages].reverse().find((m) => m.role === "user" && m.content.some((b) => b.text))?.content.filter((b) => b.text).map((b) => b.text).join(" ") ?? "";
  const text = replyText("bedrock", lastUser);
  const usage = (out) => ({ inputTokens: 20, outputTokens: out, totalTokens: 20 + out + 100 + 5, cacheReadInputTokens: 100, cacheWriteInputTokens: 5 });
  if (!stream) {
    const content = k === "tools" ? TOOL_CALLS.map((c) => ({ toolUse: { toolUseId: c.id, name: c.name, input: c.input } })) : [{ text }];
    return json(res, 200, { output: { message: { role: "assistant", content } }, stopReason: k === "tools" ? "tool_use" : "end_turn", usage: usage(words(text).length), metrics: { latencyMs: 42 } });
  }
  res.writeHead(200, { "content-type": "application/vnd.amazon.eventstream" });
  const ev = (type, payload) => res.write(eventStreamMessage({ ":event-type": type, ":content-type": "application/json", ":message-type": "event" }, payload));
  ev("messageStart", { role: "assistant" });
  if (k === "tools") {
    TOOL_CALLS.forEach((c, i) => {
      ev("contentBlockStart", { contentBlockIndex: i, start: { toolUse: { toolUseId: c.id, name: c.name } } });
      const args = JSON.stringify(c.input);
      ev("contentBlockDelta", { contentBlockIndex: i, delta: { toolUse: { input: args.slice(0, 5) } } });
      ev("contentBlockDelta", { contentBlockIndex: i, delta: { toolUse: { input: args.slice(5) } } });
      ev("contentBlockStop", { contentBlockIndex: i });
    });
  } else {
    const parts = words(text);
    const sent = k === "text" ? parts : parts.slice(0, 2);
    for (const w of sent) ev("contentBlockDelta", { contentBlockIndex: 0, delta: { text: w } });
    if (k === "error") {
      res.write(eventStreamMessage({ ":exception-type": "throttlingException", ":content-type": "application/json", ":message-type": "exception" }, { message: "Too many requests" }));
      return res.end();
    }
    if (k === "truncated") return res.end();
    ev("contentBlockStop", { contentBlockIndex: 0 });
  }
  ev("messageStop", { stopReason: k === "tools" ? "tool_use" : "end_turn" });
  ev("metadata", { usage: usage(k === "tools" ? 40 : words(text).length), metrics: { latencyMs: 42 } });
  res.end();
}

// --------------------------------------------------------------------------------------- Cohere

const COHERE_TOP = ["model", "messages", "tools", "documents", "citation_options", "response_format", "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty", "presence_penalty", "k", "p", "logprobs", "tool_choice", "strict_tools", "stream", "thinking"];

function cohere(body, res) {
  onlyKeys(body, COHERE_TOP, "body");
  check(typeof body.model === "string", "model is required");
  check(Array.isArray(body.messages) && body.messages.length > 0, "messages is required");
  body.messages.forEach((m, i) => {
    check(["system", "user", "assistant", "tool"].includes(m.role), `messages[${i}].role: invalid role`);
    if (m.role === "tool") check(typeof m.tool_call_id === "string", `messages[${i}].tool_call_id is required`);
  });
  const k = kind(body.model);
  if (k === "status-400") return json(res, 400, { id: "err-1", message: "invalid request: temperature must be between 0 and 1" });
  const lastUser = [...body.messages].reverse().find((m) => m.role === "user");
  const userText = typeof lastUser?.content === "string" ? lastUser.content : (lastUser?.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join(" ");
  const text = replyText("cohere", userText);
  const usage = (out) => ({ billed_units: { input_tokens: 15, output_tokens: out }, tokens: { input_tokens: 80, output_tokens: out } });
  const toolCalls = TOOL_CALLS.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: JSON.stringify(c.input) } }));
  if (!body.stream) {
    const message = k === "tools" ? { role: "assistant", tool_plan: "I will call the tools.", tool_calls: toolCalls } : { role: "assistant", content: [{ type: "text", text }] };
    return json(res, 200, { id: "cohere-1", message, finish_reason: k === "tools" ? "TOOL_CALL" : "COMPLETE", usage: usage(words(text).length) });
  }
  sse(res);
  const ev = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  ev("message-start", { id: "cohere-1", delta: { message: { role: "assistant", content: [], tool_plan: "", tool_calls: [], citations: [] } } });
  if (k === "tools") {
    toolCalls.forEach((c, index) => {
      ev("tool-call-start", { index, delta: { message: { tool_calls: { id: c.id, type: "function", function: { name: c.function.name, arguments: "" } } } } });
      ev("tool-call-delta", { index, delta: { message: { tool_calls: { function: { arguments: c.function.arguments } } } } });
      ev("tool-call-end", { index });
    });
  } else {
    ev("content-start", { index: 0, delta: { message: { content: { type: "text", text: "" } } } });
    const parts = words(text);
    const sent = k === "text" ? parts : parts.slice(0, 2);
    for (const w of sent) ev("content-delta", { index: 0, delta: { message: { content: { text: w } } } });
    if (k !== "text") return res.end();
    ev("content-end", { index: 0 });
  }
  ev("message-end", { delta: { finish_reason: k === "tools" ? "TOOL_CALL" : "COMPLETE", usage: usage(k === "tools" ? 30 : words(text).length) } });
  res.end();
}

function cohereEmbed(body, res) {
  onlyKeys(body, ["model", "texts", "images", "inputs", "input_type", "embedding_types", "output_dimension", "max_tokens", "truncate"], "body");
  check(typeof body.input_type === "string", "input_type is required for embed v3 and newer models");
  check(Array.isArray(body.texts) && body.texts.length > 0, "texts is required");
  const dims = body.output_dimension ?? 1024;
  const vec = (t) => upstreamEmbedding(t, dims);
  return json(res, 200, { id: "emb-1", embeddings: { float: body.texts.map(vec) }, texts: body.texts, meta: { api_version: { version: "2" }, billed_units: { input_tokens: body.texts.length * 3 } }, response_type: "embeddings_by_type" });
}

// ---------------------------------------------------------------------------------------- Azure

function azure(req, body, res) {
  const url = new URL(req.url, "http://x");
  check(/^20\d\d-\d\d-\d\d(-preview)?$/.test(url.searchParams.get("api-version") ?? ""), "api-version query parameter is required");
  const lastUser = [...body.messages].reverse().find((m) => m.role === "user");
  const text = replyText("azure", typeof lastUser?.content === "string" ? lastUser.content : "");
  const usage = { prompt_tokens: 9, completion_tokens: words(text).length, total_tokens: 9 + words(text).length };
  const base = { id: "chatcmpl-azure1", created: 1735689600, model: "gpt-4o-mini-2024-07-18", system_fingerprint: "fp_azure" };
  if (!body.stream) {
    return json(res, 200, { ...base, object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop", logprobs: null, content_filter_results: {} }], usage, prompt_filter_results: [] });
  }
  sse(res);
  const send = (o) => res.write(`data: ${JSON.stringify(o)}\n\n`);
  send({ id: "", object: "", created: 0, model: "", choices: [], prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] });
  words(text).forEach((w, i) => send({ ...base, object: "chat.completion.chunk", choices: [{ index: 0, delta: i === 0 ? { role: "assistant", content: w } : { content: w }, finish_reason: null }] }));
  send({ ...base, object: "chat.completion.chunk", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
  if (body.stream_options?.include_usage) send({ ...base, object: "chat.completion.chunk", choices: [], usage });
  res.write("data: [DONE]\n\n");
  res.end();
}

// --------------------------------------------------------------------------------------- server

export async function startProviderMocks() {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const raw = await readBody(req);
    const url = new URL(req.url, "http://x");
    let body;
    try {
      body = raw.length ? JSON.parse(raw.toString("utf8")) : {};
    } catch {
      return json(res, 400, { error: { message: "invalid JSON" } });
    }
    const provider = url.pathname.split("/")[1];
    const record = { provider, path: url.pathname + url.search, headers: req.headers, body };
    // Whether the gateway hung up before the mock finished its response (a cancelled call).
    res.on("close", () => { record.closedByPeer = !res.writableEnded; });
    requests.push(record);
    try {
      switch (provider) {
        case "anthropic": {
          if (req.headers["x-api-key"] !== PROVIDER_KEYS.anthropic) return json(res, 401, { type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } });
          check(req.headers["anthropic-version"] === "2023-06-01", "anthropic-version header is required");
          check(url.pathname === "/anthropic/v1/messages", `unknown path ${url.pathname}`);
          return anthropic(body, res);
        }
        case "gemini":
        case "vertex": {
          const m = url.pathname.match(provider === "gemini" ? /^\/gemini\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/ : /^\/vertex\/v1\/projects\/[^/]+\/locations\/[^/]+\/publishers\/google\/models\/([^/:]+):(generateContent|streamGenerateContent)$/);
          check(m, `unknown path ${url.pathname}`);
          const authorized = provider === "gemini" ? req.headers["x-goog-api-key"] === PROVIDER_KEYS.gemini : req.headers.authorization === `Bearer ${PROVIDER_KEYS.vertex}`;
          if (!authorized) return json(res, provider === "gemini" ? 400 : 401, { error: { code: 401, message: "API key not valid. Please pass a valid API key.", status: "UNAUTHENTICATED" } });
          const stream = m[2] === "streamGenerateContent";
          if (stream) check(url.searchParams.get("alt") === "sse", "streamGenerateContent without alt=sse answers a JSON array; the gateway must ask for SSE");
          res.model = decodeURIComponent(m[1]);
          return gemini(provider, body, res, stream);
        }
        case "bedrock": {
          const m = url.pathname.match(/^\/bedrock\/model\/([^/]+)\/(converse|converse-stream)$/);
          check(m, `unknown path ${url.pathname}`);
          return bedrock(req, raw, body, res, decodeURIComponent(m[1]), m[2] === "converse-stream");
        }
        case "cohere": {
          if (req.headers.authorization !== `Bearer ${PROVIDER_KEYS.cohere}`) return json(res, 401, { id: "e", message: "invalid api token" });
          if (url.pathname === "/cohere/v2/chat") return cohere(body, res);
          if (url.pathname === "/cohere/v2/embed") return cohereEmbed(body, res);
          throw new Invalid(`unknown path ${url.pathname}`);
        }
        case "azure": {
          if (req.headers["api-key"] !== PROVIDER_KEYS.azure) return json(res, 401, { error: { code: "401", message: "Access denied due to invalid subscription key." } });
          check(/^\/azure\/openai\/deployments\/[^/]+\/chat\/completions$/.test(url.pathname), `unknown path ${url.pathname}`);
          return azure(req, body, res);
        }
        default:
          return json(res, 404, { error: { message: `no mock for ${url.pathname}` } });
      }
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      requests.at(-1).rejected = e.message;
      if (res.headersSent) return res.end();
      const error =
        provider === "anthropic" ? { type: "error", error: { type: "invalid_request_error", message: e.message } }
        : provider === "gemini" || provider === "vertex" ? { error: { code: 400, message: e.message, status: "INVALID_ARGUMENT" } }
        : provider === "bedrock" ? { message: e.message }
        : provider === "cohere" ? { id: "e", message: e.message }
        : { error: { message: e.message, type: "invalid_request_error" } };
      const status = provider === "bedrock" && /signature|security token/.test(e.message) ? 403 : 400;
      return json(res, status, error);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    requests,
    port,
    baseUrl: (provider) => `http://127.0.0.1:${port}/${provider}`,
    /** The requests the mock rejected (what the real API would have refused), for assertions. */
    rejected: () => requests.filter((r) => r.rejected),
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}
