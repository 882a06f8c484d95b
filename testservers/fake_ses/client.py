"""FakeSES as a child process (``python -m testservers.fake_ses``), steered over its ``/_fake/*``
HTTP API: the one client the worker tests, the demo and the benchmarks share, for when the
processes that send (task workers, benchmark drivers) are not the one that checks."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testservers.base import LOCALHOST, TestServer, stop_process
from testservers.fake_ses.protocol import ACCOUNT_ANSWERS, AcceptedMessage

__all__ = ["FakeSESProcess"]

# The directory that holds the testservers package: the child runs there, so that
# ``-m testservers.fake_ses`` imports whatever the caller's PYTHONPATH says.
_ROOT = Path(__file__).resolve().parents[2]


class FakeSESProcess(TestServer):
    """``with FakeSESProcess(rate=5, enforce_rate=True) as ses:`` then ``ses.endpoint_url``,
    ``ses.messages()``, ``ses.stats()``, ``ses.inject("500")``...

    The settings are the command line's (``python -m testservers.fake_ses --help``):
    ``enforce_rate`` False, True/"rolling" (``--enforce-rate``) or "ses" (``--enforce-ses``);
    ``get_account``/``get_send_quota`` one of "ok", "denied", "missing", "error". The child runs
    in its own process group with ``env`` (default: this process's), its stderr in ``log_file``
    (default: discarded); :meth:`stop` terminates it, then kills it after 10 s.
    """

    def __init__(
        self,
        *,
        rate: float = 14.0,
        quota: int = 50_000,
        latency: float = 0.0,
        enforce_rate: bool | str = False,
        verified: Sequence[str] = (),
        get_account: str = "ok",
        get_send_quota: str = "ok",
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        if get_account not in ACCOUNT_ANSWERS or get_send_quota not in ACCOUNT_ANSWERS:
            raise ValueError(f"account query answers must be in {ACCOUNT_ANSWERS}")
        self.command = [
            sys.executable, "-u", "-m", "testservers.fake_ses",
            "--port", "0",
            "--rate", str(rate),
            "--quota", str(quota),
            "--latency", str(latency),
            "--get-account", get_account,
            "--get-send-quota", get_send_quota,
        ]  # fmt: skip
        if enforce_rate == "ses":
            self.command.append("--enforce-ses")
        elif enforce_rate is True or enforce_rate == "rolling":
            self.command.append("--enforce-rate")
        elif enforce_rate is not False:
            raise ValueError(f"unknown enforce_rate {enforce_rate!r}")
        for identity in verified:
            self.command += ["--verified", identity]
        self.env = dict(os.environ if env is None else env)
        self.log_file = log_file
        self.timeout = timeout  # for each control request
        self.endpoint_url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the child and return once it has printed its URL (it serves by then)."""
        log = self.log_file.open("ab") if self.log_file is not None else None
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log if log is not None else subprocess.DEVNULL,
                # Its own group: a Ctrl-C reaches the caller, which stops the child in order.
                start_new_session=True,
            )
        finally:
            if log is not None:
                log.close()
        try:
            self.endpoint_url = self._first_line(timeout)
            if not self.endpoint_url.startswith(f"http://{LOCALHOST}:"):
                raise RuntimeError(f"FakeSES printed {self.endpoint_url!r}, not its URL")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)
            if process.stdout is not None:
                process.stdout.close()

    # --- the control API ---------------------------------------------------------------------

    def call(self, method: str, path: str, data: Any = None) -> Any:
        """One control request (``GET`` or ``POST`` ``/_fake/...``); its JSON answer."""
        body = None if data is None else json.dumps(data).encode()
        url = self.endpoint_url + path  # our own http://127.0.0.1 endpoint
        request = urllib.request.Request(url, data=body, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            return json.loads(response.read())

    def messages(self, *, raw: bool = False) -> list[AcceptedMessage]:
        """Every message accepted since the last reset; ``raw`` also fetches their MIME."""
        path = "/_fake/messages?raw=1" if raw else "/_fake/messages"
        return [AcceptedMessage.from_json(item) for item in self.call("GET", path)]

    def stats(self) -> dict[str, Any]:
        return dict(self.call("GET", "/_fake/stats"))

    def inject(self, fault: str, times: int = 1) -> None:
        self.call("POST", "/_fake/inject", {"fault": fault, "times": times})

    def reset(self) -> None:
        self.call("POST", "/_fake/reset", {})

    def configure(self, **changes: Any) -> None:
        self.call("POST", "/_fake/config", changes)

    def wait_for(self, count: int, *, timeout: float, idle: float = 30.0) -> int:
        """Wait until ``count`` messages were accepted, or nothing arrived for ``idle`` s;
        return how many were."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            accepted = int(self.stats()["accepted"])
            if accepted >= count:
                return accepted
            if accepted != last:
                last, last_change = accepted, time.monotonic()
            elif time.monotonic() - last_change > idle:
                return accepted
            time.sleep(0.25)
        return int(self.stats()["accepted"])

    def _first_line(self, timeout: float) -> str:
        """The child's first line of output, read without blocking past ``timeout``."""
        assert self.process is not None
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"FakeSES did not print its URL in {timeout:g}s{self._see()}")
            ready, _, _ = select.select([descriptor], [], [], remaining)
            if ready:
                chunk = os.read(descriptor, 4096)
                if not chunk:
                    raise RuntimeError(f"FakeSES exited at start{self._see()}")
                data += chunk
        return data.partition(b"\n")[0].decode().strip()

    def _see(self) -> str:
        return f"; see {self.log_file}" if self.log_file is not None else ""
