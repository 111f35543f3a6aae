"""Web pages in a real browser: headless Chromium driven over the DevTools protocol.

Chromium is started with `--remote-debugging-pipe`, which speaks the Chrome DevTools Protocol
(JSON messages ending in a NUL byte) on file descriptors 3 (commands in) and 4 (replies out).
That needs nothing but the `chromium` package: no WebDriver binary and no Python client library.
`page_state` skips the calling test when no Chromium is installed (`apt-get install chromium`;
scripts/test.sh does it when it runs as root). The report tests of `m2l eval` and `m2l gen eval`
use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

MEDIA_STATE = """ready: document.readyState,
  images: Array.from(document.images, i => ({src: i.getAttribute('src'), complete: i.complete,
                                              width: i.naturalWidth, height: i.naturalHeight,
                                              shownWidth: i.clientWidth, shownHeight: i.clientHeight})),
  audios: Array.from(document.querySelectorAll('audio'), a => ({src: a.getAttribute('src'),
      state: a.readyState, duration: a.duration, error: a.error ? a.error.code : null})),"""
"""The fields of a page-state expression that `poll_page` waits on (JavaScript object fields)."""


class DevToolsPipe:
    """A minimal Chrome DevTools Protocol client for a headless Chromium it starts itself."""

    def __init__(self, binary: str, profile: Path) -> None:
        commands_r, self._commands_w = os.pipe()
        self._replies_r, replies_w = os.pipe()

        def child_fds() -> None:  # runs in the child before exec: put the pipe ends on fds 3, 4
            a = fcntl.fcntl(commands_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(replies_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.close(a)
            os.close(b)

        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            preexec_fn=child_fds,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_r)
        os.close(replies_w)
        self._buffer = b""
        self._next_id = 0

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies_r], [], [], left)[0]:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._replies_r, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and return its result (events in between are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.call("Browser.close", timeout=5.0)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands_w)
        os.close(self._replies_r)


def poll_page(browser: DevToolsPipe, session: str, expression: str, timeout: float = 60.0) -> dict[str, Any]:
    """Evaluate `expression` (JSON of an object with `MEDIA_STATE`'s fields) until the page, its
    images and its audio metadata have loaded (or time is up); returns the last state."""
    deadline = time.monotonic() + timeout
    while True:
        result = browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        state = json.loads(result["result"]["value"])
        settled = (
            state["ready"] == "complete"
            and all(i["complete"] for i in state["images"])
            and all(a["state"] >= 1 or a["error"] is not None for a in state["audios"])
        )
        if settled or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def page_state(page: Path, fields: str, profile: Path) -> dict[str, Any]:
    """Open `page` in headless Chromium and return the state of the loaded page: `MEDIA_STATE`'s
    fields and `fields` (more JavaScript object fields, e.g. "rows: ..."). Skips the calling test
    when no Chromium is installed.

    Args:
        page: the HTML file.
        fields: JavaScript object fields (text ending in a comma, or empty).
        profile: a fresh folder for the browser's profile.
    """
    binary = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    browser = DevToolsPipe(binary, profile)
    expression = "JSON.stringify({" + MEDIA_STATE + fields + "})"
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.navigate", {"url": page.as_uri()}, session)
        return poll_page(browser, session, expression)
    finally:
        browser.close()
