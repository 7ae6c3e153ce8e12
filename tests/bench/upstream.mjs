// The loopback OpenAI-compatible upstream the latency benchmarks call (directly and through the
// gateway): one fixed completion, counted calls.
import http from "node:http";

export const COMPLETION = JSON.stringify({
  id: "chatcmpl-bench", object: "chat.completion", created: 1700000000, model: "gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(400) }, logprobs: null, finish_reason: "stop" }],
  usage: { prompt_tokens: 20, completion_tokens: 100, total_tokens: 120 },
});

/** Resolves to `{ server, url, calls() }` once listening on 127.0.0.1. */
export function startUpstream() {
  let calls = 0;
  const server = http.createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      calls++;
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(COMPLETION) });
      res.end(COMPLETION);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://127.0.0.1:${server.address().port}`, calls: () => calls })),
  );
}
