// Latency the gateway adds over calling the upstream directly: the built Worker in workerd
// (miniflare) in front of a local OpenAI-compatible upstream, loopback only, bounded request
// counts. Prints one JSON object. Run by scripts/bench; not a test (no thresholds).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { startUpstream } from "./upstream.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const body = JSON.stringify({ model: "gpt", messages: [{ role: "user", content: "Benchmark me, please." }] });

async function timed(url, headers) {
  const start = performance.now();
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`status ${res.status} from ${url}`);
  return performance.now() - start;
}

async function run(url, headers, total, concurrency) {
  const samples = [];
  let issued = 0;
  const worker = async () => {
    while (issued < total) {
      issued++;
      samples.push(await timed(url, headers));
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wall = performance.now() - start;
  samples.sort((a, b) => a - b);
  const pct = (p) => samples[Math.min(samples.length - 1, Math.floor(samples.length * p))];
  const r = (v) => Math.round(v * 1000) / 1000;
  return { requests: total, concurrency, p50_ms: r(pct(0.5)), p99_ms: r(pct(0.99)), rps: Math.round(total / (wall / 1000)) };
}

const upstream = await startUpstream();
const upstreamUrl = upstream.url;
const config = {
  auth: { mode: "none" },
  // A loopback http upstream: allowed because this is the shipped configuration (SECURITY.md).
  network: { allow_private_upstreams: true },
  providers: { up: { kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "OPENAI_API_KEY" } },
  models: { gpt: { provider: "up", upstream_model: "gpt-4o-mini" } },
};
const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(root, "adapters/cloudflare/build/index.js"),
  modulesRoot: path.join(root, "adapters/cloudflare/build"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: "2025-09-01",
  // As wrangler.toml: request.signal reports a client that disconnects.
  compatibilityFlags: ["enable_request_signal"],
  bindings: { GATEWAY_CONFIG: JSON.stringify(config), OPENAI_API_KEY: "sk-bench" },
  cf: { country: "DE", colo: "FRA", continent: "EU", isEUCountry: "1" },
  // As deployed: each request's usage rollup is written to a stats shard in the background.
  durableObjects: { STATS: { className: "GatewayStats", useSQLite: true } },
  // The Worker logs one usage event per request; the benchmark's stdout is its JSON result.
  handleStructuredLogs: () => {},
});
const gatewayUrl = (await mf.ready).toString().replace(/\/$/, "");

const direct = `${upstreamUrl}/v1/chat/completions`;
const viaGateway = `${gatewayUrl}/v1/chat/completions`;
const requests = Number(process.env.BENCH_REQUESTS || 400);
// Warm both paths (isolate start, connection pools) before measuring.
await run(direct, {}, 50, 4);
await run(viaGateway, {}, 50, 4);

const results = {};
for (const concurrency of [1, 32]) {
  const n = concurrency === 1 ? requests : requests * 4;
  const d = await run(direct, {}, n, concurrency);
  const g = await run(viaGateway, {}, n, concurrency);
  results[`c${concurrency}`] = {
    direct: d,
    gateway: g,
    overhead_p50_ms: Math.round((g.p50_ms - d.p50_ms) * 1000) / 1000,
    overhead_p99_ms: Math.round((g.p99_ms - d.p99_ms) * 1000) / 1000,
  };
}
await mf.dispose();
upstream.server.close();
console.log(JSON.stringify(results));
