// A local stand-in for an OpenAI-compatible provider, speaking OpenAI's wire format
// (https://platform.openai.com/docs/api-reference): POST /v1/chat/completions (JSON and SSE),
// POST /v1/embeddings (float and base64), GET /v1/models. It validates the provider key like the
// real API, records every request it receives, and has scripted behaviours selected by the
// `model` the gateway forwards (its configured `upstream_model`):
//
//   slow-stream     role chunk + first content chunk, then waits for handle.release() (10 s
//                   safety timeout), then the rest of the stream
//   hang            never answers (headers included)
//   status-500      500 server_error
//   status-429      429 rate_limit_exceeded with `Retry-After: 7`
//   status-401      401 whose message echoes a masked key ("sk-ups***123"), like OpenAI does
//   status-400      400 invalid_request_error about `temperature`
//   break-stream    200 + two chunks, then the socket is destroyed
//   endless-stream  a chunk every 50 ms until the peer goes away
//
// (The three stream behaviours apply to `stream: true` requests; otherwise those models answer
// normally. A scripted request gets a handle, see waitFor below.)
//
// Every other model answers normally. Listens on 127.0.0.1, port chosen by the OS.
//
//   const up = await startMockUpstream({ apiKey: "sk-upstream-test-123" });
//   up.baseUrl                 // "http://127.0.0.1:PORT/v1"
//   up.requests                // [{ method, path, headers, rawBody, body, model, response }]
//   const h = await up.waitFor("slow-stream");   // the handle of the next such request
//   await h.firstChunksSent; h.finished; h.release(); await h.done  // { closedByPeer, chunksSent }
//   await up.close();

import http from "node:http";
import { createHash, randomBytes } from "node:crypto";

export const SCRIPTED_MODELS = [
  "slow-stream",
  "hang",
  "status-500",
  "status-429",
  "status-401",
  "status-400",
  "break-stream",
  "endless-stream",
];

const STREAM_SCRIPTED = ["slow-stream", "break-stream", "endless-stream"];
const SAFETY_TIMEOUT_MS = 10_000;
const CREATED = 1_735_689_600; // fixed `created` timestamps keep responses deterministic
const SYSTEM_FINGERPRINT = "fp_mock0001";

/** The content the upstream answers with for a chat request (split into stream deltas). */
export function upstreamReplyText(lastUserMessage) {
  return `Upstream says hello. You said: ${lastUserMessage}`;
}

/** The deltas the normal stream sends, in order. */
export function upstreamReplyDeltas(lastUserMessage) {
  return upstreamReplyText(lastUserMessage).match(/\S+\s*/g) ?? [""];
}

/**
 * Deterministic embedding for one input that makes paraphrases similar, so tests of the semantic
 * cache mean something: a hashed bag of normalised words (lower-cased, split on anything but
 * letters and digits), each word adding ±1 at a SHA-256-chosen dimension, L2-normalised. Texts
 * with the same words get the same vector, texts sharing most words a high cosine similarity,
 * unrelated texts a low one. Values go through float32 so the float and base64 encodings carry
 * exactly the same numbers.
 */
export function upstreamEmbedding(text, dimensions) {
  const sums = new Float64Array(dimensions);
  const words = String(text).toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [""];
  for (const word of words) {
    const digest = createHash("sha256").update(word).digest();
    const slot = digest.readUInt32LE(0) % dimensions;
    sums[slot] += digest[4] & 1 ? 1 : -1;
  }
  let norm = Math.hypot(...sums);
  if (norm === 0) {
    // Words that cancel out: fall back to one dimension, still a unit vector.
    sums[0] = 1;
    norm = 1;
  }
  return Array.from(sums, (x) => Math.fround(x / norm));
}

/** Little-endian float32 bytes, base64 — OpenAI's `encoding_format: "base64"`. */
export function encodeFloat32Base64(values) {
  const buf = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString("base64");
}

export function decodeFloat32Base64(b64) {
  const buf = Buffer.from(b64, "base64");
  const out = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

function countTokens(text) {
  // A rough, deterministic stand-in for a tokenizer: one token per word or punctuation mark.
  return (String(text).match(/\w+|[^\s\w]/g) ?? []).length;
}

function messageText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .filter((part) => part && part.type === "text")
      .map((part) => part.text)
      .join(" ");
  }
  return "";
}

function openaiError(message, type, param = null, code = null) {
  return { error: { message, type, param, code } };
}

class Deferred {
  constructor() {
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

/** What a test sees of one request to a scripted model. */
class Handle {
  constructor(record) {
    this.request = record;
    this.finished = false; // the upstream called res.end()
    this.chunksSent = 0;
    this._firstChunks = new Deferred();
    this._release = new Deferred();
    this._done = new Deferred();
    this.released = false;
    /** Resolves once the slow stream's role + first content chunk were written. */
    this.firstChunksSent = this._firstChunks.promise;
    /** Resolves with { closedByPeer, finished, chunksSent } when the response is over. */
    this.done = this._done.promise;
  }

  /** Lets a slow stream send the rest. */
  release() {
    this.released = true;
    this._release.resolve();
  }
}

/**
 * Starts the mock upstream.
 * @param {{ apiKey?: string, models?: string[], embeddingDimensions?: number }} [options]
 */
export async function startMockUpstream(options = {}) {
  const apiKey = options.apiKey ?? "sk-upstream-test-123";
  const listedModels = options.models ?? ["gpt-4o-mini", "text-embedding-3-small"];
  const defaultDimensions = options.embeddingDimensions ?? 1536;

  const requests = [];
  const handles = new Map(); // model -> Handle[] not yet claimed by waitFor
  const waiters = new Map(); // model -> Deferred[]
  const allHandles = [];
  const timers = new Set();
  let counter = 0;

  function later(ms, fn) {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  }

  function publish(model, handle) {
    allHandles.push(handle);
    const queue = waiters.get(model);
    if (queue && queue.length) {
      queue.shift().resolve(handle);
      return;
    }
    if (!handles.has(model)) handles.set(model, []);
    handles.get(model).push(handle);
  }

  function commonHeaders(extra = {}) {
    return {
      "x-request-id": `req_${randomBytes(12).toString("hex")}`,
      "openai-version": "2020-10-01",
      "openai-processing-ms": "12",
      ...extra,
    };
  }

  function sendJson(res, status, body, extraHeaders = {}) {
    const text = JSON.stringify(body);
    if (res.record) res.record.response = { status, body: text };
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      ...commonHeaders(extraHeaders),
    });
    res.end(text);
  }

  function sendError(res, status, message, type, param = null, code = null, extraHeaders = {}) {
    sendJson(res, status, openaiError(message, type, param, code), extraHeaders);
  }

  function checkAuth(req, res) {
    const auth = req.headers.authorization ?? "";
    const match = /^Bearer (.+)$/.exec(auth);
    if (!match) {
      sendError(
        res,
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        null,
        "invalid_api_key",
      );
      return false;
    }
    if (match[1] !== apiKey) {
      sendError(
        res,
        401,
        `Incorrect API key provided: ${maskKey(match[1])}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        "invalid_request_error",
        null,
        "invalid_api_key",
      );
      return false;
    }
    return true;
  }

  // Scripted failures that happen before any response byte, whatever the endpoint.
  function scriptedStatus(model, res) {
    switch (model) {
      case "status-500":
        sendError(res, 500, "The server had an error while processing your request. Sorry about that!", "server_error");
        return true;
      case "status-429":
        sendError(
          res,
          429,
          "Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 7s. Visit https://platform.openai.com/account/rate-limits to learn more.",
          "requests",
          "requests",
          "rate_limit_exceeded",
          { "retry-after": "7" },
        );
        return true;
      case "status-401":
        // Real OpenAI echoes a masked form of the key it was given; a gateway must not pass it on.
        sendError(
          res,
          401,
          "Incorrect API key provided: sk-ups***123. You can find your API key at https://platform.openai.com/account/api-keys.",
          "invalid_request_error",
          null,
          "invalid_api_key",
        );
        return true;
      case "status-400":
        sendError(
          res,
          400,
          "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 5 instead.",
          "invalid_request_error",
          "temperature",
          "decimal_above_max_value",
        );
        return true;
      default:
        return false;
    }
  }

  function chatChunk(id, model, delta, finishReason, withUsageField) {
    const chunk = {
      id,
      object: "chat.completion.chunk",
      created: CREATED,
      model,
      system_fingerprint: SYSTEM_FINGERPRINT,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    };
    if (withUsageField) chunk.usage = null;
    return chunk;
  }

  function usageFor(promptText, completionText) {
    const prompt_tokens = Math.max(1, countTokens(promptText));
    const completion_tokens = Math.max(1, countTokens(completionText));
    return {
      prompt_tokens,
      completion_tokens,
      total_tokens: prompt_tokens + completion_tokens,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
  }

  function handleChat(req, res, body, record) {
    if (typeof body.model !== "string" || body.model === "") {
      sendError(res, 400, "you must provide a model parameter", "invalid_request_error");
      return;
    }
    if (!Array.isArray(body.messages)) {
      sendError(
        res,
        400,
        "Missing required parameter: 'messages'.",
        "invalid_request_error",
        "messages",
        "missing_required_parameter",
      );
      return;
    }
    const model = body.model;
    if (scriptedStatus(model, res)) return;

    // Stream behaviours apply to streamed requests only; a non-streamed request to those models
    // gets a normal answer (and no handle, so waitFor() never returns a stale one).
    const scripted = model === "hang" || (body.stream === true && STREAM_SCRIPTED.includes(model));
    const handle = scripted ? new Handle(record) : null;
    if (handle) {
      res.on("close", () => {
        const closedByPeer = !handle.finished;
        record.closedByPeer = closedByPeer;
        handle.closedByPeer = closedByPeer;
        handle._done.resolve({ closedByPeer, finished: handle.finished, chunksSent: handle.chunksSent });
      });
      publish(model, handle);
    }
    if (model === "hang") return; // never answers; closed when the peer gives up or on close()

    const lastUser = [...body.messages].reverse().find((m) => m && m.role === "user");
    const userText = lastUser ? messageText(lastUser.content) : "";
    const promptText = body.messages.map((m) => messageText(m?.content)).join(" ");
    const id = `chatcmpl-mock${String(++counter).padStart(6, "0")}`;

    if (!body.stream) {
      const content = upstreamReplyText(userText);
      sendJson(res, 200, {
        id,
        object: "chat.completion",
        created: CREATED,
        model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content, refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: "stop",
          },
        ],
        usage: usageFor(promptText, content),
        service_tier: "default",
        system_fingerprint: SYSTEM_FINGERPRINT,
      });
      return;
    }

    // Streaming: server-sent events, one JSON chunk per `data:` line, then `data: [DONE]`.
    const includeUsage = body.stream_options?.include_usage === true;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      ...commonHeaders(),
    });
    const write = (obj, onFlushed) => {
      if (res.destroyed || res.writableEnded) return false;
      const data = typeof obj === "string" ? obj : JSON.stringify(obj);
      record.sse.push(data);
      res.write(`data: ${data}\n\n`, onFlushed);
      if (handle) handle.chunksSent++;
      return true;
    };
    const finish = () => {
      if (res.destroyed || res.writableEnded) return;
      if (handle) handle.finished = true;
      res.end();
    };
    const deltas = upstreamReplyDeltas(userText);
    const completion = deltas.join("");
    const roleChunk = chatChunk(id, model, { role: "assistant", content: "", refusal: null }, null, includeUsage);
    const contentChunk = (text) => chatChunk(id, model, { content: text }, null, includeUsage);
    const tail = () => {
      write(chatChunk(id, model, {}, "stop", includeUsage));
      if (includeUsage) {
        write({
          id,
          object: "chat.completion.chunk",
          created: CREATED,
          model,
          system_fingerprint: SYSTEM_FINGERPRINT,
          choices: [],
          usage: usageFor(promptText, completion),
        });
      }
      write("[DONE]");
      finish();
    };

    switch (model) {
      case "slow-stream": {
        write(roleChunk);
        write(contentChunk(deltas[0]));
        handle._firstChunks.resolve();
        const safety = later(SAFETY_TIMEOUT_MS, () => handle.release());
        handle._release.promise.then(() => {
          clearTimeout(safety);
          timers.delete(safety);
          for (const d of deltas.slice(1)) write(contentChunk(d));
          tail();
        });
        return;
      }
      case "break-stream": {
        write(roleChunk);
        // Once both chunks have been handed to the kernel, fail the connection mid-body.
        write(contentChunk(deltas[0]), () => res.socket?.destroy());
        return;
      }
      case "endless-stream": {
        write(roleChunk);
        let n = 0;
        const tick = () => {
          if (res.destroyed || res.writableEnded || closed) return;
          write(contentChunk(`tick ${n++} `));
          later(50, tick);
        };
        tick();
        return;
      }
      default: {
        write(roleChunk);
        for (const d of deltas) write(contentChunk(d));
        tail();
      }
    }
  }

  function handleEmbeddings(req, res, body) {
    if (typeof body.model !== "string" || body.model === "") {
      sendError(res, 400, "you must provide a model parameter", "invalid_request_error");
      return;
    }
    if (body.input === undefined || body.input === null) {
      sendError(
        res,
        400,
        "Missing required parameter: 'input'.",
        "invalid_request_error",
        "input",
        "missing_required_parameter",
      );
      return;
    }
    if (scriptedStatus(body.model, res)) return;
    const inputs = Array.isArray(body.input) && body.input.every((x) => typeof x === "string") ? body.input : [body.input];
    const dims = Number.isInteger(body.dimensions) && body.dimensions > 0 ? body.dimensions : defaultDimensions;
    const base64 = body.encoding_format === "base64";
    let tokens = 0;
    const data = inputs.map((input, index) => {
      const text = typeof input === "string" ? input : JSON.stringify(input);
      tokens += Math.max(1, countTokens(text));
      const vector = upstreamEmbedding(text, dims);
      return { object: "embedding", index, embedding: base64 ? encodeFloat32Base64(vector) : vector };
    });
    sendJson(res, 200, {
      object: "list",
      data,
      model: body.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }

  function handleModels(req, res) {
    sendJson(res, 200, {
      object: "list",
      data: listedModels.map((id) => ({ id, object: "model", created: CREATED, owned_by: "openai" })),
    });
  }

  let closed = false;
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const rawBody = Buffer.concat(chunks).toString("utf8");
      const url = new URL(req.url, "http://127.0.0.1");
      const record = {
        method: req.method,
        path: url.pathname,
        query: url.search,
        headers: { ...req.headers },
        rawBody,
        body: undefined,
        model: undefined,
        closedByPeer: undefined,
        response: undefined, // { status, body } for JSON answers
        sse: [], // the `data:` payloads of a streamed answer, in order
      };
      res.record = record;
      requests.push(record);
      if (rawBody.length > 0) {
        try {
          record.body = JSON.parse(rawBody);
          record.model = typeof record.body?.model === "string" ? record.body.model : undefined;
        } catch {
          record.body = undefined;
        }
      }
      const route = `${req.method} ${url.pathname}`;
      const known = ["POST /v1/chat/completions", "POST /v1/embeddings", "GET /v1/models"];
      if (!known.includes(route)) {
        sendError(res, 404, `Invalid URL (${req.method} ${url.pathname})`, "invalid_request_error");
        return;
      }
      if (!checkAuth(req, res)) return;
      if (req.method === "GET") {
        handleModels(req, res);
        return;
      }
      if (record.body === undefined || typeof record.body !== "object" || record.body === null || Array.isArray(record.body)) {
        sendError(
          res,
          400,
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
          "invalid_request_error",
        );
        return;
      }
      if (url.pathname === "/v1/chat/completions") handleChat(req, res, record.body, record);
      else handleEmbeddings(req, res, record.body);
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 5_000;

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  const url = `http://127.0.0.1:${port}`;

  return {
    port,
    url,
    baseUrl: `${url}/v1`,
    apiKey,
    /** Every request received, in order. */
    requests,
    /** Requests to one path (e.g. "/v1/chat/completions"). */
    requestsTo(path) {
      return requests.filter((r) => r.path === path);
    },
    /** The last request received (optionally to one path). */
    lastRequest(path) {
      const list = path ? requests.filter((r) => r.path === path) : requests;
      return list[list.length - 1];
    },
    /** Forgets recorded requests and unclaimed handles. */
    reset() {
      requests.length = 0;
      handles.clear();
    },
    /**
     * The handle of the oldest unclaimed request for a scripted model, waiting for one to
     * arrive if needed (rejects after `timeoutMs`, a safety bound only).
     */
    waitFor(model, timeoutMs = SAFETY_TIMEOUT_MS) {
      const queue = handles.get(model);
      if (queue && queue.length) return Promise.resolve(queue.shift());
      const d = new Deferred();
      if (!waiters.has(model)) waiters.set(model, []);
      waiters.get(model).push(d);
      const t = later(timeoutMs, () => {
        const q = waiters.get(model);
        const i = q ? q.indexOf(d) : -1;
        if (i >= 0) q.splice(i, 1);
        d.reject(new Error(`mock upstream: no request for model '${model}' within ${timeoutMs} ms`));
      });
      return d.promise.finally(() => {
        clearTimeout(t);
        timers.delete(t);
      });
    },
    /** Stops the server, ending any open (hanging, slow or endless) responses. */
    async close() {
      closed = true;
      for (const h of allHandles) h.release();
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function maskKey(key) {
  if (key.length <= 8) return "***";
  return `${key.slice(0, 6)}***${key.slice(-3)}`;
}

// Run standalone for manual poking: `node tests/mock-upstream.mjs [port-ignored]`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const up = await startMockUpstream({ apiKey: process.env.MOCK_UPSTREAM_KEY ?? "sk-upstream-test-123" });
  console.log(`mock upstream listening on ${up.baseUrl} (key ${up.apiKey})`);
  const stop = async () => {
    await up.close();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
