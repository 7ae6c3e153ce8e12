"""Benchmark of the Spin component in spin-test-host, loopback only, bounded request counts.

Usage: python3 tests/spin/bench.py HOST_BINARY COMPONENT_WASM [REQUESTS]
Prints one JSON document (see scripts/bench-spin)."""

import gzip
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import harness
import mock_upstream

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(samples_ms):
    return {"p50_ms": round(percentile(samples_ms, 50), 3), "p99_ms": round(percentile(samples_ms, 99), 3),
            "mean_ms": round(statistics.fmean(samples_ms), 3), "n": len(samples_ms)}


def sequential(port, path, body, n, stream=False):
    """n sequential requests on one keep-alive connection; returns latencies in ms (to the end of
    the body, or to the first SSE event when stream=True)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps({**body, "stream": True} if stream else body).encode()
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("POST", path, body=data, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            if stream:
                first = resp.read1(65536)
                out.append((time.perf_counter() - t0) * 1000)
                resp.read()
                ok = resp.status == 200 and first
            else:
                payload = resp.read()
                out.append((time.perf_counter() - t0) * 1000)
                ok = resp.status == 200 and payload
            if not ok:
                raise RuntimeError(f"{path}: status {resp.status}")
    finally:
        conn.close()
    return out


def startup(host_bin, variables, allow, cache_dir, runs=3):
    """Seconds from process start to the first successful chat response, median of `runs`."""
    times = []
    for _ in range(runs):
        with harness.Host(host_bin, variables=variables, allow_outbound=allow,
                          extra_args=["--cache-dir", cache_dir] if cache_dir else None) as h:
            times.append(h.wait_ready(path=None) * 1000)
    return round(statistics.median(times), 1)


def limited_request_overhead(host_bin, config, allow, cache, n, unlimited):
    """The same mock-provider request under a request limit (scope model, never reached), per
    counter store, fresh instance per request: what admitting and settling costs per request."""
    limited = {**config, "rate_limits": [{"scope": ["model"], "metric": "requests", "window": "day",
                                         "limit": 1_000_000_000}]}
    redis = None if os.environ.get("SPIN_TEST_REDIS_ADDRESS") else harness.RedisServer()
    redis_address = os.environ.get("SPIN_TEST_REDIS_ADDRESS") or redis.address
    base = unlimited["mock_provider_no_upstream"]
    out = {"note": "mock provider, a requests-per-day limit on scope model; overhead vs the same request "
                   "without limits (fresh instance per request); the settle runs after the response"}
    try:
        for store in ("sqlite", "redis"):
            if store == "redis" and not redis_address:
                out[store] = "skipped: redis-server not installed"
                continue
            variables = {"gateway_config": json.dumps(limited), "counter_store": store,
                         "redis_address": redis_address or ""}
            with harness.Host(host_bin, variables=variables, allow_outbound=allow + ([redis_address] if redis_address else []),
                              extra_args=["--cache-dir", cache]) as h:
                h.wait_ready()
                sequential(h.port, "/v1/chat/completions", {**BODY, "model": "mock"}, 20)  # warm-up
                samples = summary(sequential(h.port, "/v1/chat/completions", {**BODY, "model": "mock"}, n))
            out[store] = {**samples, "overhead_vs_unlimited_ms": {
                "p50": round(samples["p50_ms"] - base["p50_ms"], 3), "p99": round(samples["p99_ms"] - base["p99_ms"], 3)}}
    finally:
        if redis:
            redis.stop()
    return out


def main():
    host_bin, wasm = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    raw = open(wasm, "rb").read()
    upstream, _mock = mock_upstream.start()
    port_up = upstream.server_address[1]
    allow = [f"http://127.0.0.1:{port_up}"]
    config = {"auth": {"mode": "none"},
              # A loopback http upstream: allowed because this is the shipped configuration.
              "network": {"allow_private_upstreams": True},
              "providers": {"mock": {"kind": "mock"},
                            "up": {"kind": "openai", "base_url": f"http://127.0.0.1:{port_up}/v1",
                                   "api_key_secret": "OPENAI_API_KEY"}},
              "models": {"mock": {"provider": "mock"}, "gpt-test": {"provider": "up", "upstream_model": "gpt-4o-mini"}}}
    variables = {"gateway_config": json.dumps(config), "openai_api_key": "sk-bench"}
    cache = tempfile.mkdtemp(prefix="spin-bench-cache-")
    result = {
        "component": {"path": os.path.relpath(wasm, harness.ROOT), "bytes": len(raw),
                      "gzip_bytes": len(gzip.compress(raw, 9))},
        "host": "spin-test-host (wasmtime 48, WASI 0.3); not the Spin CLI, see docs/spin.md",
        "requests_per_series": n,
    }
    try:
        result["startup_ms"] = {
            "note": "process start to the first successful POST /v1/chat/completions (mock provider), median of 3",
            "cold_compile": startup(host_bin, variables, allow, None),
            "cached_compile": (startup(host_bin, variables, allow, cache, runs=1),
                               startup(host_bin, variables, allow, cache))[1],
        }
        direct = sequential(port_up, "/v1/chat/completions", {**BODY, "model": "gpt-4o-mini"}, n)
        direct_stream = sequential(port_up, "/v1/chat/completions", {**BODY, "model": "gpt-4o-mini"}, n, stream=True)
        series = {}
        for label, reuse in (("fresh_instance_per_request", 1), ("instance_reused", 1_000_000)):
            with harness.Host(host_bin, variables=variables, allow_outbound=allow, reuse=reuse,
                              extra_args=["--cache-dir", cache]) as h:
                h.wait_ready()
                sequential(h.port, "/v1/chat/completions", BODY, 20)  # warm-up
                via = sequential(h.port, "/v1/chat/completions", BODY, n)
                via_stream = sequential(h.port, "/v1/chat/completions", BODY, n, stream=True)
                mock_only = sequential(h.port, "/v1/chat/completions", {**BODY, "model": "mock"}, n)
            series[label] = {
                "openai_provider_to_mock_upstream": summary(via),
                "overhead_vs_direct_ms": {"p50": round(percentile(via, 50) - percentile(direct, 50), 3),
                                          "p99": round(percentile(via, 99) - percentile(direct, 99), 3)},
                "stream_first_chunk": summary(via_stream),
                "stream_first_chunk_overhead_vs_direct_ms": {
                    "p50": round(percentile(via_stream, 50) - percentile(direct_stream, 50), 3),
                    "p99": round(percentile(via_stream, 99) - percentile(direct_stream, 99), 3)},
                "mock_provider_no_upstream": summary(mock_only),
            }
        result["limited_request"] = limited_request_overhead(host_bin, config, allow, cache, n,
                                                             series["fresh_instance_per_request"])
        result["latency"] = {
            "note": "sequential requests on one keep-alive client connection, loopback; the gateway opens a "
                    "new upstream connection per call (wasmtime-wasi-http's client does not pool)",
            "direct_to_mock_upstream": summary(direct),
            "direct_to_mock_upstream_stream_first_chunk": summary(direct_stream),
            **series,
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        upstream.shutdown()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
