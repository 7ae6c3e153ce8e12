// What the tiktoken prompt-token estimator costs at the edge, measured in V8 (the engine Workers
// run) through Node's WASI on edge/examples/tokenize_bench.rs built for wasm32-wasip1:
//  - size: gzipped size of the example built with and without `--features tiktoken`; the delta
//    is what the tokenizer adds (measured on the example binary, not on the Worker bundle),
// Times inside the module are process CPU time (WASI process_cputime_id; see the example).
//  - cold start: CPU time of the first estimate in a fresh wasm instance (builds the encoder),
//    over several fresh instances, plus V8's compile time of each module,
//  - per request: an estimate once built, short/medium/long chat requests, exact and heuristic.
// Usage: node tokenizer-wasi.mjs <with-tiktoken.wasm> <without-tiktoken.wasm> [cold runs] [scale]
// Prints one JSON object.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { WASI } from "node:wasi";

const [withPath, withoutPath, coldRunsArg = "5", scale = "1"] = process.argv.slice(2);
if (!withPath || !withoutPath) {
  console.error("usage: node tokenizer-wasi.mjs <with-tiktoken.wasm> <without-tiktoken.wasm> [cold runs] [scale]");
  process.exit(2);
}
const coldRuns = Math.max(1, Number(coldRunsArg) || 5);

// Reads an unsigned LEB128 at `pos`; returns [value, next position].
function leb(bytes, pos) {
  let value = 0, shift = 0, byte;
  do {
    byte = bytes[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, pos];
}

// The module without custom sections (names, producers, debug info): code and data only, which
// is closer to what a size-optimised, stripped Worker build ships.
function stripCustomSections(bytes) {
  const kept = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const start = pos;
    const id = bytes[pos++];
    const [size, body] = leb(bytes, pos);
    pos = body + size;
    if (id !== 0) kept.push(bytes.subarray(start, pos));
  }
  return Buffer.concat(kept);
}

function sizes(bytes) {
  const stripped = stripCustomSections(bytes);
  const gz = (b) => zlib.gzipSync(b, { level: 9 }).length;
  return { raw_bytes: bytes.length, gzip_bytes: gz(bytes), stripped_raw_bytes: stripped.length, stripped_gzip_bytes: gz(stripped) };
}

async function compileMedian(bytes, runs = 5) {
  const times = [];
  let module;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    module = await WebAssembly.compile(bytes);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { module, ms: round(times[Math.floor(runs / 2)]) };
}

const round = (v) => Math.round(v * 100) / 100;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Runs the example in a fresh instance of `module`, capturing its stdout (one JSON line).
async function run(module, args) {
  const tmp = path.join(os.tmpdir(), `tokenize-bench-${process.pid}-${Math.random().toString(36).slice(2)}.out`);
  const fd = fs.openSync(tmp, "w+");
  try {
    const wasi = new WASI({ version: "preview1", args: ["tokenize_bench", ...args], stdout: fd, returnOnExit: true });
    const start = performance.now();
    const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
    const instantiateMs = performance.now() - start;
    const code = wasi.start(instance);
    const totalMs = performance.now() - start;
    if (code !== 0) throw new Error(`tokenize_bench exited with ${code}`);
    return { result: JSON.parse(fs.readFileSync(tmp, "utf8")), instantiateMs, totalMs };
  } finally {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
  }
}

async function coldStarts(module) {
  const runs = [];
  for (let i = 0; i < coldRuns; i++) runs.push(await run(module, ["cold"]));
  const first = runs.map((r) => r.result.first_estimate.cpu_ms);
  return {
    fresh_instances: coldRuns,
    clock: runs[0].result.clock,
    estimator: runs[0].result.first_estimate.estimator,
    first_estimate_cpu_ms: { median: median(first), min: Math.min(...first), max: Math.max(...first) },
    first_estimate_wall_ms_median: median(runs.map((r) => r.result.first_estimate.wall_ms)),
    instantiate_ms_median: round(median(runs.map((r) => r.instantiateMs))),
    instance_total_ms_median: round(median(runs.map((r) => r.totalMs))),
  };
}

const withBytes = fs.readFileSync(withPath);
const withoutBytes = fs.readFileSync(withoutPath);
const sizeWith = sizes(withBytes);
const sizeWithout = sizes(withoutBytes);
const compiledWith = await compileMedian(withBytes);
const compiledWithout = await compileMedian(withoutBytes);
process.stderr.write(`[tokenizer-wasi] compiled: ${compiledWith.ms} ms with tiktoken, ${compiledWithout.ms} ms without\n`);

const coldWith = await coldStarts(compiledWith.module);
const coldWithout = await coldStarts(compiledWithout.module);
const full = (await run(compiledWith.module, ["full", scale])).result;
if (!full.feature_tiktoken || full.first_estimate.estimator !== "tiktoken") throw new Error("the first wasm was not built with --features tiktoken");
if (coldWithout.estimator !== "heuristic") throw new Error("the second wasm was built with --features tiktoken");

console.log(JSON.stringify({
  size: {
    note: "size delta of the tokenizer (tiktoken-rs + o200k_base tables), measured on the edge tokenize_bench example built for wasm32-wasip1 (release), not on the Worker bundle",
    with_tiktoken: sizeWith,
    without_tiktoken: sizeWithout,
    delta_gzip_bytes: sizeWith.gzip_bytes - sizeWithout.gzip_bytes,
    delta_stripped_gzip_bytes: sizeWith.stripped_gzip_bytes - sizeWithout.stripped_gzip_bytes,
  },
  v8_compile_ms_median: { with_tiktoken: compiledWith.ms, without_tiktoken: compiledWithout.ms },
  cold_start: { with_tiktoken: coldWith, without_tiktoken: coldWithout },
  per_request: { clock: full.clock, cases: full.cases },
}, null, 2));
