"""A local stand-in of the Lambda Runtime API (2018-06-01), for running AWS's runtime interface client against.

It hands out queued events on ``GET /2018-06-01/runtime/invocation/next`` (with the headers the real service sends)
and records what the runtime posts back: ``/invocation/{id}/response``, ``/invocation/{id}/error`` and
``/init/error``. Once the queue is empty, ``next`` waits, as the real service does between invocations.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orga-client-secrets"


@dataclass
class Posted:
    """What the runtime posted: ``kind`` is ``response``, ``error`` or ``init-error``."""

    kind: str
    request_id: str | None
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class RuntimeAPI:
    """The stand-in, served on 127.0.0.1 in a thread; ``address`` is what ``AWS_LAMBDA_RUNTIME_API`` takes."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.posted: queue.Queue[Posted] = queue.Queue()
        self.stopping = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads `posted`
                return

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404)
                    return
                while not api.stopping.is_set():
                    try:
                        request_id, event = api.events.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    body = json.dumps(event).encode()
                    headers = {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": "Root=1-65f1c2d3-0123456789abcdef01234567;Sampled=0",
                    }
                    self._reply(200, body, headers)
                    return
                self._reply(500, b'{"errorMessage":"shutting down"}', {"Content-Type": "application/json"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                headers = {name.lower(): value for name, value in self.headers.items()}
                if parts == ["init", "error"]:
                    api.posted.put(Posted("init-error", None, body, headers))
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in {"response", "error"}:
                    api.posted.put(Posted(parts[2], parts[1], body, headers))
                else:
                    self._reply(404)
                    return
                self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)

    def __enter__(self) -> RuntimeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def invoke(self, event: Any) -> str:
        """Queue one invocation; returns its request id."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event))
        return request_id

    def next_posted(self, timeout: float = 30.0) -> Posted:
        """The next thing the runtime posted, waiting up to ``timeout`` seconds."""
        return self.posted.get(timeout=timeout)
