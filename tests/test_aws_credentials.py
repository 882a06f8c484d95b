"""Credentials from boto3's default chain: an IAM role with rotating keys, as on ECS/EC2/Lambda.

An ECS-style container credentials endpoint is served on 127.0.0.1 (botocore accepts loopback
addresses in AWS_CONTAINER_CREDENTIALS_FULL_URI), so the same code path that reads a task role in
production runs here against a real HTTP server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.mail import EmailMessage

from sendwell import aws
from sendwell.backends import SESBackend
from sendwell.options import SESOptions
from tests.conftest import SENDER
from testservers.moto_ses import LocalSESServer


class CredentialsEndpoint:
    """Hands out a new temporary key pair on every request, each expiring in 5 minutes."""

    def __init__(self) -> None:
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.requests += 1
                expiration = datetime.now(UTC) + timedelta(minutes=5)
                body = json.dumps(
                    {
                        "AccessKeyId": f"ASIAROLE{endpoint.requests:08d}",
                        "SecretAccessKey": f"role-secret-{endpoint.requests}",
                        "Token": f"role-token-{endpoint.requests}",
                        "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/credentials/task"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def task_role(monkeypatch: pytest.MonkeyPatch) -> Iterator[CredentialsEndpoint]:
    endpoint = CredentialsEndpoint()
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url)
    aws.clear_clients()
    yield endpoint
    endpoint.close()


def role_options(ses: LocalSESServer) -> dict[str, object]:
    # What the IAM-role .env produces: a region and nothing else (plus the local endpoint).
    return {"region_name": "us-east-1", "endpoint_url": ses.endpoint_url}


def test_sends_with_the_task_role_and_no_keys(
    ses: LocalSESServer, task_role: CredentialsEndpoint
) -> None:
    backend = SESBackend(alias="role", **role_options(ses))
    assert backend.send_messages([EmailMessage("Hi", "Body", SENDER, ["to@example.net"])]) == 1
    assert len(ses.sent_messages()) == 1
    assert task_role.requests >= 1


def test_rotating_credentials_are_refreshed_by_the_shared_client(
    ses: LocalSESServer, task_role: CredentialsEndpoint
) -> None:
    backend = SESBackend(alias="role", **role_options(ses))
    client = backend.transport.client
    for _ in range(3):
        backend.send_messages([EmailMessage("Hi", "Body", SENDER, ["to@example.net"])])
    # Keys that expire within botocore's refresh window are fetched again before use, by the
    # same long-lived client: sendwell never needs a new client to pick up rotated keys.
    assert task_role.requests >= 3
    assert SESBackend(alias="role", **role_options(ses)).transport.client is client
    assert len(ses.sent_messages()) == 3


def test_credential_source_reports_the_role(
    ses: LocalSESServer, task_role: CredentialsEndpoint
) -> None:
    assert aws.credential_source(SESOptions(region_name="us-east-1")) == "container-role"
    keys = SESOptions(region_name="us-east-1", access_key_id="AKIA", secret_access_key="s")
    assert aws.credential_source(keys) == "explicit"


def test_no_credentials_anywhere() -> None:
    assert aws.credential_source(SESOptions(region_name="us-east-1")) is None
