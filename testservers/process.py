"""Real, throw-away servers run from the distribution's binaries (the base of
:class:`~testservers.redis.RedisServer` and :class:`~testservers.postgres.PostgresServer`).

Each runs the server binary as a child process, on a free port, with every file in a private
temporary directory that :meth:`ServerProcess.stop` deletes, and tuned for speed rather than
durability (nothing here is worth keeping)::

    with RedisServer() as redis_server, PostgresServer() as postgres:
        ...  # redis.Redis.from_url(redis_server.url); psycopg.connect(postgres.dsn)
        # DATABASES = {"default": postgres.django_database()}

The binaries come from the system (``apt-get install redis-server postgresql``); nothing is
downloaded. These modules import neither Django nor any client library.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from testservers.base import LOCALHOST, TestServer, free_port, stop_process

__all__ = ["ServerError", "ServerNotInstalled", "ServerProcess"]

# A port picked free can be taken by someone else before the server binds it; then the server
# exits with "Address already in use" and we try another port this many times in all.
_PORT_ATTEMPTS = 5


class ServerError(RuntimeError):
    """A test server failed to start."""


class ServerNotInstalled(ServerError):
    """The server's binaries are not installed; the message says how to install them."""


def _shutdown(process: subprocess.Popen[bytes], stop_signal: int, directory: Path) -> None:
    """Stop ``process`` (``stop_signal``, then SIGKILL after 30 s) and delete ``directory``."""
    stop_process(process, 30, stop_signal)
    shutil.rmtree(directory, ignore_errors=True)


class ServerProcess(TestServer):
    """Start/stop plumbing shared by both servers: a temp dir, a child process, its log."""

    _name = "server"
    _stop_signal = signal.SIGTERM

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.host = LOCALHOST
        self.port = 0
        self.directory: Path | None = None
        """The private temporary directory (data, log, sockets); deleted by :meth:`stop`."""
        self._finalizer: weakref.finalize[..., ServerProcess] | None = None

    @property
    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        path = self.directory / "server.log" if self.directory else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def start(self) -> None:
        """Start the server on a free port and return once it accepts connections."""
        if self._finalizer is not None and self._finalizer.alive:
            raise ServerError(f"the {self._name} server is already running")
        self.directory = self._make_directory()
        try:
            self._prepare(self.directory)
            for _ in range(_PORT_ATTEMPTS):
                if self._run(self.directory, free_port()):
                    return
            raise ServerError(f"{self._name} found no free port in {_PORT_ATTEMPTS} tries")
        except BaseException:
            directory = self.directory
            self.stop()  # kills the process, if it got that far
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown at most once
        self._finalizer = None
        self.directory = None
        self.port = 0

    # --- for subclasses ----------------------------------------------------------------------

    def _make_directory(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"sendwell-{self._name}-"))

    def _prepare(self, directory: Path) -> None:
        """One-time set-up before the first start attempt (initdb)."""

    def _command(self, directory: Path, port: int) -> list[str]:
        raise NotImplementedError

    def _is_ready(self, directory: Path, port: int) -> bool:
        raise NotImplementedError

    def _popen_options(self) -> dict[str, Any]:
        return {}

    def _after_start(self) -> None:
        """Runs once the server is ready (create the database)."""

    # --- internals ---------------------------------------------------------------------------

    def _run(self, directory: Path, port: int) -> bool:
        """Start on ``port``; False if the port turned out to be taken, so the caller retries."""
        log_path = directory / "server.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                self._command(directory, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,  # not the caller's cwd, which a dropped-privilege child may not read
                # Its own process group: a Ctrl-C in the terminal goes to pytest, which then stops
                # the server in order, instead of killing it under the running tests.
                start_new_session=True,
                **self._popen_options(),
            )
        # From here on the process is cleaned up even if the caller forgets stop(): weakref
        # finalizers also run at interpreter exit.
        self._finalizer = weakref.finalize(self, _shutdown, process, self._stop_signal, directory)
        self.port = port
        deadline = time.monotonic() + self.timeout
        while True:
            # Exit first: a port taken by someone else makes the server exit at once, and
            # probing that someone else (who may never answer) would only waste time.
            if process.poll() is not None:
                self._finalizer.detach()  # the process is gone; keep the directory for retries
                self._finalizer = None
                output = log_path.read_text(errors="replace")
                if "already in use" in output:
                    log_path.write_text("")
                    return False
                raise ServerError(
                    f"{self._name} exited with status {process.returncode}:\n{output[-3000:]}"
                )
            if self._is_ready(directory, port):
                break
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self._name} did not accept connections on port {port} within "
                    f"{self.timeout}s:\n{self.log[-3000:]}"
                )
            time.sleep(0.01)
        self._after_start()
        return True
