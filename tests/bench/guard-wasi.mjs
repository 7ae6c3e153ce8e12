// Runs the guardrail evaluation (policy/examples/guard_eval.rs built for wasm32-wasip1) in V8
// through Node's WASI, so throughput and rule-set compile time are measured in the engine that
// Workers run. Usage: node guard-wasi.mjs <guard_eval.wasm> <eval.jsonl>
import fs from "node:fs";
import path from "node:path";
import { WASI } from "node:wasi";

const [wasmPath, evalPath] = process.argv.slice(2);
const dir = path.dirname(path.resolve(evalPath));
const wasi = new WASI({
  version: "preview1",
  args: ["guard_eval", `/data/${path.basename(evalPath)}`],
  preopens: { "/data": dir },
  returnOnExit: true,
});
const start = performance.now();
const module = await WebAssembly.compile(fs.readFileSync(wasmPath));
const compileMs = performance.now() - start;
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.stderr.write(`[guard-wasi] wasm module compiled in ${compileMs.toFixed(1)} ms\n`);
const code = wasi.start(instance);
process.exitCode = code;
