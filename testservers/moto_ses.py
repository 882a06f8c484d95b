"""A local Amazon SES endpoint for the tests, the demo and the benchmarks: moto's server, in a
subprocess.

It is a real HTTP endpoint on 127.0.0.1: boto3 signs and sends real requests to it, and what it
accepted is read back over HTTP (``/moto-api/data.json``), never from sendwell's own objects.
Needs the ``test`` extra (``moto[server]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import email
import email.policy
import json
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3

from testservers.base import LOCALHOST, TestServer, free_port, stop_process

DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"  # noqa: S105 - moto accepts any key


@dataclasses.dataclass(frozen=True)
class SentRawMessage:
    """One message moto accepted through SendEmail (v2, raw) or SendRawEmail (v1)."""

    message_id: str
    source: str
    # moto appends the To/Cc/Bcc header addresses to the envelope recipients it was given
    destinations: tuple[str, ...]
    raw: bytes

    @property
    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class LocalSESServer(TestServer):
    """``with LocalSESServer() as ses: ses.endpoint_url, ses.verify(...), ses.sent_messages()``.

    moto's own output goes to ``log_file`` if one is given (the demo keeps it), else nowhere.
    """

    def __init__(
        self, region: str = "us-east-1", port: int | None = None, log_file: Path | None = None
    ) -> None:
        self.region = region
        self.port = port or free_port()
        self.endpoint_url = f"http://{LOCALHOST}:{self.port}"
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with contextlib.ExitStack() as files:
            log: Any = subprocess.DEVNULL
            if self.log_file is not None:
                log = files.enter_context(self.log_file.open("wb"))
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if self.log_file is not None else subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise RuntimeError(f"moto server exited with {code}{self._see_log()}")
            try:
                self._get("/moto-api/data.json")
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"moto server did not start on {self.endpoint_url}{self._see_log()}"
                    ) from exc
                time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def _see_log(self) -> str:
        return f"; see {self.log_file}" if self.log_file is not None else ""

    def client(self, service: str = "ses") -> Any:
        session = boto3.session.Session(
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            region_name=self.region,
        )
        return session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def verify(self, *identities: str) -> None:
        """Verify sender addresses or domains (moto verifies at once)."""
        client = self.client("ses")
        for identity in identities:
            if "@" in identity:
                client.verify_email_identity(EmailAddress=identity)
            else:
                client.verify_domain_identity(Domain=identity)

    def reset(self) -> None:
        """Forget everything (identities and messages): moto's own reset endpoint."""
        url = f"{self.endpoint_url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 - our loopback server
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def sent_messages(self) -> list[SentRawMessage]:
        data = json.loads(self._get("/moto-api/data.json"))
        return [
            SentRawMessage(
                message_id=item["id"],
                source=item["source"],
                destinations=tuple(item["destinations"]),
                raw=item["raw_data"].encode("utf-8"),
            )
            for item in data.get("ses", {}).get("RawMessage", [])
        ]

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.endpoint_url}{path}", timeout=10) as response:  # noqa: S310
            body: bytes = response.read()
            return body
