"""Shared helpers for the Spin end-to-end tests and benchmark: start/stop spin-test-host with the
built component, and small HTTP client helpers. Python stdlib only."""

import http.client
import json
import os
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    """One spin-test-host process serving spin.toml's component on a loopback port."""

    def __init__(self, binary, variables=None, key_values=None, allow_outbound=None, reuse=1,
                 manifest=None, extra_args=None):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="spin-host-", suffix=".log", delete=False)
        args = [binary, "--from", manifest or os.path.join(ROOT, "spin.toml"),
                "--listen", f"127.0.0.1:{self.port}", "--instance-reuse", str(reuse)]
        for name, value in (variables or {}).items():
            args += ["--variable", f"{name}={value}"]
        for key, value in (key_values or {}).items():
            args += ["--key-value", f"{key}={value}"]
        for origin in allow_outbound or []:
            args += ["--allow-outbound", origin]
        args += extra_args or []
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout=60.0, path="/v1/models", headers=None):
        """Polls until the component answers GET `path` (with `headers`) with 200 (path=None: a
        chat completion with the mock provider); returns seconds since the process started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"spin-test-host exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if path is None:
                    status, _, _ = request(self.port, "POST", "/v1/chat/completions", timeout=5, body={
                        "model": "mock", "messages": [{"role": "user", "content": "ready?"}]})
                else:
                    status, _, _ = request(self.port, "GET", path, headers=headers, timeout=5)
                if status == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"spin-test-host not ready after {timeout}s:\n{self.output()}")

    def output(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def usage_events(self):
        events = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def request(port, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection; returns (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        hdrs = {"content-type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def redis_flush(address):
    """FLUSHALL on the Redis server at `redis://host:port` (the tests' own throwaway server)."""
    host, port = address.removeprefix("redis://").rsplit("/", 1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        reply = s.recv(64)
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"FLUSHALL: {reply!r}")


class RedisServer:
    """A throwaway redis-server on a free loopback port (no persistence), for the benchmark when
    SPIN_TEST_REDIS_ADDRESS is not set. `address` is None when redis-server is not installed."""

    def __init__(self):
        import shutil
        self.proc, self.address = None, None
        if shutil.which("redis-server"):
            port = free_port()
            self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                          "--appendonly", "no"], stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    self.address = f"redis://127.0.0.1:{port}"
                    break
                except OSError:
                    time.sleep(0.02)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
