// Workers AI through the Worker's AI binding (`"kind": "workers_ai", "binding": "AI"`): the
// gateway calls env.AI.run(model, inputs) with Workers AI's native text-generation input and
// translates the native result and event stream to OpenAI's shapes. The binding is a stand-in
// (a miniflare wrapped binding) that checks its inputs like the native schema and answers in the
// native output format: { response, tool_calls, usage } and `data: {"response": ...}` events.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chatBody, readError, readSse, startGateway } from "../harness.mjs";

const AI_BINDING = `
const encoder = new TextEncoder();
export default function () {
  return {
    async run(model, inputs) {
      if (typeof model !== "string" || !model.startsWith("@cf/")) throw new Error("5007: No such model " + model);
      if (model.includes("bge")) {
        if (!Array.isArray(inputs.text)) throw new Error("5006: text must be an array");
        return { shape: [inputs.text.length, 3], data: inputs.text.map((t) => [t.length, 0.5, -0.5]) };
      }
      if (!Array.isArray(inputs.messages) || inputs.messages.some((m) => typeof m.content !== "string")) {
        throw new Error("5006: messages must be {role, content: string}");
      }
      const last = inputs.messages[inputs.messages.length - 1].content;
      const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };
      if (Array.isArray(inputs.tools) && inputs.tools.length > 0) {
        return { response: "", tool_calls: [{ name: inputs.tools[0].function.name, arguments: { city: "Paris" } }], usage };
      }
      if (inputs.stream) {
        const events = ["Echo: ", last].map((t) => "data: " + JSON.stringify({ response: t }) + "\\n\\n");
        events.push("data: " + JSON.stringify({ response: "", usage }) + "\\n\\n", "data: [DONE]\\n\\n");
        return new ReadableStream({
          start(controller) {
            for (const e of events) controller.enqueue(encoder.encode(e));
            controller.close();
          },
        });
      }
      return { response: "Echo: " + last, usage };
    },
  };
}
`;

describe("Workers AI through the AI binding", () => {
  let gw;
  before(async () => {
    gw = await startGateway({
      aiBinding: AI_BINDING,
      config: {
        auth: { mode: "none" },
        providers: { cf: { kind: "workers_ai", binding: "AI" } },
        models: {
          llama: { provider: "cf", upstream_model: "@cf/meta/llama-3.1-8b-instruct" },
          nope: { provider: "cf", upstream_model: "not-a-model" },
          bge: { provider: "cf", upstream_model: "@cf/baai/bge-small-en-v1.5", type: "embeddings" },
        },
      },
    });
  });
  after(() => gw?.dispose());

  test("a chat completion in OpenAI's shape, usage included", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("llama", "Bonjour"));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, "chat.completion");
    assert.equal(body.choices[0].message.content, "Echo: Bonjour");
    assert.equal(body.choices[0].finish_reason, "stop");
    assert.deepEqual([body.usage.prompt_tokens, body.usage.completion_tokens, body.usage.total_tokens], [7, 3, 10]);
  });

  test("a streamed completion as OpenAI chunks", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("llama", "stream me", { stream: true, stream_options: { include_usage: true } }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /text\/event-stream/);
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), "Echo: stream me");
    assert.equal(chunks.at(-1).usage.total_tokens, 10);
  });

  test("tool calls come back as OpenAI tool_calls", async () => {
    const tools = [{ type: "function", function: { name: "weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
    const res = await gw.post("/v1/chat/completions", chatBody("llama", "Weather in Paris?", { tools }));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.choices[0].finish_reason, "tool_calls");
    assert.equal(body.choices[0].message.tool_calls[0].function.name, "weather");
    assert.deepEqual(JSON.parse(body.choices[0].message.tool_calls[0].function.arguments), { city: "Paris" });
  });

  test("embeddings", async () => {
    const res = await gw.post("/v1/embeddings", { model: "bge", input: ["abc", "de"] });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(body.data.map((d) => d.embedding), [[3, 0.5, -0.5], [2, 0.5, -0.5]]);
  });

  test("a binding error is a 502 without the binding's message", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("nope"));
    const err = await readError(res);
    assert.equal(res.status, 502);
    assert.doesNotMatch(err.raw, /5007|No such model/);
  });

  test("images are refused with a 400 before the binding is called", async () => {
    const res = await gw.post("/v1/chat/completions", {
      model: "llama",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/cat.png" } }] }],
    });
    const err = await readError(res);
    assert.equal(res.status, 400);
    assert.match(err.message, /images are not supported/);
  });
});
