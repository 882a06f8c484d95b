"""Real SMTP servers on 127.0.0.1 for the SMTP tests.

Use them with ``from tests.smtp_fixtures import *`` in a test module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testservers.smtp import LocalSMTPServer

__all__ = ["PASSWORD", "USERNAME", "implicit_tls_server", "plain_server", "submission_server"]

USERNAME = "smtp-user"
PASSWORD = "s3cret-Pa55word"  # a test-only password, asserted never to leak


@pytest.fixture
def plain_server() -> Iterator[LocalSMTPServer]:
    """A plain-text relay without TLS or AUTH (port-25 style)."""
    with LocalSMTPServer() as server:
        yield server


@pytest.fixture
def submission_server() -> Iterator[LocalSMTPServer]:
    """Like SES's port 587: STARTTLS required, then AUTH required, with a test CA."""
    with LocalSMTPServer(tls=True, auth=(USERNAME, PASSWORD), require_starttls=True) as server:
        yield server


@pytest.fixture
def implicit_tls_server() -> Iterator[LocalSMTPServer]:
    """Like SES's port 465: TLS from the first byte, then AUTH required."""
    with LocalSMTPServer(implicit_tls=True, auth=(USERNAME, PASSWORD)) as server:
        yield server
