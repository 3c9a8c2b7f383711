"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client), for tests.

:func:`open_page` starts Debian's ``chromium`` on a free loopback debugging
port with a throw-away profile, loads one URL, waits until the page sets
``<body data-rendered="ok">`` (or ``data-error``, or the timeout), and returns a
:class:`Page` with what the console said, what JavaScript threw, values
evaluated in the page and a full-page PNG screenshot. Chromium is always
stopped, whatever happens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""
    load_seconds: float = 0.0


class _Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, page: Page) -> None:
        self.ws, self.page, self.next_id = ws, page, 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.loaded = asyncio.Event()

    async def pump(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self.event(data.get("method", ""), data.get("params", {}))

    def event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.page.console_errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.page.exceptions.append(str(params["exceptionDetails"].get("exception", params)))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.page.console_errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            self.page.requests.append(params["request"]["url"])
        elif method == "Page.loadEventFired":
            self.loaded.set()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")


def _debug_port(proc: subprocess.Popen[str], deadline: float) -> int:
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if m:  # keep reading its stderr, or chromium blocks once the pipe is full
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return int(m.group(1))
    raise RuntimeError("chromium did not start its DevTools endpoint")


_STATE = "[document.body.dataset.rendered, document.body.dataset.error]"


async def _load(cdp: _Cdp, url: str, timeout: float) -> float:
    """Navigate and wait for the page's own rendered/error mark; returns the seconds it took."""
    for domain in ("Runtime", "Log", "Page", "Network"):
        await cdp.call(f"{domain}.enable")
    t0 = time.monotonic()
    await cdp.call("Page.navigate", url=url)
    await asyncio.wait_for(cdp.loaded.wait(), timeout)
    while time.monotonic() - t0 < timeout:
        state = await cdp.evaluate(_STATE)
        if state and (state[0] or state[1]):
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def _screenshot(cdp: _Cdp, width: int) -> bytes:
    height = await cdp.evaluate("document.documentElement.scrollHeight")
    metrics = {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": False}
    await cdp.call("Emulation.setDeviceMetricsOverride", **metrics)
    # Charts sized to their container redraw on resize: let them settle before the capture.
    settle = "new Promise(r => setTimeout(() => requestAnimationFrame(() => requestAnimationFrame(r)), 500))"
    await cdp.call("Runtime.evaluate", expression=settle, awaitPromise=True)
    shot = await cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    return base64.b64decode(shot["data"])


async def _drive(port: int, url: str, expressions: dict[str, str], width: int, timeout: float) -> Page:
    page = Page()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            cdp = _Cdp(ws, page)
            pump = asyncio.create_task(cdp.pump())
            try:
                page.load_seconds = await _load(cdp, url, timeout)
                for name, expr in expressions.items():
                    page.values[name] = await cdp.evaluate(expr)
                page.screenshot = await _screenshot(cdp, width)
            finally:
                pump.cancel()
    return page


def open_page(
    url: str, expressions: dict[str, str], *, width: int = 1400, height: int = 900, timeout: float = 60
) -> Page:
    """Load ``url`` in headless Chromium and return what it showed (see the module docstring)."""
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    # chromium may still be writing its profile as it exits: a leftover file is no failure
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
        proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        try:
            port = _debug_port(proc, time.monotonic() + 30)
            return asyncio.run(_drive(port, url, expressions, width, timeout))
        finally:
            proc.kill()
            proc.wait(10)


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
