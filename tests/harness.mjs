// Helpers for the end-to-end suite: the built Worker (adapters/cloudflare/build) running in
// workerd through miniflare 4, with its bindings, a fixed `request.cf`, and no network.
//
//   const gw = await startGateway({ config, secrets: { OPENAI_API_KEY: "sk-..." } });
//   const res = await gw.fetch("/v1/chat/completions", { method: "POST", headers, body });
//   gw.url          // "http://127.0.0.1:PORT" — a real socket, for the SDK or raw node:http
//   gw.logs         // [{ level, message }] what the Worker logged (usage events, errors)
//   await gw.kv.put("config", JSON.stringify(other));
//   await gw.dispose();

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

export const TESTS_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(TESTS_DIR, "..");
export const WORKER_DIR = path.join(ROOT, "adapters", "cloudflare", "build");
export const WORKER_SCRIPT = path.join(WORKER_DIR, "index.js");

/** A fixed `request.cf`, so miniflare never tries to download one. */
export const DEFAULT_CF = Object.freeze({
  asn: 3320,
  asOrganization: "Deutsche Telekom AG",
  colo: "FRA",
  country: "DE",
  city: "Frankfurt am Main",
  continent: "EU",
  isEUCountry: "1",
  region: "Hesse",
  regionCode: "HE",
  postalCode: "60313",
  timezone: "Europe/Berlin",
  latitude: "50.11090",
  longitude: "8.68213",
  httpProtocol: "HTTP/1.1",
  tlsVersion: "TLSv1.3",
  tlsCipher: "AEAD-AES128-GCM-SHA256",
  clientTcpRtt: 1,
  requestPriority: "",
  edgeRequestKeepAliveStatus: 1,
});

/** Consumer keys used across the suite, and the provider key the mock upstream expects. */
export const KEYS = Object.freeze({
  web: "sk-gw-web-0123456789abcdef",
  limited: "sk-gw-limited-fedcba9876543210",
  upstream: "sk-upstream-test-123",
});

export function sha256Hex(text) {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * A config document in the gateway's format (docs/config.md), with two consumers: `web`
 * (every model) and `limited` (only `mock*`). `upstreamBaseUrl` adds the `upstream` provider and
 * the models it serves. Pieces can be overridden or extended by the caller.
 */
export function makeConfig({ upstreamBaseUrl, limits = {}, auth, providers = {}, models = {} } = {}) {
  const config = {
    limits: {
      max_body_bytes: 1048576,
      upstream_timeout_ms: 10000,
      stream_idle_timeout_ms: 10000,
      config_refresh_ms: 0,
      ...limits,
    },
    auth: auth ?? {
      mode: "api_keys",
      consumers: [
        { id: "web", key_sha256: sha256Hex(KEYS.web) },
        { id: "limited", key_sha256: sha256Hex(KEYS.limited), models: ["mock*"] },
      ],
    },
    // The e2e upstreams listen on http://127.0.0.1: allowed only because this is the shipped
    // document (docs/config.md, "network"); a PUT /admin/config could not say it.
    network: { allow_private_upstreams: true },
    providers: { mock: { kind: "mock" }, ...providers },
    models: {
      mock: { provider: "mock" },
      "mock-embed": { provider: "mock", type: "embeddings" },
      ...models,
    },
  };
  if (upstreamBaseUrl) {
    config.providers.upstream = {
      kind: "openai",
      base_url: upstreamBaseUrl,
      api_key_secret: "OPENAI_API_KEY",
      ...(providers.upstream ?? {}),
    };
    // Same upstream with a short timeout, for the one model that never answers.
    config.providers["upstream-short"] = {
      kind: "openai",
      base_url: upstreamBaseUrl,
      api_key_secret: "OPENAI_API_KEY",
      timeout_ms: 300,
      ...(providers["upstream-short"] ?? {}),
    };
    const upstreamModels = {
      "gpt-4o-mini": { provider: "upstream", upstream_model: "gpt-4o-mini" },
      embed: { provider: "upstream", upstream_model: "text-embedding-3-small", type: "embeddings" },
      slow: { provider: "upstream", upstream_model: "slow-stream" },
      hang: { provider: "upstream-short", upstream_model: "hang" },
      "fail-500": { provider: "upstream", upstream_model: "status-500" },
      "fail-429": { provider: "upstream", upstream_model: "status-429" },
      "fail-401": { provider: "upstream", upstream_model: "status-401" },
      "fail-400": { provider: "upstream", upstream_model: "status-400" },
      broken: { provider: "upstream", upstream_model: "break-stream" },
      endless: { provider: "upstream", upstream_model: "endless-stream" },
    };
    config.models = { ...config.models, ...upstreamModels, ...models };
  }
  return config;
}

/**
 * Starts the built Worker in miniflare.
 * @param {object} opts
 * @param {object|string} opts.config   GATEWAY_CONFIG: a document (stringified here) or raw text
 * @param {object|string} [opts.kvConfig]  put under key `config` in GATEWAY_KV before serving
 * @param {Record<string,string>} [opts.secrets]  plain-text bindings (provider keys)
 * @param {object} [opts.cf]  request.cf for every request
 * @param {string} [opts.persistDir]  keep KV and Durable Object state in this directory, so a
 *   second gateway started on it sees what the first wrote (a restart); in memory otherwise
 * @param {string} [opts.aiBinding]  source of an ES module whose default export `(env) => ({ run })`
 *   stands in for the Workers AI binding, bound as `AI` (a miniflare wrapped binding: the real
 *   one needs Cloudflare's network)
 */
export async function startGateway({ config, kvConfig, secrets = {}, cf = DEFAULT_CF, persistDir, aiBinding } = {}) {
  if (!existsSync(WORKER_SCRIPT)) {
    throw new Error(`${WORKER_SCRIPT} is missing: build the Worker first (scripts/build-worker)`);
  }
  const logs = [];
  const verbose = !!process.env.E2E_VERBOSE;
  const bindings = {
    ...secrets,
    GATEWAY_CONFIG: typeof config === "string" ? config : JSON.stringify(config),
  };
  const gatewayWorker = {
    name: "gateway",
    modules: true,
    scriptPath: WORKER_SCRIPT,
    modulesRoot: WORKER_DIR,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: "2025-09-01",
    // As wrangler.toml: request.signal reports a client that disconnects.
    compatibilityFlags: ["enable_request_signal"],
    bindings,
    // GATEWAY_CACHE_KV: the response cache's global tier (adapters/cloudflare/src/cache_tiers.rs).
    kvNamespaces: ["GATEWAY_KV", "GATEWAY_CACHE_KV"],
    // Limits and budgets: one counter object per subject (adapters/cloudflare/src/counter.rs).
    // The semantic cache's vector index: one object per partition (adapters/cloudflare/src/vector.rs).
    // The usage rollups: one object per shard (adapters/cloudflare/src/stats.rs; wrangler.toml
    // migration v3).
    durableObjects: {
      COUNTERS: { className: "GatewayCounter", useSQLite: true },
      SEMANTIC_INDEX: { className: "GatewayVectorIndex", useSQLite: true },
      STATS: { className: "GatewayStats", useSQLite: true },
    },
  };
  const workers = aiBinding
    ? {
        workers: [
          { ...gatewayWorker, wrappedBindings: { AI: { scriptName: "ai-binding" } } },
          { name: "ai-binding", modules: true, script: aiBinding },
        ],
      }
    : gatewayWorker;
  const mf = new Miniflare({
    ...workers,
    cf: { ...cf },
    host: "127.0.0.1",
    port: 0,
    // In memory unless a test asks for a restart: nothing is written next to the tests.
    kvPersist: persistDir ? path.join(persistDir, "kv") : false,
    durableObjectsPersist: persistDir ? path.join(persistDir, "do") : false,
    cachePersist: false,
    handleStructuredLogs: ({ level, message }) => {
      logs.push({ level, message });
      if (verbose) process.stderr.write(`[worker ${level}] ${message}\n`);
    },
  });
  let disposed = false;
  try {
    const readyUrl = await mf.ready;
    const url = readyUrl.origin;
    const kv = await mf.getKVNamespace("GATEWAY_KV");
    if (kvConfig !== undefined) {
      await kv.put("config", typeof kvConfig === "string" ? kvConfig : JSON.stringify(kvConfig));
    }
    return {
      mf,
      url,
      baseUrl: `${url}/v1`,
      kv,
      /** The response cache's global tier, to see what was stored there. */
      cacheKv: await mf.getKVNamespace("GATEWAY_CACHE_KV"),
      logs,
      /** fetch() against the Worker over a real socket; `path` is relative to its origin. */
      fetch(pathname, init) {
        return fetch(new URL(pathname, url), init);
      },
      /** POST a JSON body (an object is stringified), with an optional consumer key. */
      post(pathname, body, { key, headers = {}, signal } = {}) {
        return fetch(new URL(pathname, url), {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(key ? { authorization: `Bearer ${key}` } : {}),
            ...headers,
          },
          body: typeof body === "string" ? body : JSON.stringify(body),
          signal,
        });
      },
      /** The Worker's log lines parsed as JSON (usage events); other lines are skipped. */
      jsonLogs() {
        const out = [];
        for (const { message } of logs) {
          try {
            const v = JSON.parse(message);
            if (v && typeof v === "object") out.push(v);
          } catch {
            /* not JSON */
          }
        }
        return out;
      },
      /** Waits (bounded, polling) for a JSON log line matching `predicate`; resolves with it. */
      async waitForLog(predicate, timeoutMs = 5000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const hit = this.jsonLogs().find(predicate);
          if (hit) return hit;
          if (Date.now() > deadline) {
            throw new Error(`no matching Worker log line within ${timeoutMs} ms; saw:\n${logs.map((l) => l.message).join("\n")}`);
          }
          await new Promise((r) => setTimeout(r, 25));
        }
      },
      async dispose() {
        if (disposed) return;
        disposed = true;
        await mf.dispose();
      },
    };
  } catch (e) {
    await mf.dispose().catch(() => {});
    throw e;
  }
}

/**
 * An `auth` section with API keys: `consumers` maps each id to its key, or to `[key, fields]`
 * for more fields (`{ eve: [EVE, { tenant: "eu-corp" }] }`).
 */
export function apiKeyAuth(consumers) {
  return {
    mode: "api_keys",
    consumers: Object.entries(consumers).map(([id, value]) => {
      const [key, fields] = Array.isArray(value) ? value : [value, {}];
      return { id, key_sha256: sha256Hex(key), ...fields };
    }),
  };
}

/**
 * POST a chat completion to `gw` and read the whole answer: `{ res, status, cache, text, json() }`
 * (`cache` is the `x-gateway-cache` header).
 */
export async function postChat(gw, body, { key, headers = {} } = {}) {
  const res = await gw.post("/v1/chat/completions", body, { key, headers });
  const text = await res.text();
  return { res, status: res.status, cache: res.headers.get("x-gateway-cache"), text, json: () => JSON.parse(text) };
}

/** The usage events `gw` logged so far (its JSON log lines with a request id). */
export function usageEvents(gw) {
  return gw.jsonLogs().filter((e) => e.request_id);
}

/** Cosine similarity of two vectors of the same length. */
export function cosine(a, b) {
  let [dot, na, nb] = [0, 0, 0];
  a.forEach((x, i) => {
    dot += x * b[i];
    na += x * x;
    nb += b[i] * b[i];
  });
  return dot / Math.sqrt(na * nb);
}

/** Asserts an OpenAI-shaped error body and returns it: { message, type, param, code }. */
export async function readError(res) {
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`expected a JSON error body, got ${res.status}: ${text.slice(0, 500)}`);
  }
  if (!body || typeof body.error !== "object" || body.error === null) {
    throw new Error(`expected {"error": {...}}, got ${res.status}: ${text.slice(0, 500)}`);
  }
  for (const field of ["message", "type", "param", "code"]) {
    if (!(field in body.error)) throw new Error(`error body lacks "${field}": ${text.slice(0, 500)}`);
  }
  if (typeof body.error.message !== "string" || body.error.message.length === 0) {
    throw new Error(`error.message must be a non-empty string: ${text.slice(0, 500)}`);
  }
  return { ...body.error, raw: text };
}

/**
 * Incremental SSE reader over a fetch Response body: `await sse.next()` returns the next
 * event's data (string) or null at the end. Keeps the raw text seen so far.
 */
export function sseReader(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let ended = false;
  const state = {
    raw: "",
    /** Next `data:` payload (multi-line data joined with \n), or null once the body ended. */
    async next() {
      for (;;) {
        const sep = buffer.search(/\r?\n\r?\n/);
        if (sep >= 0) {
          const block = buffer.slice(0, sep);
          buffer = buffer.slice(sep).replace(/^\r?\n\r?\n/, "");
          const data = block
            .split(/\r?\n/)
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, ""));
          if (data.length === 0) continue; // comment or event-less block
          return data.join("\n");
        }
        if (ended) {
          if (buffer.trim().length > 0) {
            const rest = buffer;
            buffer = "";
            throw new Error(`SSE body ended mid-event: ${JSON.stringify(rest)}`);
          }
          return null;
        }
        const { value, done } = await reader.read();
        if (done) {
          ended = true;
          buffer += decoder.decode();
          continue;
        }
        const text = decoder.decode(value, { stream: true });
        state.raw += text;
        buffer += text;
      }
    },
    /** All remaining events. */
    async rest() {
      const out = [];
      for (let d = await state.next(); d !== null; d = await state.next()) out.push(d);
      return out;
    },
    cancel() {
      return reader.cancel().catch(() => {});
    },
  };
  return state;
}

/** Reads a whole SSE response into its `data:` payloads. */
export async function readSse(res) {
  return sseReader(res).rest();
}

/** Races a promise against a safety timeout (never used to assert timing, only to not hang). */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A raw HTTP request over node:http (for tests that must drop the connection themselves).
 * Resolves with { res, req } once the response head arrived.
 */
export function rawRequest(url, { method = "POST", headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        headers: { ...(body ? { "content-length": Buffer.byteLength(body) } : {}), ...headers },
        agent: false,
      },
      (res) => resolve({ res, req }),
    );
    req.on("error", reject);
    if (body) req.write(body);
    req.end();
  });
}

export const chatBody = (model, content = "Hello there", extra = {}) => ({
  model,
  messages: [{ role: "user", content }],
  ...extra,
});

/** Every gateway response carries one non-empty `x-request-id`; returns it. */
export function assertRequestId(res) {
  const id = res.headers.get("x-request-id");
  if (!id || id.trim() === "" || id.includes(",")) {
    throw new Error(`expected a single x-request-id header, got ${JSON.stringify(id)} (status ${res.status})`);
  }
  return id;
}

/**
 * The usual suite setup: a mock upstream expecting the test provider key, and the Worker wired to
 * it with `makeConfig` (`limits` merged in; `configure(config)` may change the document before
 * start). Returns `{ up, gw, config, dispose }`; call `dispose` in `after`.
 */
export async function startWithUpstream({ limits = {}, configure } = {}) {
  const { startMockUpstream } = await import("./mock-upstream.mjs");
  const up = await startMockUpstream({ apiKey: KEYS.upstream });
  const config = makeConfig({ upstreamBaseUrl: up.baseUrl, limits });
  configure?.(config);
  let gw;
  try {
    gw = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream } });
  } catch (e) {
    await up.close();
    throw e;
  }
  return {
    up,
    gw,
    config,
    async dispose() {
      await gw.dispose();
      await up.close();
    },
  };
}

/**
 * A local OpenTelemetry collector stand-in: an OTLP/HTTP JSON receiver on 127.0.0.1 that keeps
 * every POST to `/v1/traces` and `/v1/metrics` (`{ path, headers, body }`) and answers 200.
 * `await otlp.waitFor("/v1/traces", (body) => ...)` resolves with the first matching body
 * (polling, up to `timeoutMs`): the gateway exports in the background after the response.
 */
export async function startOtlpReceiver() {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let body = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        /* kept as null: a test asserting on it fails */
      }
      received.push({ method: req.method, path: req.url, headers: { ...req.headers }, body, raw: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    received,
    async waitFor(path, predicate = () => true, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = received.find((r) => r.path === path && r.body && predicate(r.body, r));
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`no ${path} export matched within ${timeoutMs} ms (got ${received.length} posts)`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    close() {
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
