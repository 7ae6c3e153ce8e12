// A hostile or broken upstream behind the gateway in workerd: error bodies and stream error
// events that echo the credentials the gateway sent reach the official OpenAI and Anthropic SDKs
// without them, and a 200 carrying an HTML page falls back to the route's next target.
// The upstream here is a small loopback server of this file (it echoes what it receives).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { KEYS, makeConfig, startGateway } from "../harness.mjs";

const OPENAI_KEY = "hostile-test-openai-credential-0001";
const ANTHROPIC_KEY = "hostile-test-anthropic-credential-0002";

let upstream;
let upstreamUrl;
let gw;

/** Everything a credential could be in: the request's headers, and the key it carried base64-encoded. */
function echo(req) {
  const key = req.headers["x-api-key"] ?? (req.headers.authorization ?? "").replace(/^Bearer /, "");
  return `Invalid request. Headers received: ${JSON.stringify(req.headers)} (key in base64: ${Buffer.from(key).toString("base64")})`;
}

function completion(text) {
  return {
    id: "chatcmpl-backup",
    object: "chat.completion",
    created: 1,
    model: "gpt-4o-mini",
    choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  };
}

function handle(req, res, body) {
  const request = body ? JSON.parse(body) : {};
  const send = (status, type, text) => {
    res.writeHead(status, { "content-type": type });
    res.end(text);
  };
  if (req.url.startsWith("/backup/")) {
    if (request.stream) {
      const chunk = { choices: [{ index: 0, delta: { content: "from backup" } }] };
      return send(200, "text/event-stream", `data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
    }
    return send(200, "application/json", JSON.stringify(completion("from backup")));
  }
  if (req.url === "/v1/messages") {
    const error = { type: "error", error: { type: "invalid_request_error", message: echo(req) } };
    return send(400, "application/json", JSON.stringify(error));
  }
  switch (request.model) {
    case "html":
      return send(200, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>");
    case "echo-stream": {
      const chunk = { choices: [{ index: 0, delta: { content: "partial" } }] };
      const error = { error: { message: echo(req), type: "server_error", code: "echoed" } };
      return send(200, "text/event-stream", `data: ${JSON.stringify(chunk)}\n\ndata: ${JSON.stringify(error)}\n\n`);
    }
    default: {
      const error = { error: { message: echo(req), type: "invalid_request_error", param: "messages", code: "echoed" } };
      return send(400, "application/json", JSON.stringify(error));
    }
  }
}

/** No form of either provider key appears in `text`. */
function assertNoKey(text) {
  for (const key of [OPENAI_KEY, ANTHROPIC_KEY]) {
    assert.ok(!text.includes(key), `the provider key reached the client: ${text}`);
    assert.ok(!text.includes(Buffer.from(key).toString("base64")), `a base64 form reached the client: ${text}`);
  }
}

before(async () => {
  upstream = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => handle(req, res, body));
  });
  await new Promise((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;
  const config = makeConfig({
    providers: {
      hostile: { kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "HOSTILE_KEY" },
      backup: { kind: "openai", base_url: `${upstreamUrl}/backup/v1`, api_key_secret: "HOSTILE_KEY" },
      "hostile-anthropic": { kind: "anthropic", base_url: upstreamUrl, api_key_secret: "HOSTILE_ANTHROPIC_KEY" },
    },
    models: {
      echo: { provider: "hostile", upstream_model: "echo" },
      "echo-stream": { provider: "hostile", upstream_model: "echo-stream" },
      "claude-echo": { provider: "hostile-anthropic", upstream_model: "claude-test" },
      routed: {
        targets: [
          { id: "html-page", provider: "hostile", upstream_model: "html", region: "us-east-1", jurisdiction: "us" },
          { id: "backup", provider: "backup", upstream_model: "gpt-4o-mini", region: "eu-west-1", jurisdiction: "eu" },
        ],
        strategy: { type: "ordered" },
      },
    },
  });
  gw = await startGateway({ config, secrets: { HOSTILE_KEY: OPENAI_KEY, HOSTILE_ANTHROPIC_KEY: ANTHROPIC_KEY } });
});

after(async () => {
  await gw?.dispose();
  await new Promise((resolve) => (upstream ? upstream.close(resolve) : resolve()));
});

describe("an upstream that echoes the gateway's credentials", () => {
  test("the OpenAI SDK sees the provider's error without the key", async () => {
    const client = new OpenAI({ baseURL: gw.baseUrl, apiKey: KEYS.web, maxRetries: 0, timeout: 20_000 });
    await assert.rejects(client.chat.completions.create({ model: "echo", messages: [{ role: "user", content: "x" }] }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.code, "echoed");
      assert.equal(e.param, "messages");
      assert.ok(e.message.includes("Invalid request. Headers received") && e.message.includes("[REDACTED]"), e.message);
      assertNoKey(JSON.stringify(e.error) + e.message);
      return true;
    });
    const stream = await client.chat.completions.create({ model: "echo-stream", stream: true, messages: [{ role: "user", content: "x" }] });
    let text = "";
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
      })(),
      (e) => {
        assert.ok(e instanceof OpenAI.APIError, String(e));
        assertNoKey(JSON.stringify(e.error ?? null) + e.message);
        return true;
      },
    );
    assert.equal(text, "partial");
  });

  test("the Anthropic SDK sees the provider's error without the key", async () => {
    const client = new Anthropic({ baseURL: gw.url, apiKey: KEYS.web, maxRetries: 0, timeout: 20_000 });
    for (const model of ["echo", "claude-echo"]) {
      await assert.rejects(client.messages.create({ model, max_tokens: 16, messages: [{ role: "user", content: "x" }] }), (e) => {
        assert.ok(e instanceof Anthropic.BadRequestError, `${model}: ${e}`);
        assert.equal(e.error?.type, "error");
        assert.ok(e.message.includes("[REDACTED]"), e.message);
        assertNoKey(JSON.stringify(e.error) + e.message);
        return true;
      });
    }
  });
});

describe("a 200 that is not JSON", () => {
  test("an HTML page falls back to the route's next target (whole and streamed)", async () => {
    for (const stream of [false, true]) {
      const res = await gw.post("/v1/chat/completions", { model: "routed", stream, messages: [{ role: "user", content: "x" }] }, { key: KEYS.web });
      const text = await res.text();
      assert.equal(res.status, 200, text);
      assert.ok(text.includes("from backup"), text);
      const route = res.headers.get("x-gateway-route") ?? "";
      assert.ok(route.includes("target=backup") && route.includes("fallback(upstream_invalid_response@html-page)"), route);
    }
  });
});
