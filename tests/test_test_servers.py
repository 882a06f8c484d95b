"""The real Redis and PostgreSQL servers that tests and benchmarks start (testservers).

These need redis-server and PostgreSQL installed (``.ci/run`` installs them); they fail, not
skip, without them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import pytest_django
import redis

from tests.server_fixtures import postgres_server, redis_server  # noqa: F401
from testservers import postgres, process
from testservers.postgres import PostgresServer
from testservers.process import ServerNotInstalled
from testservers.redis import RedisServer


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except ConnectionRefusedError:
        return False


def test_redis_server_round_trip_then_stops() -> None:
    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        directory = server.directory
        assert directory is not None
        client = redis.Redis.from_url(server.url)
        try:
            assert client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            # No persistence: nothing is written to disk, ever.
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
        port = server.port
    assert not accepts_connections(port)
    assert not directory.exists()
    server.stop()  # a second stop is harmless


def test_postgres_server_skip_locked_then_stops() -> None:
    with PostgresServer(dbname="outbox_test") as server:
        port = server.port
        assert server.dsn == f"postgresql://postgres@127.0.0.1:{port}/outbox_test"
        directory = server.directory
        assert directory is not None
        with psycopg.connect(server.dsn, autocommit=True) as setup:
            assert setup.execute("SHOW fsync").fetchone() == ("off",)
            assert setup.execute("SHOW server_encoding").fetchone() == ("UTF8",)
            setup.execute("CREATE TABLE job (id int PRIMARY KEY, state text NOT NULL)")
            setup.execute("INSERT INTO job VALUES (1, 'queued'), (2, 'queued')")

        claim = (
            "SELECT id FROM job WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        first = psycopg.connect(server.dsn)  # each in its own transaction (autocommit off)
        second = psycopg.connect(server.dsn)
        try:
            assert first.execute(claim).fetchone() == (1,)
            # Row 1 is locked by the first worker's open transaction: the second skips it.
            assert second.execute(claim).fetchone() == (2,)
            # With both rows claimed, a third claim finds nothing rather than waiting.
            with psycopg.connect(server.dsn) as third:
                assert third.execute(claim).fetchone() is None
            # stop() while clients are mid-transaction must not hang (fast shutdown).
            server.stop()
        finally:
            first.close()
            second.close()
    assert not accepts_connections(port)
    assert not directory.exists()


def test_postgres_runs_as_unprivileged_user(postgres_server: PostgresServer) -> None:  # noqa: F811
    # PostgreSQL refuses root; under root the servers run as the postgres system user.
    with psycopg.connect(postgres_server.dsn) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert row is not None
        data_directory = Path(row[0])
        owner = data_directory.owner()
        assert owner != "root"


def test_redis_retries_when_the_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process grabs the "free" port between picking and binding it.
    taken = socket.create_server(("127.0.0.1", 0))
    taken_port = taken.getsockname()[1]
    ports = iter([taken_port])
    real_free_port = process.free_port
    monkeypatch.setattr(process, "free_port", lambda: next(ports, None) or real_free_port())
    with taken, RedisServer() as server:
        assert server.port != taken_port
        assert redis.Redis.from_url(server.url).ping()


def test_missing_redis_server_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerNotInstalled, match="apt-get install redis-server"):
        RedisServer()


def test_missing_postgres_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "DEBIAN_POSTGRES_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerNotInstalled, match="apt-get install postgresql"):
        PostgresServer()


def test_postgres_start_failure_is_reported_and_cleaned_up() -> None:
    server = PostgresServer(settings={"no_such_setting": "1"})
    with pytest.raises(process.ServerError, match="no_such_setting"):
        server.start()
    assert server.directory is None


def test_session_fixtures(
    redis_server: RedisServer,  # noqa: F811
    postgres_server: PostgresServer,  # noqa: F811
    django_db_blocker: pytest_django.DjangoDbBlocker,
) -> None:
    assert redis.Redis.from_url(redis_server.url).ping()

    # The Django settings entry works with Django's own PostgreSQL backend.
    from django.db.utils import ConnectionHandler  # noqa: PLC0415

    connections = ConnectionHandler({"default": postgres_server.django_database()})
    try:
        # pytest-django blocks every connection outside django_db tests; this one is ours.
        with django_db_blocker.unblock(), connections["default"].cursor() as cursor:
            cursor.execute("SELECT current_database(), current_user")
            assert cursor.fetchone() == ("sendwell", "postgres")
    finally:
        connections.close_all()
    assert postgres_server.django_database(name="other")["NAME"] == "other"

    # The Unix socket works too (trust authentication, like TCP).
    with psycopg.connect(
        host=postgres_server.socket_dir,
        port=postgres_server.port,
        user=postgres_server.user,
        dbname=postgres_server.dbname,
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_servers_reachable_from_another_process(
    redis_server: RedisServer,  # noqa: F811
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    # Worker processes get only the URL/DSN, like the outbox workers will.
    script = (
        "import sys, psycopg, redis\n"
        "redis.Redis.from_url(sys.argv[1]).set('from-child', 1)\n"
        "psycopg.connect(sys.argv[2]).execute('SELECT 1').fetchone()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, redis_server.url, postgres_server.dsn],
        check=True,
        timeout=60,
    )
    assert redis.Redis.from_url(redis_server.url).get("from-child") == b"1"
