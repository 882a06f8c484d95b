"""A throw-away ``redis-server`` on 127.0.0.1 for tests and benchmarks (see testservers.process)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from testservers.base import LOCALHOST
from testservers.process import ServerNotInstalled, ServerProcess

__all__ = ["RedisServer"]


class RedisServer(ServerProcess):
    """``redis-server`` on 127.0.0.1 and a free port, without persistence (no RDB, no AOF)."""

    _name = "redis"

    def __init__(self, *, timeout: float = 30.0) -> None:
        super().__init__(timeout)
        executable = shutil.which("redis-server")
        if executable is None:
            raise ServerNotInstalled(
                "redis-server is not on PATH; install redis-server: apt-get install redis-server"
            )
        self.executable = executable

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def _command(self, directory: Path, port: int) -> list[str]:
        return [
            self.executable,
            "--bind", LOCALHOST,
            "--port", str(port),
            "--dir", str(directory),
            "--save", "",  # no snapshots
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "",  # to stdout, which is server.log
        ]  # fmt: skip

    def _is_ready(self, directory: Path, port: int) -> bool:
        # A connection alone is not enough: Redis listens before it has finished starting.
        # A short timeout: a silent answer means "not yet" (or not our server), so ask again.
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.25) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
