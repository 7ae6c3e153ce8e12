// The loopback OpenAI-compatible upstream the latency benchmarks call (directly and through the
// gateway): one fixed completion (or, on /v1/embeddings, one fixed vector), counted calls.
import http from "node:http";

export const COMPLETION = JSON.stringify({
  id: "chatcmpl-bench", object: "chat.completion", created: 1700000000, model: "gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(400) }, logprobs: null, finish_reason: "stop" }],
  usage: { prompt_tokens: 20, completion_tokens: 100, total_tokens: 120 },
});

/** Resolves to `{ server, url, calls() }` once listening on 127.0.0.1. */
/** The same unit vector for every input: the semantic-cache bench decides hits by the false-hit
 * check alone (a changed number misses at similarity 1). */
export const EMBEDDING = JSON.stringify({
  object: "list", model: "text-embedding-3-small",
  data: [{ object: "embedding", index: 0, embedding: Array.from({ length: 256 }, () => 1 / 16) }],
  usage: { prompt_tokens: 8, total_tokens: 8 },
});

export function startUpstream() {
  let calls = 0;
  const server = http.createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      calls++;
      const body = req.url.endsWith("/embeddings") ? EMBEDDING : COMPLETION;
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://127.0.0.1:${server.address().port}`, calls: () => calls })),
  );
}
