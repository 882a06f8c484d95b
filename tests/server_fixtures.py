"""Session-wide Redis and PostgreSQL servers (real ones, on 127.0.0.1) for tests that need them.

Import the fixtures into a test module (or a conftest.py)::

    from tests.server_fixtures import postgres_server, redis_server  # noqa: F401

Each server starts once per test session, on first use, and is stopped at the end. Tests share
it, so they must not rely on it being empty: use their own keys, tables or databases.

A missing redis-server or PostgreSQL is a test *error* with the install command, never a skip:
a skipped test would let CI look green while testing nothing (.ci/run installs both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testservers.postgres import PostgresServer
from testservers.process import ServerNotInstalled
from testservers.redis import RedisServer

__all__ = ["postgres_server", "redis_server"]


def _serve[S: (RedisServer, PostgresServer)](make: Callable[[], S]) -> Iterator[S]:
    """``make()`` a server and run it for the session; missing binaries fail the test."""
    try:
        server = make()
    except ServerNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A ``redis-server`` without persistence; connect with ``redis_server.url``."""
    yield from _serve(RedisServer)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL cluster with database ``sendwell``; see ``.dsn`` and
    ``.django_database()``."""
    yield from _serve(PostgresServer)
