"""Real, throw-away Redis and PostgreSQL servers on 127.0.0.1 for tests and benchmarks.

Each runs the distribution's own server binary as a child process, on a free port, with every
file in a private temporary directory that :meth:`stop` deletes, and tuned for speed rather than
durability (nothing here is worth keeping)::

    with RedisServer() as redis_server, PostgresServer() as postgres:
        ...  # redis.Redis.from_url(redis_server.url); psycopg.connect(postgres.dsn)
        # DATABASES = {"default": postgres.django_database()}

The binaries come from the system (``apt-get install redis-server postgresql``); nothing is
downloaded. This module imports neither Django nor any client library.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["PostgresServer", "RedisServer", "ServerError", "ServerNotInstalled"]

LOCALHOST = "127.0.0.1"
# Where Debian and Ubuntu install PostgreSQL's server binaries, one directory per major version.
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
# A port picked free can be taken by someone else before the server binds it; then the server
# exits with "Address already in use" and we try another port this many times in all.
_PORT_ATTEMPTS = 5


class ServerError(RuntimeError):
    """A test server failed to start."""


class ServerNotInstalled(ServerError):
    """The server's binaries are not installed; the message says how to install them."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the one helper for tests, the demo
    and the benchmarks). Free when this returns; a server that starts on it later retries
    another if something took it meanwhile (see :meth:`_Server.start`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _shutdown(process: subprocess.Popen[bytes], stop_signal: int, directory: Path) -> None:
    """Stop ``process`` (``stop_signal``, then SIGKILL after 30 s) and delete ``directory``."""
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(directory, ignore_errors=True)


class _ServerProcess:
    """Start/stop plumbing shared by both servers: a temp dir, a child process, its log."""

    _name = "server"
    _stop_signal = signal.SIGTERM

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.host = LOCALHOST
        self.port = 0
        self.directory: Path | None = None
        """The private temporary directory (data, log, sockets); deleted by :meth:`stop`."""
        self._finalizer: weakref.finalize[..., _ServerProcess] | None = None

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


class RedisServer(_ServerProcess):
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


def _find_postgres_bindir() -> Path:
    """The directory with initdb, postgres and createdb: Debian's newest, PATH, pg_config."""
    needed = ("initdb", "postgres", "createdb")

    def complete(directory: Path) -> bool:
        return all(os.access(directory / name, os.X_OK) for name in needed)

    def version(directory: Path) -> tuple[int, ...]:
        # /usr/lib/postgresql/15/bin -> (15,); 9.6 -> (9, 6).
        return tuple(int(part) for part in directory.parent.name.split(".") if part.isdigit())

    # Debian/Ubuntu keep the server binaries off PATH; take the newest version installed.
    candidates = sorted(DEBIAN_POSTGRES_ROOT.glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    for directory in candidates:
        if complete(directory):
            return directory
    raise ServerNotInstalled(
        "PostgreSQL server binaries (initdb, postgres, createdb) were found neither in "
        "/usr/lib/postgresql/*/bin, nor on PATH, nor in `pg_config --bindir`; "
        "install PostgreSQL: apt-get install postgresql"
    )


def _world_searchable(path: Path) -> bool:
    """Whether every directory from / down to ``path`` lets other users pass through."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


class PostgresServer(_ServerProcess):
    """A disposable PostgreSQL cluster on 127.0.0.1 and a free port, with one empty database.

    The cluster is made with ``initdb`` (trust authentication, UTF8, C locale) in a temporary
    directory and run with ``fsync``, ``synchronous_commit`` and ``full_page_writes`` off: fast,
    and lost on a crash, which does not matter here. ``settings`` adds or overrides server
    settings (``-c name=value``), e.g. ``{"fsync": "on"}`` for a benchmark that wants durability.

    PostgreSQL refuses to run as root, so under root initdb and postgres run as the ``postgres``
    system user (which the Debian package creates) and the directory is given to that user.
    """

    _name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, disconnect clients.
    # (SIGTERM, "smart", would wait for every client - a leaked connection would hang stop().)
    _stop_signal = signal.SIGINT

    def __init__(
        self,
        *,
        dbname: str = "sendwell",
        settings: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(timeout)
        self.bindir = _find_postgres_bindir()
        self.user = "postgres"  # the superuser initdb creates (--username)
        self.dbname = dbname
        self.settings = {
            "listen_addresses": LOCALHOST,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(settings or {}),
        }
        self._run_as = self._system_user() if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        """A libpq URL: ``postgresql://postgres@127.0.0.1:PORT/DBNAME``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def socket_dir(self) -> str:
        """The directory of the server's Unix socket (a libpq ``host`` too)."""
        if self.directory is None:
            raise ServerError("the postgres server is not running")
        return str(self.directory / "sockets")

    def django_database(self, name: str | None = None) -> dict[str, Any]:
        """A ``DATABASES`` entry for this server and database ``name`` (default: :attr:`dbname`).

        Django's test runner and pytest-django create and drop ``test_<NAME>`` themselves.
        """
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name or self.dbname,
            "USER": self.user,
            "PASSWORD": "",
            "HOST": self.host,
            "PORT": str(self.port),
        }

    # --- internals ---------------------------------------------------------------------------

    @staticmethod
    def _system_user() -> str:
        import pwd  # noqa: PLC0415 - POSIX only, and only needed under root

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServerNotInstalled(
                "PostgreSQL refuses to run as root, and there is no 'postgres' user to run it "
                "as; install PostgreSQL (apt-get install postgresql creates the user) or run "
                "the tests as an ordinary user"
            ) from None
        return "postgres"

    def _make_directory(self) -> Path:
        if self._run_as is None:
            return super()._make_directory()
        # The postgres user must be able to reach the directory: a TMPDIR under /root is not.
        parent = next(
            (p for p in (Path(tempfile.gettempdir()), Path("/tmp")) if _world_searchable(p)),  # noqa: S108
            None,
        )
        if parent is None:
            raise ServerError(f"neither {tempfile.gettempdir()} nor /tmp is reachable by postgres")
        directory = Path(tempfile.mkdtemp(prefix="sendwell-postgres-", dir=parent))
        shutil.chown(directory, self._run_as, self._run_as)
        return directory

    def _popen_options(self) -> dict[str, Any]:
        # PG* variables of the caller (PGDATA, PGPORT, PGOPTIONS...) must not reach our
        # commands; LC_ALL=C keeps messages in English and initdb from asking for locales.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        options: dict[str, Any] = {"env": env}
        if self._run_as is not None:
            # Drop to the postgres user in the child itself (not through runuser/su), so the
            # process we signal is the postmaster; extra_groups=[] sheds root's groups too.
            options.update(user=self._run_as, group=self._run_as, extra_groups=[])
        return options

    def _prepare(self, directory: Path) -> None:
        (directory / "sockets").mkdir()
        if self._run_as is not None:
            shutil.chown(directory / "sockets", self._run_as, self._run_as)
        initdb = [
            str(self.bindir / "initdb"),
            "--pgdata", str(directory / "data"),
            "--username", self.user,
            "--auth", "trust",  # local socket, 127.0.0.1 and ::1: no passwords in tests
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",  # skip flushing the new files to disk: durability is not wanted here
        ]  # fmt: skip
        result = subprocess.run(
            initdb,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=directory,
            check=False,
            **self._popen_options(),
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _command(self, directory: Path, port: int) -> list[str]:
        command = [
            str(self.bindir / "postgres"),
            "-D", str(directory / "data"),
            "-p", str(port),
            "-k", str(directory / "sockets"),
        ]  # fmt: skip
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _is_ready(self, directory: Path, port: int) -> bool:
        # What `pg_ctl start --wait` checks: the postmaster writes "ready" as the 8th line of
        # postmaster.pid once it accepts connections (before that, clients get "the database
        # system is starting up"). A stale file cannot fool it: the cluster is brand new.
        try:
            lines = (directory / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _after_start(self) -> None:
        if self.dbname == "postgres":  # initdb made that one
            return
        # createdb is a client: it runs as whoever we are and connects over TCP (trust auth).
        createdb = [
            str(self.bindir / "createdb"),
            "--host", self.host,
            "--port", str(self.port),
            "--username", self.user,
            "--no-password",
            self.dbname,
        ]  # fmt: skip
        result = subprocess.run(
            createdb,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            env=self._popen_options()["env"],
        )
        if result.returncode != 0:
            raise ServerError(f"createdb {self.dbname} failed:\n{result.stdout}{result.stderr}")
