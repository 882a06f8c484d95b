"""What every test server shares: a free port, ``with``-statement support, stopping a child."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from types import TracebackType
from typing import Self

__all__ = ["LOCALHOST", "TestServer", "free_port", "stop_process"]

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the one helper for tests, the demo
    and the benchmarks). Free when this returns; a server that starts on it later retries
    another if something took it meanwhile (see :meth:`testservers.process.ServerProcess.start`).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(
    process: subprocess.Popen[bytes], timeout: float = 10.0, stop_signal: int = signal.SIGTERM
) -> None:
    """Send ``process`` ``stop_signal``, then SIGKILL it if it has not exited within ``timeout``
    seconds; a process that already exited is only reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(stop_signal)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TestServer:
    """``with Server(...) as server:`` starts it and stops it however the block ends (servers,
    and anything else started and stopped so, such as the demo's workers).

    Subclasses define :meth:`start` (return once the server answers) and :meth:`stop` (safe to
    call twice).
    """

    __test__ = False  # not a pytest test class, whatever its name says

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
