"""A throw-away PostgreSQL cluster on 127.0.0.1 for tests and benchmarks (testservers.process)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testservers.base import LOCALHOST
from testservers.process import ServerError, ServerNotInstalled, ServerProcess

__all__ = ["PostgresServer"]

# Where Debian and Ubuntu install PostgreSQL's server binaries, one directory per major version.
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")


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


def _run_tool(command: list[str], what: str, **options: Any) -> None:
    """Run one of PostgreSQL's programs to completion; ServerError with its output if it fails."""
    result = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, **options
    )
    if result.returncode != 0:
        raise ServerError(f"{what} failed:\n{result.stdout}{result.stderr}")


def _world_searchable(path: Path) -> bool:
    """Whether every directory from / down to ``path`` lets other users pass through."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


class PostgresServer(ServerProcess):
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
        _run_tool(initdb, "initdb", cwd=directory, **self._popen_options())

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
        _run_tool(createdb, f"createdb {self.dbname}", env=self._popen_options()["env"])
