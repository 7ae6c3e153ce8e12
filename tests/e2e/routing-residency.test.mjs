// Multi-target routing through the built Worker, against three mock upstreams standing for three
// providers in two jurisdictions: "us" (us-east-1), "eu-a" (eu-central-1) and "eu-b" (eu-west-1).
// Residency is a hard filter (an EU tenant never reaches the US, even when every EU target
// fails), fallback on 5xx/429/timeouts (before the first byte of a stream, too), the circuit
// breaker, `max_attempts` and `fallback_on`, conditions, location-based residency
// (`residency.eu_visitors` from request.cf, `residency.trusted_header`), the `nearest` strategy,
// and the route explanation in `x-gateway-route` / `x-gateway-target` / `x-gateway-region` and
// in the usage event.
//
// Every model uses its own target ids: the gateway keeps target health (circuit breaker, 429
// cool-downs) per target id for the life of the isolate, so tests must not share them.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_CF,
  KEYS,
  assertRequestId,
  chatBody,
  makeConfig,
  readError,
  readSse,
  sha256Hex,
  startGateway,
  withTimeout,
} from "../harness.mjs";
import { startMockUpstream, upstreamReplyText } from "../mock-upstream.mjs";

const EU_KEY = "sk-gw-eu-tenant-0123456789ab";
const CH_KEY = "sk-gw-ch-tenant-0123456789ab";

/** A caller at Washington Dulles (IAD), outside the EU. */
const US_CF = Object.freeze({
  ...DEFAULT_CF,
  country: "US",
  isEUCountry: "0",
  continent: "NA",
  colo: "IAD",
  city: "Ashburn",
  region: "Virginia",
  regionCode: "VA",
  postalCode: "20147",
  timezone: "America/New_York",
  asOrganization: "Comcast Cable",
  asn: 7922,
  latitude: "38.9",
  longitude: "-77.4",
});

const REGION = { us: "us-east-1", "eu-a": "eu-central-1", "eu-b": "eu-west-1", "eu-a-short": "eu-central-1" };
const JURISDICTION = { us: "us", "eu-a": "eu", "eu-b": "eu", "eu-a-short": "eu" };

/** One routing target: `provider` is one of the configured providers, `model` its upstream model. */
const target = (id, provider, model = "gpt-4o-mini") => ({
  id,
  provider,
  upstream_model: model,
  region: REGION[provider],
  jurisdiction: JURISDICTION[provider],
});

/** A breaker that never opens during the suite (for tests that are not about it). */
const NO_BREAKER = { failure_threshold: 1000, open_ms: 1000 };

let mocks; // { us, euA, euB }
let gw; // no location rule; consumers web (no tenant), eu-app (EU tenant), ch-app (CH only)
let gwEu; // residency.eu_visitors = ["eu"], anonymous callers, cf = Frankfurt (EU)
let gwUs; // same configuration, cf = Ashburn (US)

function routingConfig({ auth, residency } = {}) {
  const config = makeConfig({ auth });
  if (!auth) {
    config.auth.consumers.push(
      { id: "eu-app", key_sha256: sha256Hex(EU_KEY), tenant: "acme-eu" },
      { id: "ch-app", key_sha256: sha256Hex(CH_KEY), tenant: "acme-ch" },
    );
    config.tenants = {
      "acme-eu": { jurisdiction: "eu" }, // residency defaults to [jurisdiction]
      "acme-ch": { residency: ["ch"] }, // no target is in Switzerland
    };
  }
  if (residency) config.residency = residency;
  const openai = (up, extra = {}) => ({ kind: "openai", base_url: up.baseUrl, api_key_secret: "OPENAI_API_KEY", ...extra });
  config.providers = {
    ...config.providers,
    us: openai(mocks.us),
    "eu-a": openai(mocks.euA),
    "eu-b": openai(mocks.euB),
    // The eu-a upstream with a short timeout, for the target that never answers.
    "eu-a-short": openai(mocks.euA, { timeout_ms: 300 }),
  };
  config.models = {
    ...config.models,
    // US first; both EU targets fail. The breaker opens after two failures.
    "eu-guard": {
      targets: [target("us-1", "us"), target("eua-1", "eu-a", "status-500"), target("eub-1", "eu-b", "status-500")],
      strategy: { type: "ordered" },
      circuit_breaker: { failure_threshold: 2, open_ms: 60000 },
      max_attempts: 2,
    },
    // US first; the only EU target hangs. Two attempts (the default for two targets): with one
    // allowed target the second attempt retries it.
    "eu-timeout": {
      targets: [target("us-2", "us"), target("eua-2", "eu-a-short", "hang")],
      strategy: { type: "ordered" },
      circuit_breaker: NO_BREAKER,
    },
    // The first target answers 500, the second is healthy.
    fallback: {
      targets: [target("eua-3", "eu-a", "status-500"), target("eub-3", "eu-b"), target("us-3", "us")],
      strategy: { type: "ordered" },
      circuit_breaker: NO_BREAKER,
      max_attempts: 3,
    },
    // The first target hangs past its provider's 300 ms timeout.
    "hang-fallback": {
      targets: [target("eua-4", "eu-a-short", "hang"), target("eub-4", "eu-b")],
      strategy: { type: "ordered" },
      circuit_breaker: NO_BREAKER,
    },
    geo: {
      targets: [target("us-5", "us"), target("eua-5", "eu-a")],
      strategy: { type: "ordered" },
    },
    near: {
      targets: [target("us-6", "us"), target("eua-6", "eu-a"), target("eub-6", "eu-b")],
      strategy: { type: "nearest" },
    },
    // Only one attempt: no fallback at all.
    "one-attempt": {
      targets: [target("eua-7", "eu-a", "status-500"), target("eub-7", "eu-b")],
      strategy: { type: "ordered" },
      circuit_breaker: NO_BREAKER,
      max_attempts: 1,
    },
    // Falls back on timeouts and connection errors only, not on a 5xx.
    "no-5xx-fallback": {
      targets: [target("eua-8", "eu-a", "status-500"), target("eub-8", "eu-b")],
      strategy: { type: "ordered" },
      circuit_breaker: NO_BREAKER,
      fallback_on: ["timeout", "connect"],
    },
    // A 429 (Retry-After: 7) moves on and cools the target down.
    "rate-limited": {
      targets: [target("eua-9", "eu-a", "status-429"), target("eub-9", "eu-b")],
      strategy: { type: "ordered" },
      circuit_breaker: NO_BREAKER,
    },
    // Big requests go to eu-a; a header asks for the US target only.
    cond: {
      targets: [target("us-10", "us"), target("eua-10", "eu-a")],
      strategy: { type: "ordered" },
      conditions: [
        { when: [{ max_tokens_above: 1000 }], then: { targets: ["eua-10"] } },
        { when: [{ header: { name: "x-want", equals: "us" } }], then: { targets: ["us-10"] } },
      ],
    },
  };
  return config;
}

const SECRETS = { OPENAI_API_KEY: KEYS.upstream };

before(async () => {
  mocks = {
    us: await startMockUpstream({ apiKey: KEYS.upstream }),
    euA: await startMockUpstream({ apiKey: KEYS.upstream }),
    euB: await startMockUpstream({ apiKey: KEYS.upstream }),
  };
  gw = await startGateway({ config: routingConfig(), secrets: SECRETS });
  const located = routingConfig({
    auth: { mode: "none" },
    residency: { eu_visitors: ["eu"], trusted_header: "x-verified-residency" },
  });
  gwEu = await startGateway({ config: located, secrets: SECRETS });
  gwUs = await startGateway({ config: located, secrets: SECRETS, cf: US_CF });
});

after(async () => {
  for (const g of [gw, gwEu, gwUs]) await g?.dispose();
  for (const up of Object.values(mocks ?? {})) await up.close();
});

/** Chat requests each mock received (since the last reset). */
function chats(up) {
  return up.requestsTo("/v1/chat/completions");
}

function counts() {
  return { us: chats(mocks.us).length, euA: chats(mocks.euA).length, euB: chats(mocks.euB).length };
}

/** The usage event of the response's request. */
function eventOf(g, res) {
  const id = assertRequestId(res);
  return g.waitForLog((e) => e.request_id === id);
}

describe("multi-target routing and data residency", () => {
  beforeEach(() => {
    for (const up of Object.values(mocks)) up.reset();
  });

  test("an EU tenant never reaches the US target, even when it is first and every EU target fails", async () => {
    // A caller without residency rules gets the first target: the US one works.
    const web = await gw.post("/v1/chat/completions", chatBody("eu-guard", "from anywhere"), { key: KEYS.web });
    assert.equal(web.status, 200);
    assert.equal(web.headers.get("x-gateway-route"), "target=us-1; region=us-east-1; reason=ordered(pos=0)");
    assert.equal(web.headers.get("x-gateway-target"), "us-1");
    assert.equal(web.headers.get("x-gateway-region"), "us-east-1");
    assert.equal((await web.json()).choices[0].message.content, upstreamReplyText("from anywhere"));
    assert.deepEqual(counts(), { us: 1, euA: 0, euB: 0 });

    // The EU tenant: both EU targets answer 500, the US is never tried.
    const eu = await gw.post("/v1/chat/completions", chatBody("eu-guard", "stay in the EU"), { key: EU_KEY });
    assert.equal(eu.status, 502);
    assert.equal(eu.headers.get("x-gateway-target"), null);
    const error = await readError(eu);
    assert.equal(error.code, "upstream_error");
    assert.equal(error.type, "api_error");
    assert.equal(error.message, "The provider 'eu-b' returned an error (HTTP 500).");
    assert.deepEqual(counts(), { us: 1, euA: 1, euB: 1 });
    assert.deepEqual([chats(mocks.euA)[0].model, chats(mocks.euB)[0].model], ["status-500", "status-500"]);
    const failed = await eventOf(gw, eu);
    assert.equal(failed.consumer, "eu-app");
    assert.equal(failed.tenant, "acme-eu");
    assert.equal(failed.status, 502);
    assert.equal(failed.outcome, "failed");
    assert.equal(failed.error, "upstream_error");
    assert.equal(failed.provider, "eu-b", "the last target tried");
    assert.equal(failed.route, undefined, "no target answered");

    // Second failure of each EU target: their circuits open (failure_threshold 2).
    const again = await gw.post("/v1/chat/completions", chatBody("eu-guard", "stay in the EU"), { key: EU_KEY });
    assert.equal(again.status, 502);
    assert.equal((await readError(again)).code, "upstream_error");
    assert.deepEqual(counts(), { us: 1, euA: 2, euB: 2 });

    // Now nothing in the EU is healthy: a clear 503, still never the US, nothing sent.
    const open = await gw.post("/v1/chat/completions", chatBody("eu-guard", "stay in the EU"), { key: EU_KEY });
    assert.equal(open.status, 503);
    assert.equal(open.headers.get("retry-after"), "5");
    const unhealthy = await readError(open);
    assert.equal(unhealthy.code, "no_healthy_target");
    assert.equal(unhealthy.type, "api_error");
    assert.match(unhealthy.message, /eua-1: circuit-open/);
    assert.match(unhealthy.message, /eub-1: circuit-open/);
    assert.deepEqual(counts(), { us: 1, euA: 2, euB: 2 });

    // The US target was never unhealthy: a caller allowed to use it still gets it.
    const web2 = await gw.post("/v1/chat/completions", chatBody("eu-guard", "still fine"), { key: KEYS.web });
    assert.equal(web2.status, 200);
    assert.equal(web2.headers.get("x-gateway-target"), "us-1");
    assert.equal(
      web2.headers.get("x-gateway-route"),
      "target=us-1; region=us-east-1; reason=ordered(pos=0); excluded=eua-1:circuit-open,eub-1:circuit-open",
    );
    await web2.arrayBuffer();
    assert.deepEqual(counts(), { us: 2, euA: 2, euB: 2 });
  });

  test("an EU tenant whose only EU target times out gets 504, and the US target nothing", async () => {
    const res = await withTimeout(
      gw.post("/v1/chat/completions", chatBody("eu-timeout", "wait for it"), { key: EU_KEY }),
      15_000,
      "the gateway's upstream timeout",
    );
    assert.equal(res.status, 504);
    const error = await readError(res);
    assert.equal(error.code, "upstream_timeout");
    assert.equal(error.message, "The provider 'eu-a-short' did not answer within 300 ms.");
    // Both attempts went to the one allowed target (a retry), each abandoned at its timeout.
    for (let i = 0; i < 2; i++) {
      const handle = await mocks.euA.waitFor("hang");
      const done = await withTimeout(handle.done, 15_000, "the gateway to abandon the hanging request");
      assert.equal(done.closedByPeer, true);
    }
    assert.deepEqual(counts(), { us: 0, euA: 2, euB: 0 });
    const event = await eventOf(gw, res);
    assert.equal(event.status, 504);
    assert.equal(event.error, "upstream_timeout");
  });

  test("a 500 from the first target falls back to the next, and the headers and usage event say so", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("fallback", "try again elsewhere"), { key: KEYS.web });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-gateway-route"), "target=eub-3; region=eu-west-1; reason=fallback(500@eua-3)");
    assert.equal(res.headers.get("x-gateway-target"), "eub-3");
    assert.equal(res.headers.get("x-gateway-region"), "eu-west-1");
    assert.equal(res.headers.get("x-gateway-provider"), "eu-b");
    assert.equal(res.headers.get("x-gateway-model"), "gpt-4o-mini");
    const body = await res.json();
    assert.equal(body.choices[0].message.content, upstreamReplyText("try again elsewhere"));

    assert.deepEqual(counts(), { us: 0, euA: 1, euB: 1 });
    const [failedTry] = chats(mocks.euA);
    assert.equal(failedTry.model, "status-500");
    assert.equal(failedTry.response.status, 500);
    const [answered] = chats(mocks.euB);
    assert.equal(answered.model, "gpt-4o-mini");
    assert.equal(answered.headers.authorization, `Bearer ${KEYS.upstream}`);
    assert.deepEqual(answered.body.messages, [{ role: "user", content: "try again elsewhere" }]);

    const event = await eventOf(gw, res);
    assert.equal(event.status, 200);
    assert.equal(event.outcome, "completed");
    assert.equal(event.provider, "eu-b");
    assert.equal(event.upstream_model, "gpt-4o-mini");
    assert.equal(event.route.target, "eub-3");
    assert.equal(event.route.region, "eu-west-1");
    assert.equal(event.route.jurisdiction, "eu");
    assert.equal(event.route.reason, "fallback(500@eua-3)");
    assert.equal(event.route.attempts, 2);
    assert.ok(event.route.gco2e > 0, `an emission estimate from the usage: ${JSON.stringify(event.route)}`);
    assert.deepEqual(event.usage && [event.usage.input_tokens > 0, event.usage.output_tokens > 0], [true, true]);
  });

  test("a streamed request falls back before the first byte when the first target answers 500", async () => {
    const res = await gw.post(
      "/v1/chat/completions",
      chatBody("fallback", "stream from elsewhere", { stream: true, stream_options: { include_usage: true } }),
      { key: KEYS.web },
    );
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^text\/event-stream/);
    assert.equal(res.headers.get("x-gateway-route"), "target=eub-3; region=eu-west-1; reason=fallback(500@eua-3)");
    assert.equal(res.headers.get("x-gateway-target"), "eub-3");
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((d) => JSON.parse(d));
    assert.ok(chunks.every((c) => !c.error), `no error event: ${events.join("\n")}`);
    assert.equal(chunks.filter((c) => c.choices?.[0]?.delta?.role === "assistant").length, 1, "one response, from one target");
    const text = chunks.map((c) => c.choices?.[0]?.delta?.content ?? "").join("");
    assert.equal(text, upstreamReplyText("stream from elsewhere"));
    assert.ok(chunks.at(-1).usage, "usage chunk last");

    assert.deepEqual(counts(), { us: 0, euA: 1, euB: 1 });
    assert.equal(chats(mocks.euA)[0].body.stream, true);
    assert.equal(chats(mocks.euA)[0].response.status, 500);
    assert.equal(chats(mocks.euB)[0].body.stream, true);

    const event = await eventOf(gw, res);
    assert.equal(event.stream, true);
    assert.equal(event.outcome, "completed");
    assert.equal(event.route.target, "eub-3");
    assert.equal(event.route.reason, "fallback(500@eua-3)");
    assert.equal(event.route.attempts, 2);
  });

  test("a hanging target times out and the request falls back", async () => {
    const pending = gw.post("/v1/chat/completions", chatBody("hang-fallback", "are you there?"), { key: KEYS.web });
    const handle = await mocks.euA.waitFor("hang");
    const res = await withTimeout(pending, 15_000, "the fallback after the timeout");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-gateway-route"), "target=eub-4; region=eu-west-1; reason=fallback(upstream_timeout@eua-4)");
    assert.equal(res.headers.get("x-gateway-target"), "eub-4");
    assert.equal((await res.json()).choices[0].message.content, upstreamReplyText("are you there?"));
    const done = await withTimeout(handle.done, 15_000, "the gateway to abandon the hanging request");
    assert.equal(done.closedByPeer, true, "the timed-out upstream request was cancelled");
    assert.deepEqual(counts(), { us: 0, euA: 1, euB: 1 });
    const event = await eventOf(gw, res);
    assert.equal(event.route.reason, "fallback(upstream_timeout@eua-4)");
    assert.equal(event.route.attempts, 2);
  });

  test("a tenant whose residency allows no configured target gets 403 and nothing is sent", async () => {
    for (const body of [chatBody("fallback", "from Zurich"), chatBody("fallback", "from Zurich", { stream: true })]) {
      const res = await gw.post("/v1/chat/completions", body, { key: CH_KEY });
      assert.equal(res.status, 403);
      const error = await readError(res);
      assert.equal(error.code, "residency_no_target");
      assert.equal(error.type, "permission_error");
      assert.equal(error.param, null);
      assert.match(error.message, /eua-3: residency, eub-3: residency, us-3: residency/);
      const event = await eventOf(gw, res);
      assert.equal(event.status, 403);
      assert.equal(event.error, "residency_no_target");
    }
    assert.deepEqual(counts(), { us: 0, euA: 0, euB: 0 });
  });

  test("max_attempts 1 does not fall back; fallback_on without server_error does not either", async () => {
    const once = await gw.post("/v1/chat/completions", chatBody("one-attempt"), { key: KEYS.web });
    assert.equal(once.status, 502);
    assert.equal((await readError(once)).code, "upstream_error");
    const noFallback = await gw.post("/v1/chat/completions", chatBody("no-5xx-fallback"), { key: KEYS.web });
    assert.equal(noFallback.status, 502);
    assert.equal((await readError(noFallback)).code, "upstream_error");
    assert.deepEqual(counts(), { us: 0, euA: 2, euB: 0 }, "the second target was never tried");
  });

  test("a 429 falls back and cools the target down for its Retry-After", async () => {
    const first = await gw.post("/v1/chat/completions", chatBody("rate-limited", "one"), { key: KEYS.web });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-gateway-route"), "target=eub-9; region=eu-west-1; reason=fallback(429@eua-9)");
    await first.arrayBuffer();
    assert.deepEqual(counts(), { us: 0, euA: 1, euB: 1 });
    // Retry-After was 7 s: the next request skips the target instead of hitting it again.
    const second = await gw.post("/v1/chat/completions", chatBody("rate-limited", "two"), { key: KEYS.web });
    assert.equal(second.status, 200);
    assert.equal(
      second.headers.get("x-gateway-route"),
      "target=eub-9; region=eu-west-1; reason=ordered(pos=0); excluded=eua-9:rate-limited",
    );
    await second.arrayBuffer();
    assert.deepEqual(counts(), { us: 0, euA: 1, euB: 2 });
  });

  test("conditions narrow the targets, but never past residency", async () => {
    const small = await gw.post("/v1/chat/completions", chatBody("cond", "small"), { key: KEYS.web });
    assert.equal(small.headers.get("x-gateway-route"), "target=us-10; region=us-east-1; reason=ordered(pos=0)");
    await small.arrayBuffer();
    const big = await gw.post("/v1/chat/completions", chatBody("cond", "big", { max_tokens: 4000 }), { key: KEYS.web });
    assert.equal(big.status, 200);
    assert.equal(
      big.headers.get("x-gateway-route"),
      "target=eua-10; region=eu-central-1; reason=ordered(pos=0); condition=0; excluded=us-10:condition",
    );
    await big.arrayBuffer();
    assert.deepEqual(counts(), { us: 1, euA: 1, euB: 0 });
    // The header condition selects only the US target: fine for an unrestricted caller ...
    const wantUs = await gw.post("/v1/chat/completions", chatBody("cond", "us please"), { key: KEYS.web, headers: { "x-want": "us" } });
    assert.equal(wantUs.headers.get("x-gateway-target"), "us-10");
    await wantUs.arrayBuffer();
    // ... and a residency error for the EU tenant, not a route to the US.
    const euWantsUs = await gw.post("/v1/chat/completions", chatBody("cond", "us please"), { key: EU_KEY, headers: { "x-want": "us" } });
    assert.equal(euWantsUs.status, 403);
    assert.equal((await readError(euWantsUs)).code, "residency_no_target");
    assert.deepEqual(counts(), { us: 2, euA: 1, euB: 0 });
  });

  test("residency.eu_visitors keeps an anonymous caller entering in the EU on EU targets", async () => {
    // Without the rule (the main gateway, same Frankfurt location) the first target is the US one.
    const control = await gw.post("/v1/chat/completions", chatBody("geo", "control"), { key: KEYS.web });
    assert.equal(control.headers.get("x-gateway-target"), "us-5");
    await control.arrayBuffer();
    assert.deepEqual(counts(), { us: 1, euA: 0, euB: 0 });

    // With it, request.cf.isEUCountry = "1" excludes the US target.
    const eu = await gwEu.post("/v1/chat/completions", chatBody("geo", "hallo aus Frankfurt"));
    assert.equal(eu.status, 200);
    assert.equal(eu.headers.get("x-gateway-route"), "target=eua-5; region=eu-central-1; reason=ordered(pos=0); excluded=us-5:residency");
    assert.equal(eu.headers.get("x-gateway-target"), "eua-5");
    assert.equal(eu.headers.get("x-gateway-region"), "eu-central-1");
    assert.equal((await eu.json()).choices[0].message.content, upstreamReplyText("hallo aus Frankfurt"));
    assert.deepEqual(counts(), { us: 1, euA: 1, euB: 0 });
    const event = await eventOf(gwEu, eu);
    assert.equal(event.consumer, null, "anonymous");
    assert.equal(event.country, "DE");
    assert.equal(event.route.target, "eua-5");
    assert.equal(event.route.jurisdiction, "eu");
    assert.deepEqual(event.route.excluded, ["us-5:residency"]);
  });

  test("an anonymous caller entering in the US may use the US target; a trusted header can restrict it", async () => {
    const us = await gwUs.post("/v1/chat/completions", chatBody("geo", "hello from Virginia"));
    assert.equal(us.status, 200);
    assert.equal(us.headers.get("x-gateway-route"), "target=us-5; region=us-east-1; reason=ordered(pos=0)");
    assert.equal(us.headers.get("x-gateway-target"), "us-5");
    assert.equal((await us.json()).choices[0].message.content, upstreamReplyText("hello from Virginia"));
    assert.deepEqual(counts(), { us: 1, euA: 0, euB: 0 });
    const event = await eventOf(gwUs, us);
    assert.equal(event.country, "US");
    assert.equal(event.colo, "IAD");
    assert.equal(event.route.jurisdiction, "us");

    // The configured trusted header (set by a proxy in front) restricts the jurisdictions.
    const pinned = await gwUs.post("/v1/chat/completions", chatBody("geo", "pinned"), { headers: { "x-verified-residency": "EU" } });
    assert.equal(pinned.headers.get("x-gateway-route"), "target=eua-5; region=eu-central-1; reason=ordered(pos=0); excluded=us-5:residency");
    await pinned.arrayBuffer();
    // Where it is not configured, the same header from a client changes nothing.
    const ignored = await gw.post("/v1/chat/completions", chatBody("geo", "ignored"), {
      key: KEYS.web,
      headers: { "x-verified-residency": "EU" },
    });
    assert.equal(ignored.headers.get("x-gateway-target"), "us-5");
    await ignored.arrayBuffer();
    assert.deepEqual(counts(), { us: 2, euA: 1, euB: 0 });
  });

  test("the nearest strategy picks the region closest to request.cf's coordinates", async () => {
    const frankfurt = await gw.post("/v1/chat/completions", chatBody("near", "near Frankfurt"), { key: KEYS.web });
    assert.equal(frankfurt.status, 200);
    assert.equal(frankfurt.headers.get("x-gateway-target"), "eua-6");
    assert.match(frankfurt.headers.get("x-gateway-route"), /^target=eua-6; region=eu-central-1; reason=nearest\(\d+km ~\d+ms\)$/);
    await frankfurt.arrayBuffer();
    const ashburn = await gwUs.post("/v1/chat/completions", chatBody("near", "near Ashburn"));
    assert.equal(ashburn.status, 200);
    assert.equal(ashburn.headers.get("x-gateway-target"), "us-6");
    assert.match(ashburn.headers.get("x-gateway-route"), /^target=us-6; region=us-east-1; reason=nearest\(\d+km ~\d+ms\)$/);
    await ashburn.arrayBuffer();
    assert.deepEqual(counts(), { us: 1, euA: 1, euB: 0 });
  });
});
