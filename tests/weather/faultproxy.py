"""An HTTP proxy on 127.0.0.1 that forwards to one upstream and injects a bounded set of faults.

Tests put it between the runner and localbatch (or Azurite) to play Azure's
weather where the service itself has none: throttling (429 / 503 ServerBusy
with ``Retry-After``), transient 500s, a service that stops answering. Every
request is recorded (method, path, status, time), so tests can also count
requests (the O(1) poll).

Contracts:

* Binds 127.0.0.1 only, on a free port; stops with the context manager.
* A :class:`Fault` is served at most ``count`` times in total: a plan can never
  fail more requests than it says, so a client that retries always gets through.
* ``only`` restricts which requests a fault may hit (e.g. the runner's SDK
  requests, not the tasks' downloads through the same proxy).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, urlunparse

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}

Match = Callable[[str, str, dict[str, str]], bool]


def via(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by the proxy's (path kept)."""
    return urlunparse(urlparse(url)._replace(netloc=f"127.0.0.1:{proxy.port}"))


def any_request(method: str, path: str, headers: dict[str, str]) -> bool:
    return True


def from_sdk(method: str, path: str, headers: dict[str, str]) -> bool:
    """Requests of the Azure SDKs (the runner), not of the tasks' downloads."""
    return "azsdk-python" in headers.get("user-agent", "")


@dataclass
class Fault:
    """Answer ``status`` (with ``code`` and ``retry_after``) instead of forwarding, ``count`` times,
    to every ``every``-th matching request; ``hang`` seconds of silence instead (then forward)."""

    status: int = 503
    code: str = "ServerBusy"
    retry_after: float | None = None
    count: int = 1
    every: int = 1
    hang: float = 0.0
    #: With ``hang``: the silence ends early once this is set (the test saw what it waited for).
    release: threading.Event | None = None
    only: Match = any_request
    served: int = 0
    _seen: int = 0

    def take(self, method: str, path: str, headers: dict[str, str]) -> bool:
        if self.served >= self.count or not self.only(method, path, headers):
            return False
        self._seen += 1
        if self._seen % self.every:
            return False
        self.served += 1
        return True


@dataclass(frozen=True)
class Record:
    at: float
    method: str
    path: str
    status: int
    faulted: bool
    size: int = 0  # response body bytes


@dataclass
class FaultProxy:
    """``with FaultProxy(upstream_url, faults=[...]) as proxy: proxy.url ...``"""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    #: ``rewrite(method, path, body) -> body`` changes what the upstream answered (2xx only).
    rewrite: Callable[[str, str, bytes], bytes] | None = None

    def __post_init__(self) -> None:
        parsed = urlparse(self.upstream)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def count(self, method: str | None = None, path_part: str = "") -> int:
        with self._lock:
            return sum(
                1 for r in self.records if (method is None or r.method == method) and path_part in r.path
            )

    def _pick(self, method: str, path: str, headers: dict[str, str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.take(method, path, headers):
                    return fault
        return None

    def _record(self, method: str, path: str, status: int, faulted: bool, size: int = 0) -> None:
        with self._lock:
            self.records.append(Record(time.monotonic(), method, path, status, faulted, size))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                fault = proxy._pick(self.command, self.path, headers)
                if fault is not None and fault.hang and fault.release is not None:
                    fault.release.wait(fault.hang)
                elif fault is not None and fault.hang:
                    time.sleep(fault.hang)
                elif fault is not None:
                    self._fail(fault)
                    return
                self._forward(body, fault is not None)

            def _fail(self, fault: Fault) -> None:
                payload = f'{{"odata.error":{{"code":"{fault.code}","message":{{"value":"injected"}}}}}}'
                data = payload.encode() if self.command != "HEAD" else b""
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-ms-error-code", fault.code)
                if fault.retry_after is not None:
                    self.send_header("Retry-After", f"{fault.retry_after:g}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                proxy._record(self.command, self.path, fault.status, True)

            def _forward(self, body: bytes, faulted: bool) -> None:
                conn = http.client.HTTPConnection(proxy._host, proxy._port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if proxy.rewrite is not None and 200 <= resp.status < 300 and data:
                    data = proxy.rewrite(self.command, self.path, data)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                no_body = self.command == "HEAD" or resp.status in (204, 304)
                if self.command == "HEAD":
                    self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                elif not no_body:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not no_body:
                    self.wfile.write(data)
                proxy._record(self.command, self.path, resp.status, faulted, 0 if no_body else len(data))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _any

        return Handler
