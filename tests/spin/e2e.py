"""End-to-end tests of the Spin component: the built gateway_spin.wasm served over real HTTP by
spin-test-host (wasmtime + WASI 0.3 + Spin's key-value, variables, SQLite and Redis imports,
configured from the top-level spin.toml), against a mock upstream speaking OpenAI's wire format.
The rate limit and budget cases run once with the SQLite counter store and once with Redis (a
real redis-server at SPIN_TEST_REDIS_ADDRESS, started by tests/spin/run.sh).

Usage: python3 tests/spin/e2e.py HOST_BINARY     (tests/spin/run.sh builds everything first)
Prints one line per case and a final "N passed, N failed"; exits non-zero on failure."""

import concurrent.futures
import hashlib
import http.client
import json
import os
import sys
import time
import traceback

import harness
import mock_upstream

HOST = sys.argv[1] if len(sys.argv) > 1 else None
UPSTREAM_KEY = "sk-upstream-test-0123456789"
CLIENT_KEY = "sk-gw-client-key-abcdef"
OTHER_KEY = "sk-gw-other-key-0123456"
ADMIN_KEY = "adm-spin-limits-0123456789abcdef"
REDIS_ADDRESS = os.environ.get("SPIN_TEST_REDIS_ADDRESS")

results = []


def case(name):
    def register(fn):
        results.append((name, fn))
        return fn
    return register


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def test_config(upstream_port, auth=None):
    up = f"http://127.0.0.1:{upstream_port}/v1"
    return {
        "auth": auth or {"mode": "none"},
        # The mock upstreams listen on plain http on loopback: allowed only because this is the
        # shipped configuration (the gateway_config variable), never through KV or the admin API.
        "network": {"allow_private_upstreams": True},
        "providers": {
            "mock": {"kind": "mock"},
            "up": {"kind": "openai", "base_url": up, "api_key_secret": "OPENAI_API_KEY"},
            # Same server, but an origin that is not in allowed_outbound_hosts.
            "denied": {"kind": "openai", "base_url": f"http://localhost:{upstream_port}/v1",
                       "api_key_secret": "OPENAI_API_KEY"},
            # A secret whose Spin variable the component does not declare.
            "nokey": {"kind": "openai", "base_url": up, "api_key_secret": "UNDECLARED_PROVIDER_KEY"},
        },
        "models": {
            "mock": {"provider": "mock"},
            "mock-embed": {"provider": "mock", "type": "embeddings"},
            "gpt-test": {"provider": "up", "upstream_model": "gpt-4o-mini"},
            # The exact response cache, in the Spin key-value store (docs/cache.md).
            "gpt-cached": {"provider": "up", "upstream_model": "gpt-4o-mini", "cache": {"mode": "exact", "ttl_s": 600}},
            # The semantic tier on top, its vectors in SQLite (table gateway_vectors).
            "gpt-semantic": {"provider": "up", "upstream_model": "gpt-4o-mini",
                             "cache": {"mode": "semantic", "ttl_s": 600, "semantic": {"embedding_model": "up-embed"}}},
            "up-embed": {"provider": "up", "upstream_model": "text-embedding-3-small", "type": "embeddings"},
            "up-fail": {"provider": "up", "upstream_model": "fail-500"},
            "up-hold": {"provider": "up", "upstream_model": "hold"},
            "up-endless": {"provider": "up", "upstream_model": "endless"},
            "up-denied": {"provider": "denied", "upstream_model": "gpt-4o-mini"},
            "up-nokey": {"provider": "nokey", "upstream_model": "gpt-4o-mini"},
        },
    }


def bearer(key):
    return {"authorization": f"Bearer {key}"}


def limits_config(upstream_port, **quota):
    """test_config with two consumers (web, other), the admin key and the given quota pieces."""
    consumers = [{"id": "web", "key_sha256": hashlib.sha256(CLIENT_KEY.encode()).hexdigest()},
                 {"id": "other", "key_sha256": hashlib.sha256(OTHER_KEY.encode()).hexdigest()}]
    cfg = test_config(upstream_port, {"mode": "api_keys", "consumers": consumers})
    return {**cfg, "admin": {"key_sha256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}, **quota}


def settled_usage(port, subject, timeout=10.0):
    """GET /admin/usage/{subject} until no reservation is in flight (settlement runs after the
    response, in a spawned task)."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = harness.request(port, "GET", f"/admin/usage/{subject}", headers=bearer(ADMIN_KEY))
        check(status == 200, f"usage {status} {body[:300]!r}")
        limits = json.loads(body)["limits"]
        if limits and all(limit["reserved"] == 0 for limit in limits):
            return {limit["metric"]: limit for limit in limits}
        check(time.monotonic() < deadline, f"reservations of {subject} still in flight: {limits}")
        time.sleep(0.05)


def register_limit_cases(store, port_up, allow, mock=None):
    """The Worker's counter tests (tests/e2e/limits.test.mjs) against one Spin counter store."""
    variables = {"counter_store": store, "openai_api_key": UPSTREAM_KEY}
    allow = list(allow)
    if store == "redis":
        variables["redis_address"] = REDIS_ADDRESS or ""
        allow.append(REDIS_ADDRESS or "redis://127.0.0.1")

    def host(cfg):
        if store == "redis":
            check(REDIS_ADDRESS, "SPIN_TEST_REDIS_ADDRESS is not set (tests/spin/run.sh starts redis-server)")
            # Each case starts from empty counters (the SQLite file is per host process).
            harness.redis_flush(REDIS_ADDRESS)
        h = harness.Host(HOST, variables={**variables, "gateway_config": json.dumps(cfg)}, allow_outbound=allow)
        h.wait_ready(headers=bearer(CLIENT_KEY))
        return h

    if store == "sqlite":
        @case("stats: /admin/stats counts the requests made through the component (SQLite rollups)")
        def _():
            cfg = {**limits_config(port_up), "stats": {"shards": 2}}
            with host(cfg) as h:
                for content, model in [("one", "mock"), ("two", "gpt-test"), ("three", "up-fail")]:
                    status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat(model, content),
                                                      headers=bearer(OTHER_KEY))
                    check(status >= 500 if model == "up-fail" else status == 200, f"{model}: {status} {body[:200]!r}")
                deadline = time.monotonic() + 10
                while True:
                    status, headers, body = harness.request(h.port, "GET", "/admin/stats?group_by=consumer",
                                                            headers=bearer(ADMIN_KEY))
                    check(status == 200, f"stats {status} {body[:300]!r}")
                    report = json.loads(body)
                    other = [s for s in report["series"] if s["group"] == "other"]
                    if other and other[0]["totals"]["requests"] >= 3:
                        break
                    check(time.monotonic() < deadline, f"rollups never caught up: {report['series']}")
                    time.sleep(0.05)
                totals = other[0]["totals"]
                check(totals["requests"] == 3, totals)
                check(totals["errors"] == 1 and totals["errors_by_type"].get("upstream_error") == 1, totals)
                check(totals["input_tokens"] > 0, totals)
                status, headers, body = harness.request(h.port, "GET", "/admin/metrics", headers=bearer(ADMIN_KEY))
                check(status == 200 and headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
                      f"metrics {status} {headers}")
                check(b'gateway_requests_total{consumer="other"' in body, body[:500])
                status, _, _ = harness.request(h.port, "GET", "/admin/stats")
                check(status == 401, f"no admin key: {status}")
                # The dashboard's files are served by the component too, without a key, under its CSP.
                for path, kind in [("/admin/ui", "text/html"), ("/admin/ui/app.js", "text/javascript"), ("/admin/ui/app.css", "text/css")]:
                    status, headers, body = harness.request(h.port, "GET", path)
                    check(status == 200 and headers.get("content-type", "").startswith(kind)
                          and headers.get("content-security-policy", "").startswith("default-src 'none'; script-src 'self'")
                          and headers.get("x-content-type-options") == "nosniff" and len(body) > 500, f"{path}: {status} {headers}")

        @case("request log: an opted-in consumer's request is listed redacted, feedback round trip (SQLite)")
        def _():
            cfg = limits_config(port_up)
            for consumer in cfg["auth"]["consumers"]:
                if consumer["id"] == "other":
                    consumer["request_log"] = {"enabled": True}
            secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"
            with host(cfg) as h:
                ids = {}
                for key in (OTHER_KEY, CLIENT_KEY):
                    status, headers, body = harness.request(h.port, "POST", "/v1/chat/completions",
                                                            chat("mock", f"mail jane@example.com key {secret}"),
                                                            headers=bearer(key))
                    check(status == 200, f"chat {status} {body[:200]!r}")
                    ids[key] = headers.get("x-request-id")
                deadline = time.monotonic() + 10
                while True:
                    status, _, body = harness.request(h.port, "GET", "/admin/requests", headers=bearer(ADMIN_KEY))
                    check(status == 200, f"requests {status} {body[:300]!r}")
                    listed = [e["request_id"] for e in json.loads(body)["data"]]
                    if listed:
                        break
                    check(time.monotonic() < deadline, "the request log never caught up")
                    time.sleep(0.05)
                check(listed == [ids[OTHER_KEY]], f"only the opted-in consumer: {listed} {ids}")
                status, _, body = harness.request(h.port, "GET", f"/admin/requests/{ids[OTHER_KEY]}", headers=bearer(ADMIN_KEY))
                check(status == 200 and b"[EMAIL]" in body and b"[SECRET]" in body, body[:500])
                check(secret.encode() not in body and b"jane@example.com" not in body, body[:500])
                fb = {"request_id": ids[OTHER_KEY], "score": 1, "label": "good"}
                status, _, body = harness.request(h.port, "POST", "/v1/feedback", fb, headers=bearer(CLIENT_KEY))
                check(status == 404, f"another consumer's request: {status} {body[:200]!r}")
                status, _, body = harness.request(h.port, "POST", "/v1/feedback", fb, headers=bearer(OTHER_KEY))
                check(status == 200, f"feedback {status} {body[:200]!r}")
                status, _, body = harness.request(h.port, "POST", "/v1/feedback", fb, headers=bearer(OTHER_KEY))
                check(status == 409, f"second feedback {status} {body[:200]!r}")
                deadline = time.monotonic() + 10
                while True:
                    status, _, body = harness.request(h.port, "GET", "/admin/stats", headers=bearer(ADMIN_KEY))
                    totals = json.loads(body)["totals"]
                    if totals.get("feedback_count") == 1:
                        break
                    check(time.monotonic() < deadline, f"feedback never rolled up: {totals}")
                    time.sleep(0.05)
                check(totals["feedback_labels"] == {"good": 1}, totals)

        @case("alerts: POST /admin/alerts/evaluate sends one webhook per rule and window (SQLite rollups)")
        def _():
            hook = f"http://127.0.0.1:{port_up}/hook"
            cfg = {**limits_config(port_up,
                                   rate_limits=[{"scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 1}]),
                   "alerts": {"webhook": {"url": hook},
                              "rules": [{"name": "throttled", "kind": "limit_rejections", "threshold": 1}]}}
            with host(cfg) as h:
                statuses = []
                for _ in range(2):
                    status, _, _ = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"),
                                                   headers=bearer(OTHER_KEY))
                    statuses.append(status)
                check(statuses == [200, 429], statuses)
                hooks = lambda: [r for r in list(mock.requests) if r[0] == "/hook"]  # noqa: E731
                before = len(hooks())
                deadline = time.monotonic() + 10
                while True:
                    status, _, body = harness.request(h.port, "POST", "/admin/alerts/evaluate", headers=bearer(ADMIN_KEY))
                    check(status == 200, f"evaluate {status} {body[:300]!r}")
                    rule = json.loads(body)["rules"][0]
                    if rule["firing"]:
                        break
                    check(time.monotonic() < deadline, f"never fired: {rule}")
                    time.sleep(0.05)
                check(rule["firings"][0]["delivery"]["status"] == "delivered", rule)
                status, _, body = harness.request(h.port, "POST", "/admin/alerts/evaluate", headers=bearer(ADMIN_KEY))
                check(json.loads(body)["rules"][0]["firings"][0]["delivery"]["status"] == "duplicate", body[:300])
                sent = hooks()[before:]
                check(len(sent) == 1, f"{len(sent)} webhooks")
                check(sent[0][2]["rule"] == "throttled" and sent[0][2]["kind"] == "limit_rejections", sent[0][2])

    @case(f"limits ({store}): a request limit per consumer: 3 allowed with headers, then 429")
    def _():
        cfg = limits_config(port_up, rate_limits=[
            {"scope": ["consumer"], "metric": "requests", "window": "day", "limit": 3}])
        with host(cfg) as h:
            for i in range(1, 4):
                status, headers, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"),
                                                        headers=bearer(CLIENT_KEY))
                check(status == 200, f"request {i}: {status} {body[:300]!r}")
                check(headers.get("x-ratelimit-limit-requests") == "3", headers)
                check(headers.get("x-ratelimit-remaining-requests") == str(3 - i), headers)
                check(headers.get("x-ratelimit-reset-requests"), f"no reset header: {headers}")
                check("retry-after" not in headers, "retry-after on a success")
            status, headers, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"),
                                                    headers=bearer(CLIENT_KEY))
            check(status == 429 and error_code(body) == "rate_limit_exceeded", f"{status} {body[:300]!r}")
            check(1 <= int(headers.get("retry-after", "0")) <= 86400, f"retry-after: {headers}")
            check(headers.get("x-ratelimit-remaining-requests") == "0", headers)
            check(b"requests per day" in body, body[:300])
            status, headers, _ = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"),
                                                 headers=bearer(OTHER_KEY))
            check(status == 200 and headers.get("x-ratelimit-remaining-requests") == "2",
                  f"another consumer is another subject: {status} {headers}")
            requests = settled_usage(h.port, "consumer:web")["requests"]
            check(requests["used"] == 3 and requests["remaining"] == 0, f"denied requests counted: {requests}")

    @case(f"limits ({store}): 20 concurrent requests against a limit of 5 admit exactly 5")
    def _():
        cfg = limits_config(port_up, rate_limits=[
            {"scope": ["consumer"], "metric": "requests", "window": "day", "limit": 5}])
        with host(cfg) as h:
            def one(i):
                return harness.request(h.port, "POST", "/v1/chat/completions", chat("mock", f"concurrent {i}"),
                                       headers=bearer(CLIENT_KEY))
            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                responses = list(pool.map(one, range(20)))
            statuses = [status for status, _, _ in responses]
            check(statuses.count(200) == 5 and statuses.count(429) == 15, f"statuses {statuses}")
            remaining = sorted(int(hd["x-ratelimit-remaining-requests"]) for st, hd, _ in responses if st == 200)
            check(remaining == [0, 1, 2, 3, 4], f"each admission applied once, in some order: {remaining}")
            requests = settled_usage(h.port, "consumer:web")["requests"]
            check(requests["used"] == 5 and requests["reserved"] == 0, requests)

    @case(f"limits ({store}): concurrent calls never overrun a token limit by more than one call")
    def _():
        limit = 200
        cfg = limits_config(port_up, rate_limits=[
            {"scope": ["consumer"], "metric": "total_tokens", "window": "day", "limit": limit}])
        with host(cfg) as h:
            def one(_):
                return harness.request(h.port, "POST", "/v1/chat/completions",
                                       chat("mock", "Hello there", max_tokens=10), headers=bearer(CLIENT_KEY))
            with concurrent.futures.ThreadPoolExecutor(15) as pool:
                responses = list(pool.map(one, range(30)))
            admitted = largest = ok = 0
            for status, headers, body in responses:
                check(status in (200, 429), f"status {status} {body[:200]!r}")
                if status == 200:
                    usage = json.loads(body)["usage"]
                    admitted += usage["total_tokens"]
                    largest = max(largest, usage["total_tokens"])
                    ok += 1
                    check(headers.get("x-ratelimit-limit-tokens") == str(limit), headers)
                else:
                    check(error_code(body) == "rate_limit_exceeded" and b"total_tokens per day" in body, body[:300])
            check(0 < ok < 30, f"{ok} of 30 admitted")
            check(admitted <= limit + largest, f"admitted {admitted} tokens; limit {limit} + one call ({largest})")
            tokens = settled_usage(h.port, "consumer:web")["total_tokens"]
            check(tokens["used"] == admitted, f"settled at the reported usage: {tokens} vs {admitted}")

    @case(f"limits ({store}): a USD budget is charged from usage, then 429 insufficient_quota")
    def _():
        # With budgets every chat model needs a price; "mock" is the one called.
        models = test_config(port_up)["models"]
        prices = {name: {"input": "1.00", "output": "2.00"} for name, m in models.items() if "type" not in m}
        cfg = limits_config(port_up, prices=prices,
                            budgets=[{"scope": ["consumer"], "window": "day", "usd": "0.0001"}])
        with host(cfg) as h:
            spent = 0
            for i in range(2):
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions",
                                                  chat("mock", "Hello there", max_tokens=20), headers=bearer(CLIENT_KEY))
                check(status == 200, f"call {i + 1}: {status} {body[:300]!r}")
                usage = json.loads(body)["usage"]
                spent += usage["prompt_tokens"] * 1000 + usage["completion_tokens"] * 2000  # nano-dollars
                settled_usage(h.port, "consumer:web")
            cost = settled_usage(h.port, "consumer:web")["cost"]
            check(cost["used"] == spent and cost["limit"] == 100000, f"budget {cost}, spent {spent}")
            status, headers, body = harness.request(h.port, "POST", "/v1/chat/completions",
                                                    chat("mock", "Hello there", max_tokens=20), headers=bearer(CLIENT_KEY))
            check(status == 429 and error_code(body) == "insufficient_quota", f"{status} {body[:300]!r}")
            check(1 <= int(headers.get("retry-after", "0")) <= 86400, f"retry-after: {headers}")
            check(settled_usage(h.port, "consumer:web")["cost"]["used"] == spent, "the refused call was charged")
            status, _, _ = harness.request(h.port, "POST", "/v1/chat/completions",
                                           chat("mock", "Hello there", max_tokens=20), headers=bearer(OTHER_KEY))
            check(status == 200, f"another consumer's budget: {status}")

    if store == "redis":
        @case("limits (redis): two hosts on one Redis share the counters (multi-instance)")
        def _():
            cfg = limits_config(port_up, rate_limits=[
                {"scope": ["consumer"], "metric": "requests", "window": "day", "limit": 4}])
            with host(cfg) as a:
                other = harness.Host(HOST, variables={**variables, "gateway_config": json.dumps(cfg)},
                                     allow_outbound=allow)
                with other as b:
                    b.wait_ready(headers=bearer(CLIENT_KEY))
                    statuses = [harness.request(port, "POST", "/v1/chat/completions", chat("mock"),
                                                headers=bearer(CLIENT_KEY))[0] for port in (a.port, b.port) * 3]
                    check(statuses == [200, 200, 200, 200, 429, 429], f"statuses {statuses}")


def chat(model, content="Hello", stream=False, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    if stream:
        body["stream"] = True
    return body


class SseReader:
    """Reads an SSE response incrementally; `next_event()` blocks until one full event arrived."""

    def __init__(self, port, body, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        hdrs = {"content-type": "application/json", **(headers or {})}
        self.conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=hdrs)
        self.resp = self.conn.getresponse()
        self.buf = b""

    def next_event(self):
        while b"\n\n" not in self.buf:
            data = self.resp.read1(65536)
            if not data:
                return None
            self.buf += data
        event, self.buf = self.buf.split(b"\n\n", 1)
        return b"\n".join(line[6:] for line in event.split(b"\n") if line.startswith(b"data: "))

    def rest(self):
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def close(self):
        self.conn.close()


def main():
    if not HOST:
        print("usage: e2e.py HOST_BINARY", file=sys.stderr)
        return 2
    upstream, mock = mock_upstream.start()
    port_up = upstream.server_address[1]
    allow = [f"http://127.0.0.1:{port_up}"]
    variables = {"gateway_config": json.dumps(test_config(port_up)), "openai_api_key": UPSTREAM_KEY}
    main_host = harness.Host(HOST, variables=variables, allow_outbound=allow)
    hosts = [main_host]
    try:
        startup = main_host.wait_ready()
        print(f"# spin-test-host ready in {startup * 1000:.0f} ms (port {main_host.port}, upstream {port_up})")
        p = main_host.port

        @case("chat via the mock provider (whole response)")
        def _():
            status, headers, body = harness.request(p, "POST", "/v1/chat/completions", chat("mock"))
            check(status == 200, f"status {status}: {body[:300]!r}")
            data = json.loads(body)
            check(data["object"] == "chat.completion", data)
            check(data["choices"][0]["message"]["content"], "empty content")
            check(headers.get("x-request-id", "").startswith("req_"), f"x-request-id: {headers}")

        @case("chat via the mock provider (stream: SSE, ends with [DONE])")
        def _():
            reader = SseReader(p, chat("mock", stream=True))
            check(reader.resp.status == 200, f"status {reader.resp.status}")
            check(reader.resp.getheader("content-type", "").startswith("text/event-stream"), "content-type")
            events = reader.rest()
            reader.close()
            check(events and events[-1] == b"[DONE]", f"last event {events[-1:]!r}")
            text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                           if json.loads(e).get("choices"))
            check(text, "no streamed text")

        @case("embeddings via the mock provider")
        def _():
            status, _, body = harness.request(p, "POST", "/v1/embeddings", {"model": "mock-embed", "input": "hi"})
            check(status == 200, f"status {status}: {body[:200]!r}")
            check(json.loads(body)["data"][0]["embedding"], "no vector")

        @case("GET /v1/models lists the configured models (config from the gateway_config variable)")
        def _():
            status, _, body = harness.request(p, "GET", "/v1/models")
            check(status == 200, f"status {status}")
            ids = {m["id"] for m in json.loads(body)["data"]}
            check({"mock", "gpt-test"} <= ids, ids)

        @case("chat via the openai provider: key from the Spin variable reaches the upstream, client key does not")
        def _():
            status, headers, body = harness.request(p, "POST", "/v1/chat/completions", chat("gpt-test", "ping"),
                                                    headers={"authorization": f"Bearer {CLIENT_KEY}"})
            check(status == 200, f"status {status}: {body[:300]!r}")
            data = json.loads(body)
            check(data["choices"][0]["message"]["content"] == "echo: ping", data)
            path, up_headers, up_body = mock.last()
            check(path == "/v1/chat/completions", path)
            check(up_headers.get("authorization") == f"Bearer {UPSTREAM_KEY}",
                  f"upstream authorization: {up_headers.get('authorization')!r}")
            check(CLIENT_KEY not in json.dumps(up_headers), "client key forwarded upstream")
            check(up_body["model"] == "gpt-4o-mini", f"upstream model {up_body['model']}")

        @case("exact cache: a repeated request is answered from the key-value store, whole and streamed")
        def _():
            prompt = f"cache me {time.time()}"
            calls_before = len(mock.requests)
            status, headers, body = harness.request(p, "POST", "/v1/chat/completions", chat("gpt-cached", prompt))
            check(status == 200, f"status {status}: {body[:300]!r}")
            check(headers.get("x-gateway-cache") == "miss", f"first: {headers.get('x-gateway-cache')!r}")
            first = json.loads(body)["choices"][0]["message"]["content"]
            # The fill runs after the response (wait_until): retry briefly.
            for _attempt in range(20):
                status, headers, body = harness.request(p, "POST", "/v1/chat/completions", chat("gpt-cached", prompt))
                if headers.get("x-gateway-cache") == "hit":
                    break
                time.sleep(0.05)
            check(headers.get("x-gateway-cache") == "hit", f"second: {headers.get('x-gateway-cache')!r}")
            check(json.loads(body)["choices"][0]["message"]["content"] == first, body[:300])
            check("age" in headers, f"no age header: {headers}")
            reader = SseReader(p, chat("gpt-cached", prompt, stream=True))
            check(reader.resp.getheader("x-gateway-cache") == "hit", reader.resp.getheader("x-gateway-cache"))
            events = reader.rest()
            reader.close()
            check(events and events[-1] == b"[DONE]", events[-1:])
            text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                           if json.loads(e).get("choices"))
            check(text == first, f"replayed {text!r}, stored {first!r}")
            check(len(mock.requests) - calls_before == 1, f"{len(mock.requests) - calls_before} upstream calls")
            status, headers, _ = harness.request(p, "POST", "/v1/chat/completions", chat("gpt-cached", prompt),
                                                 headers={"cache-control": "no-cache"})
            check(headers.get("x-gateway-cache") == "bypass", headers.get("x-gateway-cache"))

        @case("semantic cache: a paraphrase is a semantic hit through SQLite, a changed number is a miss")
        def _():
            def cosine(a, b):
                va, vb = mock_upstream.embedding(a, 256), mock_upstream.embedding(b, 256)
                return sum(x * y for x, y in zip(va, vb))

            def ask(content, headers=None):
                status, headers, body = harness.request(p, "POST", "/v1/chat/completions", chat("gpt-semantic", content),
                                                        headers=headers or {})
                check(status == 200, f"status {status}: {body[:300]!r}")
                return headers, json.loads(body)["choices"][0]["message"]["content"]

            def until_semantic_hit(content):
                # The vector is indexed after the response (wait_until): probe with no-store.
                for _attempt in range(40):
                    headers, answer = ask(content, {"cache-control": "no-store"})
                    if headers.get("x-gateway-cache") == "semantic-hit":
                        return headers, answer
                    time.sleep(0.05)
                check(False, f"{content!r} never became a semantic hit: {headers.get('x-gateway-cache')!r}")

            question, paraphrase = "is 17 a prime number", "tell me is 17 a prime number"
            check(cosine(question, paraphrase) >= 0.78, cosine(question, paraphrase))
            headers, first = ask(question)
            check(headers.get("x-gateway-cache") == "miss", headers.get("x-gateway-cache"))
            chats = lambda: sum(1 for r in mock.requests if r[0].endswith("/chat/completions"))
            # Probes before the vector landed were misses that went upstream: count from a hit on.
            until_semantic_hit(paraphrase)
            calls = chats()
            headers, answer = ask(paraphrase, {"cache-control": "no-store"})
            check(headers.get("x-gateway-cache") == "semantic-hit", headers.get("x-gateway-cache"))
            check(answer == first, f"{answer!r} is not the cached {first!r}")
            similarity = headers.get("x-gateway-cache-similarity", "")
            check(abs(float(similarity) - cosine(question, paraphrase)) < 1e-3, similarity)
            check(chats() == calls, "a semantic hit called the upstream")
            changed = "is 19 a prime number"
            check(cosine(question, changed) >= 0.78, "the changed number is close enough for the threshold alone")
            headers, answer = ask(changed)
            check(headers.get("x-gateway-cache") == "miss", f"changed number: {headers.get('x-gateway-cache')!r}")
            check(answer == f"echo: {changed}", answer)

        @case("streaming: the first chunk reaches the client while the upstream still holds the rest")
        def _():
            mock.release.clear()
            mock.released_by_timeout = False
            reader = SseReader(p, chat("up-hold", stream=True))
            check(reader.resp.status == 200, f"status {reader.resp.status}")
            first = reader.next_event()
            # The upstream has not sent anything after its first chunk yet: release it only now.
            check(not mock.release.is_set() and not mock.released_by_timeout,
                  "the first chunk arrived only after the upstream finished (buffered)")
            check(first and json.loads(first)["choices"][0]["delta"].get("content") == "first", first)
            mock.release.set()
            events = reader.rest()
            reader.close()
            check(not mock.released_by_timeout, "upstream released by its safety timeout: stream was buffered")
            check(events and events[-1] == b"[DONE]", events[-1:])
            check(not any(b'"usage"' in e and b'"choices":[]' in e for e in events),
                  "usage chunk not stripped although the client did not ask for it")
            _, _, up_body = mock.last()
            check(up_body.get("stream_options", {}).get("include_usage") is True, "include_usage not requested upstream")

        @case("client disconnect mid-stream cancels the upstream call")
        def _():
            mock.cancelled.clear()
            reader = SseReader(p, chat("up-endless", stream=True))
            check(reader.resp.status == 200, f"status {reader.resp.status}")
            check(reader.next_event() is not None, "no first event")
            reader.resp.close()
            reader.conn.sock and reader.conn.sock.close()
            reader.close()
            check(mock.cancelled.wait(8), "upstream kept streaming 8 s after the client went away")

        @case("error: body is not JSON -> 400 invalid_json")
        def _():
            status, _, body = harness.request(p, "POST", "/v1/chat/completions", b"{not json")
            check(status == 400 and error_code(body) == "invalid_json", f"{status} {body[:200]!r}")

        @case("error: unknown model -> 404 model_not_found")
        def _():
            status, _, body = harness.request(p, "POST", "/v1/chat/completions", chat("no-such-model"))
            check(status == 404 and error_code(body) == "model_not_found", f"{status} {body[:200]!r}")

        @case("error: upstream 500 -> 502 upstream_error, upstream text not forwarded")
        def _():
            status, _, body = harness.request(p, "POST", "/v1/chat/completions", chat("up-fail"))
            check(status == 502 and error_code(body) == "upstream_error", f"{status} {body[:200]!r}")
            check(b"sk-secret-echo" not in body, "upstream error text forwarded")

        @case("error: upstream origin not in allowed_outbound_hosts -> 502 upstream_unreachable")
        def _():
            before = len(mock.requests)
            status, _, body = harness.request(p, "POST", "/v1/chat/completions", chat("up-denied"))
            check(status == 502 and error_code(body) == "upstream_unreachable", f"{status} {body[:200]!r}")
            check(len(mock.requests) == before, "request reached the upstream despite the allow-list")

        @case("error: provider secret whose Spin variable is not declared -> 500 missing_secret")
        def _():
            status, _, body = harness.request(p, "POST", "/v1/chat/completions", chat("up-nokey"))
            check(status == 500 and error_code(body) == "missing_secret", f"{status} {body[:200]!r}")

        @case("error: GET on a POST route -> 405, unknown path -> 404")
        def _():
            status, _, body = harness.request(p, "GET", "/v1/chat/completions")
            check(status == 405, f"{status} {body[:200]!r}")
            status, _, body = harness.request(p, "GET", "/nope")
            check(status == 404 and error_code(body) == "not_found", f"{status} {body[:200]!r}")

        @case("usage events: one JSON line per request on the component's stdout")
        def _():
            time.sleep(0.2)  # stdout of the last stream is flushed by the host asynchronously
            events = main_host.usage_events()
            check(events, "no usage events in the host output")
            check(any(e.get("model") == "gpt-test" and e.get("provider") == "up" and e.get("status") == 200
                      for e in events), "no event for the gpt-test call")
            check(any(e.get("outcome") == "client_disconnected" for e in events), "no client_disconnected event")
            check(UPSTREAM_KEY not in main_host.output(), "provider key in the logs")

        # --- hosts with other settings -----------------------------------------------------
        digest = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
        auth = {"mode": "api_keys", "consumers": [{"id": "tester", "key_sha256": digest, "models": ["mock"]}]}

        @case("auth on: missing key 401, wrong key 401, good key 200, model outside allow-list 403")
        def _():
            cfg = json.dumps(test_config(port_up, auth))
            with harness.Host(HOST, variables={"gateway_config": cfg}, allow_outbound=allow) as h:
                deadline = time.monotonic() + 30
                while True:  # not ready-checked via /v1/models: that needs a key now
                    try:
                        status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"))
                        break
                    except OSError:
                        check(time.monotonic() < deadline, "host not ready")
                        time.sleep(0.02)
                check(status == 401 and error_code(body) == "missing_api_key", f"missing: {status} {body[:200]!r}")
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"),
                                                  headers={"authorization": "Bearer sk-wrong"})
                check(status == 401 and error_code(body) == "invalid_api_key", f"wrong: {status} {body[:200]!r}")
                good = {"authorization": f"Bearer {CLIENT_KEY}"}
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"), headers=good)
                check(status == 200, f"good: {status} {body[:200]!r}")
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("gpt-test"), headers=good)
                check(status == 403 and error_code(body) == "model_not_allowed", f"403: {status} {body[:200]!r}")

        @case("config from the key-value store (key `config` in store `default`) overrides gateway_config")
        def _():
            kv_cfg = {"auth": {"mode": "none"}, "providers": {"mock": {"kind": "mock"}},
                      "models": {"kv-only-model": {"provider": "mock"}}}
            with harness.Host(HOST, variables=variables, key_values={"config": json.dumps(kv_cfg)},
                              allow_outbound=allow) as h:
                h.wait_ready()
                status, _, body = harness.request(h.port, "GET", "/v1/models")
                ids = {m["id"] for m in json.loads(body)["data"]}
                check(ids == {"kv-only-model"}, f"models {ids}")
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("kv-only-model"))
                check(status == 200, f"{status} {body[:200]!r}")

        @case("invalid config -> 500 config_invalid naming the field, never its value")
        def _():
            bad = {"auth": {"mode": "none"}, "providers": {}, "models": {"m": {"provider": "opnai"}}}
            with harness.Host(HOST, variables={"gateway_config": json.dumps(bad)}, allow_outbound=allow) as h:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        status, _, body = harness.request(h.port, "GET", "/v1/models")
                        break
                    except OSError:
                        check(time.monotonic() < deadline, "host not ready")
                        time.sleep(0.02)
                check(status == 500 and error_code(body) == "config_invalid", f"{status} {body[:300]!r}")
                # Clients learn which field is wrong, never its value (it may hold a credential);
                # the details go to the log and the admin API.
                check(b"models.m.provider" in body, f"error does not name the field: {body[:300]!r}")
                check(b"opnai" not in body, f"error shows the bad value to the client: {body[:300]!r}")

        @case("the shipped spin.toml defaults serve the mock provider offline")
        def _():
            with harness.Host(HOST) as h:
                h.wait_ready()
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"))
                check(status == 200, f"{status} {body[:200]!r}")
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("gpt-4o-mini"))
                check(status == 404, f"unconfigured model: {status}")

        @case("instance reuse (16 concurrent requests per instance): streams, secrets and config still right")
        def _():
            import concurrent.futures
            with harness.Host(HOST, variables=variables, allow_outbound=allow, reuse=1000) as h:
                h.wait_ready()

                def one(i):
                    if i % 2:
                        reader = SseReader(h.port, chat("mock", f"n{i}", stream=True))
                        events = reader.rest()
                        reader.close()
                        return events[-1] == b"[DONE]"
                    status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("gpt-test", f"n{i}"))
                    return status == 200 and json.loads(body)["choices"][0]["message"]["content"] == f"echo: n{i}"

                with concurrent.futures.ThreadPoolExecutor(16) as pool:
                    ok = list(pool.map(one, range(64)))
                check(all(ok), f"{ok.count(False)} of 64 failed")
                check(mock.last()[1].get("authorization") == f"Bearer {UPSTREAM_KEY}", "secret lost on reuse")

        # --- rate limits and budgets, once per counter store -------------------------------
        for store in ("sqlite", "redis"):
            register_limit_cases(store, port_up, allow, mock)

        @case("limits: a broken counter store fails closed with 503 quota_store_unavailable")
        def _():
            cfg = limits_config(port_up, rate_limits=[
                {"scope": ["consumer"], "metric": "requests", "window": "day", "limit": 3}])
            with harness.Host(HOST, variables={"gateway_config": json.dumps(cfg), "counter_store": "bogus"},
                              allow_outbound=allow) as h:
                h.wait_ready(headers=bearer(CLIENT_KEY))
                status, _, body = harness.request(h.port, "POST", "/v1/chat/completions", chat("mock"),
                                                  headers=bearer(CLIENT_KEY))
                check(status == 503 and error_code(body) == "quota_store_unavailable", f"{status} {body[:300]!r}")

        passed = failed = 0
        for name, fn in results:
            try:
                fn()
                passed += 1
                print(f"ok   {name}")
            except Exception as e:  # noqa: BLE001 - report every failure and keep going
                failed += 1
                print(f"FAIL {name}: {e}")
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
        if failed:
            print("--- main host output (tail) ---")
            print("\n".join(main_host.output().splitlines()[-40:]))
        print(f"{passed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        for h in hosts:
            h.stop()
        upstream.shutdown()


if __name__ == "__main__":
    sys.exit(main())
