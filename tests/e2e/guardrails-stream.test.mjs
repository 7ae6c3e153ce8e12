// The output guard on streams, through the built Worker: an upstream streams a PEM private key
// and a JWT in 1-3 character deltas, each event written to the socket 3 bytes at a time (so a
// write ends inside a UTF-8 character or an event). With `secret: block` the client never sees
// any part of either secret, only an error event; with `secret: redact` it sees exactly the
// redacted whole answer. Checked with the official OpenAI SDK and with raw SSE.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import OpenAI from "openai";
import { KEYS, chatBody, makeConfig, sseReader, startGateway, withTimeout } from "../harness.mjs";

const PEM =
  "-----BEGIN RSA PRIVATE KEY-----\n" +
  "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\n" +
  "UTmPk2sm2xNKi6T1LxLwnL9XGk3XZxq0VVw8GEfwhGWHNGBjZW5eu6AINvHk2W8x\n" +
  "-----END RSA PRIVATE KEY-----";
const JWT =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const REPLY = `Voilà la clé 🔑:\n${PEM}\net le jeton ${JWT} — fin.`;
const REDACTED = "Voilà la clé 🔑:\n[SECRET_1]\net le jeton [SECRET_2] — fin.";
/** Pieces of the secrets that must never reach a client when they are blocked or redacted. */
const SECRET_PARTS = ["PRIVATE KEY", "MIIEowIBAAKC", "0Z3VS5JJ", "eyJhbGci", "dozjgNry"];

/** An OpenAI-compatible upstream that answers REPLY, streamed in tiny deltas and socket writes. */
function startLeakyUpstream() {
  const server = http.createServer(async (req, res) => {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw);
    const id = "chatcmpl-leak";
    if (!body.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        id, object: "chat.completion", created: 1, model: body.model,
        choices: [{ index: 0, message: { role: "assistant", content: REPLY }, finish_reason: "stop" }],
        usage: { prompt_tokens: 3, completion_tokens: 40, total_tokens: 43 },
      }));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    const chunk = (delta, finish) => JSON.stringify({
      id, object: "chat.completion.chunk", created: 1, model: body.model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    const events = [chunk({ role: "assistant", content: "" }, null)];
    const chars = [...REPLY];
    for (let at = 0, size = 1; at < chars.length; at += size, size = (size % 3) + 1) {
      events.push(chunk({ content: chars.slice(at, at + size).join("") }, null));
    }
    events.push(chunk({}, "stop"), "[DONE]");
    for (const event of events) {
      const bytes = Buffer.from(`data: ${event}\n\n`);
      for (let i = 0; i < bytes.length; i += 3) res.write(bytes.subarray(i, i + 3));
      await new Promise((resolve) => setImmediate(resolve));
    }
    res.end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    close: () => new Promise((done) => server.close(done)),
  })));
}

let up;
let gw;
let client;

before(async () => {
  up = await startLeakyUpstream();
  const config = makeConfig({
    upstreamBaseUrl: up.baseUrl,
    models: {
      "leak-block": { provider: "upstream", upstream_model: "leak", guard: "secret-block" },
      "leak-redact": { provider: "upstream", upstream_model: "leak", guard: "secret-redact" },
    },
  });
  config.guards = {
    "secret-block": { pii: { secret: "block" } },
    "secret-redact": { pii: { secret: "redact" } },
  };
  try {
    gw = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream } });
  } catch (e) {
    await up.close();
    throw e;
  }
  client = new OpenAI({ baseURL: gw.baseUrl, apiKey: KEYS.web, maxRetries: 0, timeout: 20_000 });
});
after(async () => {
  await gw?.dispose();
  await up?.close();
});

function assertNoSecret(seen, where) {
  for (const part of SECRET_PARTS) assert.ok(!seen.includes(part), `${where}: the client saw "${part}": ${seen}`);
}

describe("streamed secrets", () => {
  test("secret: block — raw SSE gets an error event and no part of either secret", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("leak-block", "go", { stream: true }), { key: KEYS.web });
    assert.equal(res.status, 200);
    const sse = sseReader(res);
    const events = await withTimeout(sse.rest(), 10000, "stream");
    assertNoSecret(sse.raw, "raw SSE");
    assert.equal(JSON.parse(events.at(-1)).error.code, "content_blocked");
    assert.ok(!events.includes("[DONE]"));
  });

  test("secret: block — the OpenAI SDK raises an APIError and saw no part of either secret", async () => {
    const stream = await client.chat.completions.create({ model: "leak-block", messages: [{ role: "user", content: "go" }], stream: true });
    let seen = "";
    await assert.rejects(async () => {
      for await (const chunk of stream) seen += chunk.choices[0]?.delta?.content ?? "";
    }, (e) => e instanceof OpenAI.APIError);
    assertNoSecret(seen, "openai SDK");
    assert.ok(seen.startsWith("Voilà la clé"), `the text before the key still came through: ${seen}`);
  });

  test("secret: redact — both clients see exactly the whole answer's redaction", async () => {
    const whole = await client.chat.completions.create({ model: "leak-redact", messages: [{ role: "user", content: "go" }] });
    assert.equal(whole.choices[0].message.content, REDACTED);

    const stream = await client.chat.completions.create({ model: "leak-redact", messages: [{ role: "user", content: "go" }], stream: true });
    let seen = "";
    for await (const chunk of stream) seen += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(seen, REDACTED);

    const res = await gw.post("/v1/chat/completions", chatBody("leak-redact", "go", { stream: true }), { key: KEYS.web });
    const sse = sseReader(res);
    const events = await withTimeout(sse.rest(), 10000, "stream");
    assertNoSecret(sse.raw, "raw SSE");
    assert.equal(events.at(-1), "[DONE]");
    const text = events.slice(0, -1).map((d) => JSON.parse(d).choices?.[0]?.delta?.content ?? "").join("");
    assert.equal(text, REDACTED);
  });
});
