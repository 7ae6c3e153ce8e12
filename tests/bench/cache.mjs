// The response cache's latency in workerd (miniflare), against a loopback OpenAI-compatible
// upstream: a direct call to the mock, the gateway without a cache, a cache miss (a new prompt
// every request: the lookup in both tiers, the call, the background write), and a cache hit (the
// same prompt: the Cache API read, no upstream call). Concurrency 1, bounded request counts.
// Prints one JSON object. Run by scripts/bench (or alone: `cd tests && node bench/cache.mjs`).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { startUpstream } from "./upstream.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let serial = 0;
const bodyFor = (model, prompt) => JSON.stringify({ model, messages: [{ role: "user", content: prompt }] });

async function timed(url, body, expectCache) {
  const start = performance.now();
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
  await res.arrayBuffer();
  const ms = performance.now() - start;
  if (res.status !== 200) throw new Error(`status ${res.status} from ${url}`);
  if (expectCache && res.headers.get("x-gateway-cache") !== expectCache) {
    throw new Error(`expected x-gateway-cache ${expectCache}, got ${res.headers.get("x-gateway-cache")}`);
  }
  return ms;
}

async function run(n, next) {
  const samples = [];
  for (let i = 0; i < n; i++) samples.push(await next());
  samples.sort((a, b) => a - b);
  const pct = (p) => samples[Math.min(samples.length - 1, Math.floor(samples.length * p))];
  const r = (v) => Math.round(v * 1000) / 1000;
  return { requests: n, p50_ms: r(pct(0.5)), p99_ms: r(pct(0.99)) };
}

const upstream = await startUpstream();
const upstreamUrl = upstream.url;
const config = {
  auth: { mode: "none" },
  network: { allow_private_upstreams: true },
  providers: { up: { kind: "openai", base_url: `${upstreamUrl}/v1`, api_key_secret: "OPENAI_API_KEY" } },
  models: {
    gpt: { provider: "up", upstream_model: "gpt-4o-mini" },
    "gpt-cached": { provider: "up", upstream_model: "gpt-4o-mini", cache: { mode: "exact", ttl_s: 3600 } },
  },
};
const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(root, "adapters/cloudflare/build/index.js"),
  modulesRoot: path.join(root, "adapters/cloudflare/build"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: "2025-09-01",
  bindings: { GATEWAY_CONFIG: JSON.stringify(config), OPENAI_API_KEY: "sk-bench" },
  kvNamespaces: ["GATEWAY_CACHE_KV"],
  cachePersist: false,
  cf: { country: "DE", colo: "FRA", continent: "EU", isEUCountry: "1" },
  // As deployed: each request's usage rollup is written to a stats shard in the background.
  durableObjects: { STATS: { className: "GatewayStats", useSQLite: true } },
  handleStructuredLogs: () => {},
});
const gateway = `${(await mf.ready).toString().replace(/\/$/, "")}/v1/chat/completions`;
const direct = `${upstreamUrl}/v1/chat/completions`;
const n = Number(process.env.BENCH_REQUESTS || 400);

// Warm every path before measuring.
await run(50, () => timed(direct, bodyFor("gpt-4o-mini", "warm")));
await run(50, () => timed(gateway, bodyFor("gpt", "warm")));
await run(50, () => timed(gateway, bodyFor("gpt-cached", `warm ${++serial}`)));
const hitBody = bodyFor("gpt-cached", "Benchmark me, please.");
await timed(gateway, hitBody);
await new Promise((r) => setTimeout(r, 200)); // the background write
await run(50, () => timed(gateway, hitBody, "hit"));

const results = {
  direct: await run(n, () => timed(direct, bodyFor("gpt-4o-mini", "Benchmark me, please."))),
  no_cache: await run(n, () => timed(gateway, bodyFor("gpt", "Benchmark me, please."))),
  miss: await run(n, () => timed(gateway, bodyFor("gpt-cached", `Benchmark me, please. ${++serial}`), "miss")),
  hit: await run(n, () => timed(gateway, hitBody, "hit")),
};
const r = (v) => Math.round(v * 1000) / 1000;
results.added_p50_ms = {
  no_cache_vs_direct: r(results.no_cache.p50_ms - results.direct.p50_ms),
  miss_vs_direct: r(results.miss.p50_ms - results.direct.p50_ms),
  hit_vs_direct: r(results.hit.p50_ms - results.direct.p50_ms),
  miss_vs_no_cache: r(results.miss.p50_ms - results.no_cache.p50_ms),
};
await mf.dispose();
upstream.server.close();
console.log(JSON.stringify(results));
