// The semantic cache's embedded vector index in workerd: the `GatewayVectorIndex` Durable Object
// (adapters/cloudflare/src/vector.rs), one SQLite-backed object per partition, called here
// directly through miniflare with the core's wire protocol (policy::cache::IndexOp) — the same
// request `WorkerHost::vector_upsert`/`vector_query` send. The pipeline's semantic tier, which
// reaches it through the Host trait, is tested end to end in semantic-cache.test.mjs (docs/cache.md, "Semantic cache").
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { makeConfig, startGateway } from "../harness.mjs";

const started = [];
const tempDirs = [];
after(async () => {
  for (const gw of started) await gw.dispose();
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function start(opts = {}) {
  const gw = await startGateway({ config: makeConfig(), ...opts });
  started.push(gw);
  return gw;
}

/** POST one index operation to the object named `name`; returns the parsed reply. */
async function op(gw, name, body, { expectStatus = 200 } = {}) {
  const ns = await gw.mf.getDurableObjectNamespace("SEMANTIC_INDEX");
  const res = await ns.get(ns.idFromName(name)).fetch("https://gateway-object.internal/op", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, expectStatus, text);
  return expectStatus === 200 ? JSON.parse(text) : text;
}

const upsert = (id, vector, metadata = "") => ({ op: "upsert", id, vector, metadata });
const query = (vector, top_k = 5) => ({ op: "query", vector, top_k });

describe("semantic index Durable Object", () => {
  test("stores, ranks by cosine similarity, replaces by id, and keeps partitions apart", async () => {
    const gw = await start();
    assert.deepEqual(await op(gw, "semantic/p1", upsert("a", [1, 0, 0], '{"q":"a"}')), { reply: "stored", evicted: [] });
    await op(gw, "semantic/p1", upsert("b", [0.6, 0.8, 0]));
    await op(gw, "semantic/p1", upsert("c", [0, 0, 1]));
    await op(gw, "semantic/p2", upsert("other-tenant", [1, 0, 0]));

    const { reply, matches } = await op(gw, "semantic/p1", query([1, 0, 0], 2));
    assert.equal(reply, "matches");
    assert.deepEqual(matches.map((m) => m.id), ["a", "b"], "best first, top_k bounds the list");
    assert.equal(matches[0].metadata, '{"q":"a"}');
    assert.ok(Math.abs(matches[0].score - 1) < 1e-6 && Math.abs(matches[1].score - 0.6) < 1e-6, JSON.stringify(matches));

    // Same id again: replaced, not duplicated.
    await op(gw, "semantic/p1", upsert("a", [0, 0, 1], "new"));
    const again = (await op(gw, "semantic/p1", query([0, 0, 1], 5))).matches;
    assert.deepEqual(again.map((m) => m.id).sort(), ["a", "b", "c"]);
    assert.equal(again.find((m) => m.id === "a").metadata, "new");

    // Another partition's object never sees these entries, and an unknown one is empty.
    assert.deepEqual((await op(gw, "semantic/p2", query([1, 0, 0]))).matches.map((m) => m.id), ["other-tenant"]);
    assert.deepEqual((await op(gw, "semantic/p3", query([1, 0, 0]))).matches, []);
  });

  test("entries survive a restart (SQLite storage, f32 blobs)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gw-semantic-"));
    tempDirs.push(dir);
    const first = await start({ persistDir: dir });
    const vector = [0.1, -0.2, 0.3, 0.4];
    await op(first, "semantic/p", upsert("kept", vector, "meta"));
    await first.dispose();

    const second = await start({ persistDir: dir });
    const { matches } = await op(second, "semantic/p", query(vector, 1));
    assert.equal(matches.length, 1);
    assert.equal(matches[0].id, "kept");
    assert.equal(matches[0].metadata, "meta");
    assert.ok(Math.abs(matches[0].score - 1) < 1e-6, `f32 round trip keeps the vector: ${matches[0].score}`);
  });

  test("refuses what is not an index operation", async () => {
    const gw = await start();
    assert.match(await op(gw, "semantic/p", "{\"op\":\"drop\"}", { expectStatus: 400 }), /invalid index operation/);
    const ns = await gw.mf.getDurableObjectNamespace("SEMANTIC_INDEX");
    const res = await ns.get(ns.idFromName("semantic/p")).fetch("https://gateway-object.internal/op");
    assert.equal(res.status, 405);
    await res.text();
  });
});
