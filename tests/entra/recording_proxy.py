"""A recording HTTPS reverse proxy for tests: what reached a service, and how it authenticated.

It terminates TLS with the local target's server certificate (so clients that
trust the local CA trust it), forwards every request unchanged (the ``Host``
header included, so links the service builds point back at the proxy) to one
upstream over HTTPS, and records, per request, the method, the path, the
authorization scheme and the names of the query parameters (never values:
no token or signature is kept). Bound to 127.0.0.1, stopped by :meth:`close`.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    scheme: str  # "Bearer", "SharedKey", ... or "" when there is no Authorization header
    query: frozenset[str]


class RecordingProxy:
    """``url`` serves what ``upstream`` serves; ``seen`` lists the requests."""

    def __init__(self, upstream: str, cert: Path, key: Path, ca: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[Seen] = []
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ssl.load_cert_chain(str(cert), str(key))
        self._client_ssl = ssl.create_default_context(cafile=str(ca))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the recording proxy did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._server_ssl)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"https://127.0.0.1:{port}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        auth = request.headers.get("Authorization", "")
        self.seen.append(
            Seen(request.method, raw_path, auth.split(" ", 1)[0], frozenset(parse_qs(raw_query).keys()))
        )
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.raw_path,
            headers=headers,
            data=body or None,
            ssl=self._client_ssl,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            return web.Response(status=upstream.status, headers=out, body=payload)

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
