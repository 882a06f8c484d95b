"""``./dev demo``: send real email through the example site's production settings.

It starts two local servers on 127.0.0.1 - moto's Amazon SES endpoint and an SMTP server with
STARTTLS and AUTH - then runs the example site's ``manage.py`` in subprocesses with
``DJANGO_SETTINGS_MODULE=example_site.settings.production`` and only environment variables set, as a
deployment would: once per transport (SES v2, SES v1, SMTP), ``sendtestemail`` and
``send_demo_email`` (text + HTML + attachment). Finally it prints what each server received.

Nothing leaves this machine: the SES endpoint is moto's, the keys are dummies. Every server it
starts is stopped on exit, error or Ctrl-C; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email
import email.policy
import functools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import boto3
import django
from dotenv import dotenv_values

from sendwell.testing.smtp import LocalSMTPServer

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_DIR = EXAMPLE_DIR.parent
DEMO_DIR = REPO_DIR / ".demo"
DATABASE = DEMO_DIR / "db.sqlite3"

SENDER = "demo@example.com"
SENDER_HEADER = f"sendwell demo <{SENDER}>"
RECIPIENT = "you@example.net"
SMTP_LOGIN = ("demo-user", "demo-password")
REGION = "us-east-1"
# moto accepts any key; these only have to look like keys.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"
COMMAND_TIMEOUT = 120

# Every variable sendwell's email_settings() reads: a stray value in the caller's shell or in
# example/.env must not change what the demo shows.
EMAIL_VARIABLES = (
    "USE_SES",
    "EMAIL_QUEUE",
    "EMAIL_FAILOVER",
    "AWS_SES_REGION_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SES_CONFIGURATION_SET",
    "USE_SES_V2",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SESV2",
    "AWS_ENDPOINT_URL_SES",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_TIMEOUT",
    "EMAIL_SSL_CAFILE",
    "DEFAULT_FROM_EMAIL",
    "SERVER_EMAIL",
)
SITE_VARIABLES = ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE")


class DemoError(Exception):
    """A step failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One message as a server received it."""

    transport: str
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage


# --- the local SES endpoint ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalSES:
    """moto's server (``moto_server -H 127.0.0.1 -p PORT``) in a subprocess: a real HTTP endpoint
    that boto3 signs requests for, whose record of accepted messages is read back over HTTP."""

    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                self.stop()
                raise DemoError(f"moto server exited at start; see {self.log_file}")
            try:
                self._get("/moto-api/data.json")
                return self
            except OSError as error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise DemoError(f"moto server did not answer on {self.endpoint_url}") from error
                time.sleep(0.1)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def verify_email_identity(self, address: str) -> None:
        client: Any = boto3.client(
            "ses",
            region_name=REGION,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=DUMMY_ACCESS_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        )
        client.verify_email_identity(EmailAddress=address)

    def deliveries(self, transport: str) -> list[Delivery]:
        """Every message moto accepted (SendEmail v2 raw content and SendRawEmail v1 both land
        in its ``ses`` / ``RawMessage`` record), oldest first."""
        data = json.loads(self._get("/moto-api/data.json"))
        deliveries = []
        for item in data.get("ses", {}).get("RawMessage", []):
            parsed = email.message_from_string(item["raw_data"], policy=email.policy.default)
            if not isinstance(parsed, EmailMessage):
                raise DemoError("moto returned a message that does not parse")
            deliveries.append(
                Delivery(transport, item["id"], item["source"], tuple(item["destinations"]), parsed)
            )
        return deliveries

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.endpoint_url}{path}", timeout=10) as response:
            body: bytes = response.read()
            return body


# --- output ----------------------------------------------------------------------------------

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def step(text: str) -> None:
    print(f"\n{BOLD}==> {text}{RESET}", flush=True)


def detail(text: str) -> None:
    print(textwrap.indent(text.rstrip(), "    "), flush=True)


# --- environment -----------------------------------------------------------------------------


def child_environment(variant: Mapping[str, str]) -> dict[str, str]:
    """The environment for one ``manage.py`` run: the caller's, minus anything AWS or email,
    plus the site's throw-away values and ``variant`` (the guide's variables for a transport)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in EMAIL_VARIABLES and key not in SITE_VARIABLES
    }
    # example/.env is read by the production settings too; an empty value means "not set" to
    # sendwell, so blank out whatever the file sets that this variant does not.
    env_file = EXAMPLE_DIR / ".env"
    if env_file.is_file():
        for key in dotenv_values(env_file):
            if key in EMAIL_VARIABLES or key in SITE_VARIABLES:
                env[key] = ""
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_site.settings.production",
            "SECRET_KEY": "sendwell-demo-only-not-secret",
            "DEBUG": "False",
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "DATABASE": str(DATABASE),
            "DEFAULT_FROM_EMAIL": SENDER_HEADER,
            "SERVER_EMAIL": SENDER,
            # Never look for real credentials or at the EC2 instance metadata service.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(variant)
    return env


def show_variables(variant: Mapping[str, str]) -> None:
    shown = []
    for key, value in variant.items():
        secret = "SECRET" in key or "PASSWORD" in key
        shown.append(f"{key}={'********' if secret else value}")
    detail("environment: " + " ".join(shown))


def manage(args: Sequence[str], variant: Mapping[str, str]) -> tuple[str, str]:
    """Run ``example/manage.py ARGS`` with the given variables; return its stdout and stderr."""
    command = [sys.executable, "manage.py", *args]
    print(f"    $ manage.py {' '.join(args)}", flush=True)
    try:
        result = subprocess.run(
            command,
            cwd=EXAMPLE_DIR,
            env=child_environment(variant),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DemoError(f"manage.py {args[0]} did not finish in {COMMAND_TIMEOUT}s") from error
    output = (result.stdout + result.stderr).strip()
    if output:
        detail(textwrap.indent(output, "  "))
    if result.returncode != 0:
        raise DemoError(f"manage.py {args[0]} exited with {result.returncode} (output above)")
    return result.stdout, result.stderr


# --- what the servers received ---------------------------------------------------------------


def describe_parts(message: EmailMessage) -> str:
    """``plain+html, report.csv``: the body parts' subtypes, then attachment names."""
    bodies: list[str] = []
    attachments: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            attachments.append(part.get_filename() or part.get_content_type())
        else:
            bodies.append(part.get_content_subtype())
    return ", ".join(["+".join(bodies) or "-", *attachments])


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def unique(items: Sequence[str]) -> list[str]:
    # moto adds the To/Cc addresses to the envelope destinations it was given: show each once.
    return list(dict.fromkeys(items))


def print_table(deliveries: Sequence[Delivery]) -> None:
    header = ("transport", "message id", "from", "to", "subject", "parts, attachments")
    rows = [
        (
            d.transport,
            shorten(d.message_id.strip("<>"), 24),
            parseaddr(str(d.message.get("From", d.sender)))[1],
            ", ".join(unique([parseaddr(r)[1] for r in d.recipients])),
            shorten(str(d.message.get("Subject", "")), 34),
            describe_parts(d.message),
        )
        for d in deliveries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for index, row in enumerate([header, *rows]):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))


def expect_one(transport: str, new: Sequence[Delivery], subject_start: str) -> Delivery:
    if len(new) != 1:
        raise DemoError(f"{transport}: expected 1 new message at the server, found {len(new)}")
    delivery = new[0]
    subject = str(delivery.message.get("Subject", ""))
    if not subject.startswith(subject_start):
        raise DemoError(f"{transport}: delivered subject {subject!r}, expected {subject_start!r}…")
    if RECIPIENT not in " ".join(delivery.recipients):
        raise DemoError(
            f"{transport}: {RECIPIENT} is not among the recipients {delivery.recipients}"
        )
    return delivery


def smtp_deliveries(smtp: LocalSMTPServer, transport: str) -> list[Delivery]:
    return [
        Delivery(
            transport, str(m.message.get("Message-ID", "-")), m.sender, m.recipients, m.message
        )
        for m in smtp.messages
    ]


def check_demo_email_output(transport: str, output: str, delivery: Delivery) -> None:
    """send_demo_email prints the Message-ID it set and the SES message id the backend got back;
    both must match what the server recorded."""
    fields = output.split()
    if len(fields) != 3 or fields[0] != "sent":
        raise DemoError(f"{transport}: unexpected send_demo_email output {output!r}")
    message_id, ses_id = fields[1], fields[2].removeprefix("ses_message_id=")
    if str(delivery.message.get("Message-ID", "")) != message_id:
        raise DemoError(f"{transport}: the server received a different Message-ID")
    if transport.startswith("SES") and ses_id != delivery.message_id:
        raise DemoError(
            f"{transport}: the backend reported SES message id {ses_id}, "
            f"moto recorded {delivery.message_id}"
        )


# --- the demo --------------------------------------------------------------------------------


def send_both(
    transport: str, variant: Mapping[str, str], received: Callable[[], list[Delivery]]
) -> list[Delivery]:
    """``sendtestemail``, then ``send_demo_email``; ``received()`` reads the server's record.

    Both servers record a message before they answer the client, so it is there when the
    command has exited.
    """
    show_variables(variant)
    before = len(received())
    _, errors = manage(["sendtestemail", RECIPIENT], variant)
    if "could not read the SES sending quota" in errors:
        detail(
            "(expected here: moto does not implement SES v2 GetAccount, so sendwell uses its "
            "fallback limits, as it would with an IAM policy that denies ses:GetAccount)"
        )
    test = expect_one(transport, received()[before:], "Test email from")
    output, _ = manage(["send_demo_email", RECIPIENT], variant)
    demo = expect_one(transport, received()[before + 1 :], "sendwell demo")
    check_demo_email_output(transport, output.strip(), demo)
    return [test, demo]


def run() -> list[Delivery]:
    step(
        f"sendwell demo: Python {platform.python_version()}, Django {django.get_version()}, "
        f"the example site in {EXAMPLE_DIR.relative_to(REPO_DIR)}/ with its production settings"
    )
    DEMO_DIR.mkdir(exist_ok=True)
    deliveries: list[Delivery] = []
    with contextlib.ExitStack() as servers:
        step("starting a local Amazon SES endpoint (moto server)")
        ses = servers.enter_context(LocalSES(DEMO_DIR / "moto.log"))
        detail(f"listening on {ses.endpoint_url} (log: {ses.log_file.relative_to(REPO_DIR)})")
        ses.verify_email_identity(SENDER)
        detail(f"verified the sender identity {SENDER} (VerifyEmailIdentity, {REGION})")

        step("starting a local SMTP server (STARTTLS required, then AUTH)")
        smtp = servers.enter_context(
            LocalSMTPServer(tls=True, auth=SMTP_LOGIN, require_starttls=True)
        )
        if smtp.ca_file is None:
            raise DemoError("the SMTP server started without a certificate")
        detail(f"listening on {smtp.host}:{smtp.port}, certificate authority {smtp.ca_file}")

        step(f"migrating the SQLite database {DATABASE.relative_to(REPO_DIR)}")
        manage(["migrate", "--noinput", "-v", "0"], {})

        ses_variant = {
            "USE_SES": "True",
            "AWS_SES_REGION_NAME": REGION,
            "AWS_ENDPOINT_URL": ses.endpoint_url,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        }
        for transport, use_v2 in (("SES v2", "True"), ("SES v1", "False")):
            step(f"sending through {transport} (sendwell.backends.SESBackend)")
            deliveries += send_both(
                transport,
                {**ses_variant, "USE_SES_V2": use_v2},
                functools.partial(ses.deliveries, transport),
            )

        step("sending through SMTP (sendwell.backends.SMTPBackend)")
        smtp_variant = {
            "USE_SES": "False",
            "EMAIL_HOST": smtp.host,
            "EMAIL_PORT": str(smtp.port),
            "EMAIL_USE_TLS": "True",
            "EMAIL_HOST_USER": SMTP_LOGIN[0],
            "EMAIL_HOST_PASSWORD": SMTP_LOGIN[1],
            "EMAIL_SSL_CAFILE": smtp.ca_file,
            "EMAIL_TIMEOUT": "10",
        }
        deliveries += send_both(
            "SMTP", smtp_variant, functools.partial(smtp_deliveries, smtp, "SMTP")
        )
        for received in smtp.messages:
            if not received.tls or received.login != SMTP_LOGIN[0]:
                raise DemoError("SMTP: a message arrived without STARTTLS or without AUTH")
        detail(f"both SMTP messages arrived over STARTTLS, authenticated as {SMTP_LOGIN[0]}")

        step("stopping the servers")
    return deliveries


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the ExitStack, so the servers stop as on any other error.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    try:
        deliveries = run()
    except DemoError as error:
        print(f"\ndemo FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted; servers stopped", file=sys.stderr)
        return 130
    except SystemExit:
        print("\ndemo terminated; servers stopped", file=sys.stderr)
        raise
    step(f"delivered {len(deliveries)} messages in {time.monotonic() - started:.1f}s")
    print_table(deliveries)
    print(
        "\nSES rows: the message id SES (moto) returned and recorded. SMTP rows: the Message-ID "
        "header.\nBrowse the site: cd example && ../.venv/bin/python manage.py runserver "
        "--settings=example_site.settings.demo"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
