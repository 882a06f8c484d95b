"""Shared fixtures: real local servers on 127.0.0.1, and isolation from any real AWS account."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Never let boto3 look for real credentials or call the instance metadata service (169.254.169.254):
# tests talk only to servers they start on 127.0.0.1. Set before any boto3 session exists.
for _name in list(os.environ):
    if _name.startswith("AWS_"):
        del os.environ[_name]
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_CONFIG_FILE"] = os.devnull

from sendwell import aws, quota  # noqa: E402
from tests.mailers import SES, mailer_settings, ses_options  # noqa: E402
from testservers.fake_ses import FakeSES  # noqa: E402
from testservers.moto_ses import LocalSESServer  # noqa: E402

SENDER = "sender@example.com"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LocalSESServer]:
    with LocalSESServer() as server:
        yield server


@pytest.fixture
def ses(moto_server: LocalSESServer) -> LocalSESServer:
    """The moto SES endpoint, emptied, with example.com (so every @example.com sender) verified."""
    moto_server.reset()
    moto_server.verify("example.com", SENDER)
    return moto_server


@pytest.fixture
def fake_ses() -> Iterator[FakeSES]:
    """FakeSES (an SES endpoint that behaves like SES) with example.com verified."""
    with FakeSES(verified_identities={"example.com"}) as server:
        yield server


@pytest.fixture
def ses_mailer(fake_ses: FakeSES) -> Iterator[FakeSES]:
    """FakeSES as the default mailer's SES endpoint (sendwell.backends.SESBackend)."""
    with mailer_settings(SES, **ses_options(fake_ses)):
        yield fake_ses


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    yield
    aws.clear_clients()
    quota.clear_cache()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every sendwell backend records what it sends, so every test may use the database.

    Tests that send from several threads or processes mark themselves
    ``django_db(transaction=True)``: other connections cannot see rows inside a test transaction.
    """
    for item in items:
        if item.get_closest_marker("django_db") is None:
            item.add_marker(pytest.mark.django_db)
