"""Which database connection the synchronous path keeps its books on.

A synchronous send happens inside the caller's request, often inside its transaction
(``ATOMIC_REQUESTS``, or an ``atomic()`` block around ``send_mail()``). Two things must not live
and die with that transaction:

- the rate limiter's shared rows: written in it, their row locks would be held until the request
  ends, stalling every other sender (workers, other requests) on the account for that long;
- the record of what was sent: SES cannot take an email back, so a rollback must not erase it.

On PostgreSQL (and other databases with row-level locks) sendwell then uses a second connection
of its own to the same database, in autocommit, under the alias ``"<alias>__sendwell"``: it is
registered beside the project's aliases, so Django closes it with the others at the end of each
request. On SQLite a database has one writer at a time: a second connection would wait for the
caller's own transaction to end (here, in this thread: until the busy timeout), so there the
books stay in the caller's transaction, as they do inside a test case's transaction.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections

_SUFFIX = "__sendwell"


def bookkeeping_alias(alias: str = DEFAULT_DB_ALIAS) -> str:
    """``alias``, or sendwell's own connection to the same database inside a transaction."""
    connection = connections[alias]
    if not connection.in_atomic_block or connection.vendor == "sqlite":
        return alias
    # Under Django's TestCase (and pytest-django's django_db) every test runs in a transaction
    # that is rolled back afterwards: the books stay in it, so that each test's rows go with it
    # and the test database needs no second alias. (Atomic._from_testcase is what Django itself
    # checks for this, e.g. for durable blocks.)
    if any(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
        return alias
    own = alias + _SUFFIX
    if own not in connections.settings:
        # Copied from the live connection at first use, so that under a test runner it is the
        # test database's name, not the configured one.
        connections.settings[own] = {**connection.settings_dict, "ATOMIC_REQUESTS": False}
    return own
