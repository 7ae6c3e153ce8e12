"""A mock upstream speaking OpenAI's wire format, for the Spin end-to-end tests and benchmark.

Python stdlib only. Runs in a thread of the test process, so tests can look at what it received
and steer it (release a held stream) without any timing assumptions.

Behaviour by the upstream model name (after the gateway's model mapping):
- "fail-500":  500 with an OpenAI-style error body
- "hold":      streamed; sends the first chunk, then holds the rest until `release` is set (or
               a safety timeout, recorded in `released_by_timeout`)
- "endless":   streamed; one chunk every 50 ms for up to 10 s; records in `cancelled` when the
               connection breaks (the gateway dropped the call)
- anything else: a normal completion (streamed if "stream": true) echoing the last user message
"""

import hashlib
import json
import math
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def embedding(text, dimensions):
    """The hashed bag of normalised words of tests/mock-upstream.mjs (same vectors): paraphrases
    sharing words are similar, so semantic-cache tests mean something. L2-normalised."""
    sums = [0.0] * dimensions
    words = re.findall(r"[^\W_]+", text.lower()) or [""]
    for word in words:
        digest = hashlib.sha256(word.encode()).digest()
        slot = int.from_bytes(digest[0:4], "little") % dimensions
        sums[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in sums))
    if norm == 0:
        sums[0], norm = 1.0, 1.0
    return [x / norm for x in sums]

SAFETY_TIMEOUT_S = 5.0


class MockState:
    def __init__(self):
        self.requests = []  # (path, headers dict lower-case, body json)
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.released_by_timeout = False
        self.cancelled = threading.Event()
        self.endless_started = threading.Event()

    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None


def completion(model, text, usage):
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1767225600,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    }


def chunk(model, delta, finish=None):
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def setup(self):
            super().setup()
            # Headers and body go out in separate writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every response on a keep-alive connection.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def write_chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def sse(self, obj):
            self.write_chunk(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")

        def read_body(self):
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                raw = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return raw
                    raw += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self):
            if self.path.endswith("/models"):
                self.send_json(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})
            else:
                self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

        def do_POST(self):
            raw = self.read_body()
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            with state.lock:
                state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if not isinstance(body, dict):
                return self.send_json(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            model = body.get("model", "")
            if self.path.endswith("/embeddings"):
                inputs = body.get("input")
                inputs = inputs if isinstance(inputs, list) else [inputs]
                dims = body.get("dimensions") or 256
                data = [{"object": "embedding", "index": i, "embedding": embedding(str(text), dims)} for i, text in enumerate(inputs)]
                return self.send_json(200, {"object": "list", "model": model, "data": data,
                                            "usage": {"prompt_tokens": 2 * len(inputs), "total_tokens": 2 * len(inputs)}})
            if model == "fail-500":
                return self.send_json(500, {"error": {"message": "upstream exploded sk-secret-echo", "type": "server_error"}})
            messages = body.get("messages") or [{}]
            text = "echo: " + str(messages[-1].get("content", ""))
            usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
            if not body.get("stream"):
                return self.send_json(200, completion(model, text, usage))

            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            include_usage = (body.get("stream_options") or {}).get("include_usage")
            try:
                self.sse(chunk(model, {"role": "assistant", "content": "first"}))
                if model == "hold":
                    if not state.release.wait(SAFETY_TIMEOUT_S):
                        state.released_by_timeout = True
                    self.sse(chunk(model, {"content": " second"}))
                elif model == "endless":
                    state.endless_started.set()
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        time.sleep(0.05)
                        self.sse(chunk(model, {"content": " more"}))
                else:
                    self.sse(chunk(model, {"content": " " + text}))
                self.sse(chunk(model, {}, "stop"))
                if include_usage:
                    self.sse({**chunk(model, {}), "choices": [], "usage": usage})
                self.sse(b"[DONE]")
                self.write_chunk(b"")
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                state.cancelled.set()
                self.close_connection = True

    return Handler


def start(port=0):
    """Starts the mock on 127.0.0.1:port in a daemon thread; returns (server, state)."""
    state = MockState()
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state
