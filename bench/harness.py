"""Shared pieces of the runner benchmarks (submission, monitoring, e2e, latency, scale).

Contracts:

* :class:`Row` is what every ``run(quick)`` returns (see ``bench/run.py``).
* :func:`local_servers` starts a private Azurite + localbatch in a temporary
  directory (random localbatch key, never on a command line), creates the
  containers and the pool the runner's way (:func:`runner.local.provision`
  with a :class:`~runner.pool_spec.PoolSpec`), yields the outputs contract,
  and stops both servers when the block ends, whatever happens.
* :class:`TcpProxy` forwards 127.0.0.1 connections to one upstream port in
  a background asyncio thread. With ``delay_s`` every forwarded chunk is held
  that long (each direction, order preserved), so one request/response
  exchange costs ``2 * delay_s`` more: a userspace stand-in for ``tc netem``.
  It counts HTTP requests (by parsing request heads and ``Content-Length``)
  and the bytes the upstream sent back (status line, headers and bodies).
* :func:`peak_rss_mb` reads ``VmHWM`` (the kernel's peak resident set) of a
  live process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from runner import services
from runner.batch import Batch
from runner.local import provision
from runner.outputs import Outputs
from runner.pool_spec import PoolSpec

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"
BATCH_ACCOUNT = "benchbatch"


@dataclass(frozen=True)
class Row:
    """One line of the table printed by ``bench/run.py``."""

    case: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None


@dataclass(frozen=True)
class Servers:
    """A private local target: its outputs and the two server processes."""

    outputs: Outputs
    azurite: services.ServiceProcess
    localbatch: services.ServiceProcess
    root: Path


def new_account_key() -> str:
    return base64.b64encode(os.urandom(64)).decode("ascii")


@contextlib.contextmanager
def local_servers(
    pool: PoolSpec, *, prefix: str = "bench-", localbatch_args: list[str] | None = None
) -> Iterator[Servers]:
    """Start Azurite + localbatch (with ``localbatch_args``, e.g. ``--weather``) in a temp dir,
    provision containers and ``pool``; stop them after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        azurite = services.start_azurite(root / "azurite")
        localbatch: services.ServiceProcess | None = None
        key = new_account_key()
        try:
            localbatch = services.start_localbatch(
                root / "localbatch",
                account_name=BATCH_ACCOUNT,
                account_key=key,
                storage_blob_endpoint=azurite.url,
                storage_account_name=services.AZURITE_ACCOUNT_NAME,
                storage_account_key=services.AZURITE_ACCOUNT_KEY,
                extra_args=localbatch_args,
            )
            outputs = Outputs(
                batch_account_name=BATCH_ACCOUNT,
                batch_account_url=localbatch.url,
                batch_account_key=key,
                storage_account_name=services.AZURITE_ACCOUNT_NAME,
                storage_account_key=services.AZURITE_ACCOUNT_KEY,
                storage_blob_endpoint=azurite.url,
                pool_id=pool.pool_id,
                input_container="input",
                output_container="output",
                application_container="application",
            )
            provision(outputs, pool)
            yield Servers(outputs, azurite, localbatch, root)
        finally:
            if localbatch is not None:
                localbatch.stop()
            azurite.stop()


def with_endpoints(
    outputs: Outputs, *, batch_port: int | None = None, blob_port: int | None = None
) -> Outputs:
    """The same outputs with the Batch and/or blob endpoint moved to another local port (a proxy)."""
    out = outputs
    if batch_port is not None:
        out = replace(out, batch_account_url=_with_port(out.batch_account_url, batch_port))
    if blob_port is not None:
        out = replace(out, storage_blob_endpoint=_with_port(out.storage_blob_endpoint, blob_port))
    return out


def _with_port(url: str, port: int) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(netloc=f"127.0.0.1:{port}"))


def port_of(url: str) -> int:
    port = urlparse(url).port
    if port is None:
        raise ValueError(f"no port in {url}")
    return port


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (``VmHWM``) of a live process, in MB (2**20 bytes)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    if match is None:
        raise RuntimeError(f"no VmHWM for pid {pid}")
    return int(match.group(1)) / 1024


def cpu_seconds(pid: int, *, with_children: bool = True) -> float:
    """CPU time (user + system) of a live process; with its waited-for children when asked."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_nodes_idle(batch: Batch, pool_id: str, count: int, timeout: float = 120.0) -> None:
    """Block until ``count`` nodes of the pool are idle (start task done)."""
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while time.monotonic() < deadline:
        states = [n.state.lower() for n in batch.pool_health(pool_id).nodes]
        if sum(s == "idle" for s in states) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"pool {pool_id} has no {count} idle nodes after {timeout:.0f}s: {states}")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ratio_str(x: float) -> str:
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def size_str(n: float) -> str:
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


# -- TCP proxy -------------------------------------------------------------------------


class _RequestCounter:
    """Counts HTTP/1.1 requests in a client->server byte stream (heads + Content-Length bodies)."""

    def __init__(self) -> None:
        self.requests = 0
        self.unparsed = False  # a chunked request body: counting stops (never seen from these SDKs)
        self._buf = b""
        self._body_left = 0

    def feed(self, data: bytes) -> None:
        if self.unparsed:
            return
        self._buf += data
        while True:
            if self._body_left:
                take = min(self._body_left, len(self._buf))
                self._buf = self._buf[take:]
                self._body_left -= take
                if self._body_left:
                    return
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buf = self._buf[:end].lower(), self._buf[end + 4 :]
            self.requests += 1
            if b"transfer-encoding: chunked" in head:
                self.unparsed = True
                return
            match = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            self._body_left = int(match.group(1)) if match else 0


@dataclass
class ProxyCounts:
    requests: int
    response_bytes: int


class TcpProxy:
    """A loopback TCP proxy to ``127.0.0.1:upstream_port``; see the module docstring."""

    def __init__(self, upstream_port: int, *, delay_s: float = 0.0, count: bool = False) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.count = count
        self.port = 0
        self._lock = threading.Lock()
        self._counters: list[_RequestCounter] = []
        self._response_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = fut.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def snapshot(self) -> ProxyCounts:
        with self._lock:
            return ProxyCounts(sum(c.requests for c in self._counters), self._response_bytes)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            c_writer.close()
            return
        counter = _RequestCounter()
        if self.count:
            with self._lock:
                self._counters.append(counter)

        def on_request(data: bytes) -> None:
            if self.count:
                with self._lock:
                    counter.feed(data)

        def on_response(data: bytes) -> None:
            if self.count:
                with self._lock:
                    self._response_bytes += len(data)

        try:
            await asyncio.gather(
                self._pipe(c_reader, u_writer, on_request),
                self._pipe(u_reader, c_writer, on_response),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # The proxy is stopping: end quietly (asyncio logs a handler that ends cancelled).
            c_writer.close()
            u_writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_data: Callable[[bytes], None]
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def pump() -> None:
            try:
                while True:
                    data = await reader.read(256 * 1024)
                    queue.put_nowait((loop.time() + self.delay_s, data))
                    if not data:
                        return
            except (ConnectionError, OSError):
                queue.put_nowait((loop.time(), b""))

        async def drain() -> None:
            try:
                while True:
                    due, data = await queue.get()
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not data:
                        return
                    on_data(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                return
            finally:
                writer.close()

        await asyncio.gather(pump(), drain())
