"""``./dev demo``: send real email through the example site's production settings.

Part 1, sending at once: it starts two local servers on 127.0.0.1 - moto's Amazon SES endpoint
and an SMTP server with STARTTLS and AUTH - then runs the example site's ``manage.py`` in
subprocesses with ``DJANGO_SETTINGS_MODULE=example_site.settings.production`` and only
environment variables set, as a deployment would: once per transport (SES v2, SES v1, SMTP),
``sendtestemail`` and ``send_demo_email`` (text + HTML + attachment). It prints what each server
received.

Part 2, queued sending (``EMAIL_QUEUE=True``): it starts a local SES account (sendwell's FakeSES,
which reports a max send rate of 5 recipients/s through GetAccount and refuses calls over it),
queues a batch of 25 messages (``manage.py queue_demo_batch``, timed: it returns at once), starts
two ``manage.py db_worker`` processes and waits until the endpoint has every recipient and
``manage.py sendwell status`` shows everything sent. It prints the recipients the endpoint
received per second next to the limit, checks that none was lost, duplicated or refused, and that
no second held more than the limit; then creates the admin user demo/demo and counts the rows
the admin's message list shows (Django's test client, logged in).

``--count``, ``--rate``, ``--cc-every`` and ``--workers`` change part 2's batch, account rate,
second recipients and worker count. Nothing leaves this machine: the SES endpoints are local,
the keys are dummies. The database, ``.demo/db.sqlite3``, is recreated on each run. Every server
and worker it starts is stopped on exit, error or Ctrl-C (SIGTERM, then SIGKILL after 10 s);
the exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import email
import email.policy
import functools
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import boto3
import django
from dotenv import dotenv_values

from testservers.base import free_port
from testservers.smtp import LocalSMTPServer

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


def manage(
    args: Sequence[str],
    variant: Mapping[str, str],
    *,
    echo: bool = True,
    show_command: bool = True,
) -> tuple[str, str]:
    """Run ``example/manage.py ARGS`` with the given variables; return its stdout and stderr.

    The command and its output are printed (only its stderr with ``echo=False``)."""
    command = [sys.executable, "manage.py", *args]
    if show_command:
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
    output = result.stdout if echo or result.returncode else ""
    # Keep the first line's indentation (`sendwell status` right-aligns its statuses).
    output = (output + result.stderr).rstrip().lstrip("\n")
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


# --- part 2: the outbox, its workers and the account's send rate -----------------------------

# The "local SES account" of part 2: its limits, reported by GetAccount and enforced.
DEFAULT_RATE = 5.0
ACCOUNT_QUOTA = 50_000
DELIVERY_TIMEOUT = 60  # seconds the workers get to deliver the batch
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL
# db_worker: look for tasks every 0.2 s (default 1 s), start at once, never autoreload.
WORKER_OPTIONS = ("--interval", "0.2", "--no-startup-delay", "--no-reload")
SUPERUSER = ("demo", "demo")
ADMIN_URL_PATH = "/admin/sendwell/message/"
PENDING_STATUSES = frozenset({"queued", "sending", "deferred"})

# Run by `manage.py shell -c` with the settings `runserver` is shown with: log in as the demo
# superuser with Django's test client, fetch the admin's message list and count what it shows.
ADMIN_CHECK = r"""
import json, os, re
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from sendwell.models import Attempt, Message

tag = os.environ["SENDWELL_DEMO_TAG"]
client = Client(HTTP_HOST="localhost")
client.force_login(get_user_model().objects.get(username=os.environ["SENDWELL_DEMO_USER"]))
response = client.get(os.environ["SENDWELL_DEMO_PATH"])
page = response.content.decode()
table = page.partition('id="result_list"')[2].partition("</table>")[0]
rows = re.split(r"<tr[\s>]", table.partition("<tbody>")[2])[1:]
batch_rows = [row for row in rows if tag in row]
sent_by = {}
for worker, message in Attempt.objects.filter(
    outcome="sent", message__subject__contains=tag
).values_list("worker", "message"):
    sent_by.setdefault(worker.split(":")[-2], set()).add(message)
per_page = admin.site.get_model_admin(Message).list_per_page
print(json.dumps({
    "status": response.status_code,
    "expected_rows": min(Message.objects.count(), per_page),
    "rows": len(rows),
    "batch_rows": len(batch_rows),
    "batch_rows_sent": sum('sendwell-sent"' in row for row in batch_rows),
    "messages": Message.objects.count(),
    "sent_by_pid": {pid: len(messages) for pid, messages in sent_by.items()},
}))
"""


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    count: int = 25
    rate: float = DEFAULT_RATE
    cc_every: int = 0
    workers: int = 2


@dataclasses.dataclass(frozen=True)
class Received:
    """One SendEmail call the local SES account accepted."""

    message_id: str
    recipients: tuple[str, ...]
    at: float  # Unix time


def stop_processes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then SIGKILL whichever has not exited in time."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LocalSESAccount:
    """sendwell's FakeSES (``python -m testservers.fake_ses``) in a subprocess: an SES v2
    endpoint whose GetAccount reports a small max send rate, which it also enforces as SES does
    (``--enforce-rate``: a call that would put more recipients than the rate into one second is
    refused with "Maximum sending rate exceeded"). It records when each message arrived."""

    def __init__(self, log_file: Path, *, rate: float, quota: int, sender: str) -> None:
        self.log_file = log_file
        self.rate = rate
        self.quota = quota
        self.sender = sender
        self.endpoint_url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        command = [
            sys.executable,
            "-m",
            "testservers.fake_ses",
            "--port",
            "0",
            "--rate",
            f"{self.rate:g}",
            "--quota",
            str(self.quota),
            "--enforce-rate",
            "--verified",
            self.sender,
        ]
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
            )
        try:
            self.endpoint_url = self._first_line(timeout=30)
            if not self.endpoint_url.startswith("http://127.0.0.1:"):
                raise DemoError(f"FakeSES printed {self.endpoint_url!r}, not its URL")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _first_line(self, timeout: float) -> str:
        """FakeSES prints its URL first; read it without blocking past ``timeout``."""
        assert self._process is not None
        assert self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DemoError(
                    f"FakeSES did not print its URL in {timeout:g}s; see {self.log_file}"
                )
            ready, _, _ = select.select([descriptor], [], [], remaining)
            if ready:
                chunk = os.read(descriptor, 4096)
                if not chunk:
                    raise DemoError(f"FakeSES exited at start; see {self.log_file}")
                data += chunk
        return data.partition(b"\n")[0].decode().strip()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_processes([process])
            if process.stdout is not None:
                process.stdout.close()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.endpoint_url}{path}", timeout=10) as response:
            return json.loads(response.read())

    def received(self) -> list[Received]:
        """Every accepted call, with the Message-ID of the MIME it carried."""
        calls = []
        for item in self.get("/_fake/messages?raw=1"):
            headers = BytesHeaderParser(policy=email.policy.default).parsebytes(
                base64.b64decode(item["raw"])
            )
            calls.append(
                Received(
                    str(headers.get("Message-ID", "")),
                    tuple(item["destinations"]),
                    float(item["received_at"]),
                )
            )
        return calls


class Workers:
    """``manage.py db_worker`` processes: django-tasks-db's workers, which run sendwell's
    delivery task. Each logs to ``.demo/worker-N.log``; all are stopped on exit."""

    def __init__(self, count: int, variant: Mapping[str, str]) -> None:
        self.count = count
        self.variant = variant
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []
        self.log_files = [DEMO_DIR / f"worker-{number}.log" for number in range(1, count + 1)]

    def __enter__(self) -> Self:
        try:
            for number, log_file in enumerate(self.log_files, start=1):
                args = ["db_worker", *WORKER_OPTIONS, "--worker-id", f"demo-worker-{number}"]
                with log_file.open("wb") as log:
                    self.processes.append(
                        subprocess.Popen(
                            [sys.executable, "manage.py", *args],
                            cwd=EXAMPLE_DIR,
                            env=child_environment(self.variant),
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                        )
                    )
                self.pids.append(self.processes[-1].pid)
                detail(
                    f"worker {number}: pid {self.processes[-1].pid}, "
                    f"log {log_file.relative_to(REPO_DIR)}"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def check_running(self) -> None:
        for number, process in enumerate(self.processes, start=1):
            if process.poll() is not None:
                log = self.log_files[number - 1].relative_to(REPO_DIR)
                raise DemoError(f"worker {number} exited with {process.returncode}; see {log}")

    def name_of(self, pid: str) -> str:
        """``worker N`` for a worker's process id (sendwell records it in each attempt)."""
        for number, known in enumerate(self.pids, start=1):
            if str(known) == pid:
                return f"worker {number}"
        return f"process {pid}"

    def stop(self) -> None:
        processes, self.processes = self.processes, []
        stop_processes(processes)


def status_counts(output: str) -> dict[str, int]:
    """``manage.py sendwell status``'s ``<status>: <count>`` lines."""
    counts = {}
    for line in output.splitlines():
        match = re.fullmatch(r"\s*([a-z_]+): (\d+)", line)
        if match:
            counts[match[1]] = int(match[2])
    return counts


def wait_for_endpoint(
    ses: LocalSESAccount, workers: Workers, expected: int, started: float
) -> float:
    """Wait until the endpoint has accepted ``expected`` recipients; print progress every 2 s.
    Returns the seconds it took from ``started``."""
    deadline = started + DELIVERY_TIMEOUT
    next_report = started + 2
    while True:
        workers.check_running()
        accepted = sum(len(call["destinations"]) for call in ses.get("/_fake/messages"))
        now = time.monotonic()
        if accepted >= expected:
            return now - started
        if now > deadline:
            raise DemoError(
                f"after {DELIVERY_TIMEOUT}s the endpoint has {accepted} of {expected} recipients"
            )
        if now >= next_report:
            detail(f"  {now - started:4.1f}s: {accepted:>3} of {expected} recipients accepted")
            next_report += 2
        time.sleep(0.2)


def wait_for_outbox(variant: Mapping[str, str]) -> dict[str, int]:
    """Run ``manage.py sendwell status`` until nothing is queued, sending or deferred."""
    deadline = time.monotonic() + 20
    while True:
        output, _ = manage(["sendwell", "status"], variant)
        counts = status_counts(output)
        if not PENDING_STATUSES & {status for status, count in counts.items() if count}:
            return counts
        if time.monotonic() > deadline:
            raise DemoError(f"the outbox still has pending messages: {counts}")
        time.sleep(1)


def busiest_window(calls: Sequence[Received]) -> int:
    """The most recipients the endpoint accepted within any one second, counted as FakeSES and
    SES count (all calls in ``(t - 1 s, t]`` at each arrival ``t``)."""
    times = sorted((call.at, len(call.recipients)) for call in calls)
    busiest = 0
    for index, (at, _) in enumerate(times):
        busiest = max(busiest, sum(n for other, n in times[: index + 1] if other > at - 1.0))
    return busiest


def print_histogram(calls: Sequence[Received], rate: float) -> int:
    """Recipients accepted per second since the first one, next to the account's limit;
    returns the busiest second."""
    first = min(call.at for call in calls)
    per_second: dict[int, int] = {}
    for call in calls:
        second = int(call.at - first)
        per_second[second] = per_second.get(second, 0) + len(call.recipients)
    seconds = max(per_second) + 1
    width = max(int(rate), *per_second.values())
    scale = max(1.0, width / 50)  # at most 50 characters of bar
    for second in range(seconds):
        count = per_second.get(second, 0)
        bar = "#" * round(count / scale)
        over = "  OVER THE LIMIT" if count > rate else ""
        detail(
            f"second {second + 1:>2}: {bar:<{round(width / scale)}} {count:>3}"
            f"  (limit {rate:g}/s){over}"
        )
    return max(per_second.values())


@dataclasses.dataclass(frozen=True)
class Batch:
    """What ``queue_demo_batch`` queued."""

    tag: str  # in every subject: tells this run's messages apart
    messages: int
    expected: frozenset[tuple[str, str]]  # (Message-ID, recipient) pairs
    seconds: float  # how long the send() calls took


def queue_batch(options: BatchOptions, variant: Mapping[str, str]) -> Batch:
    step(f"queueing {options.count} messages with EMAIL_QUEUE=True (no worker is running)")
    show_variables(variant)
    tag = f"demo {uuid.uuid4().hex[:6]}"
    args = ["queue_demo_batch", "--count", str(options.count), "--tag", tag, "--json"]
    if options.cc_every:
        args += ["--cc-every", str(options.cc_every)]
    output, _ = manage(args, variant, echo=False)
    queued = json.loads(output)
    batch = Batch(
        tag=tag,
        messages=len(queued["messages"]),
        expected=frozenset(
            (item["message_id"], address)
            for item in queued["messages"]
            for address in item["recipients"]
        ),
        seconds=float(queued["seconds"]),
    )
    detail(
        f"{batch.messages} send() calls ({len(batch.expected)} recipients) returned in "
        f"{batch.seconds:.2f}s, {batch.seconds / batch.messages * 1000:.0f} ms each: each "
        "wrote its message to the outbox and a delivery task to the queue.\n"
        f"At {options.rate:g} recipients/s, sending them takes "
        f"{len(batch.expected) / options.rate:.1f}s or more."
    )
    counts = status_counts(manage(["sendwell", "status"], variant)[0])
    if counts.get("queued", 0) != batch.messages:
        raise DemoError(f"expected {batch.messages} queued messages, status shows {counts}")
    return batch


def check_endpoint(ses: LocalSESAccount, batch: Batch, rate: float) -> tuple[list[str], int]:
    """Print what the endpoint received per second and in total; return what went wrong and
    the most recipients it received within one second."""
    step(f"what the local SES account received, per second (limit {rate:g} recipients/s)")
    calls = ses.received()
    if not calls:
        return ["the endpoint received nothing"], 0
    stats = ses.get("/_fake/stats")
    busiest_second = print_histogram(calls, rate)
    pairs = [(call.message_id, address) for call in calls for address in call.recipients]
    received = set(pairs)
    duplicates = len(pairs) - len(received)
    lost = batch.expected - received
    unexpected = received - batch.expected
    refused: dict[str, int] = stats["refused"]
    window = busiest_window(calls)
    detail(
        f"sent: {len(received & batch.expected)} of {len(batch.expected)} recipients in "
        f"{len(calls)} SendEmail calls; lost: {len(lost)}; duplicates: {duplicates}; "
        f"not in the batch: {len(unexpected)}"
    )
    detail(
        f"most recipients in one second: {busiest_second} (in any 1-s window: {window}), "
        f"limit {rate:g}/s; calls refused by the endpoint: {sum(refused.values())}"
        + (f" {refused}" if refused else "")
    )
    problems = []
    if lost or unexpected:
        problems.append(f"{len(lost)} recipients lost, {len(unexpected)} not in the batch")
    if duplicates:
        problems.append(f"{duplicates} duplicate deliveries")
    if window > rate:
        problems.append(f"{window} recipients within one second, over the limit of {rate:g}/s")
    if refused or stats["faults_served"]:
        problems.append(f"the endpoint refused calls: {refused or stats['faults_served']}")
    return problems, window


def check_admin(batch: Batch, counts: Mapping[str, int], workers: Workers) -> list[str]:
    """Create the demo superuser; fetch the admin's message list as it and count its rows."""
    step("the records in the admin")
    manage(
        ["createsuperuser", "--noinput", "--username", SUPERUSER[0], "--email", SENDER],
        {"DJANGO_SUPERUSER_PASSWORD": SUPERUSER[1]},
    )
    print(f"    $ manage.py shell -c <log in as {SUPERUSER[0]}, GET {ADMIN_URL_PATH}>")
    output, _ = manage(
        ["shell", "--settings=example_site.settings.demo", "--no-imports", "-c", ADMIN_CHECK],
        {
            "SENDWELL_DEMO_TAG": batch.tag,
            "SENDWELL_DEMO_USER": SUPERUSER[0],
            "SENDWELL_DEMO_PATH": ADMIN_URL_PATH,
        },
        echo=False,
        show_command=False,
    )
    admin = json.loads(output)
    detail(
        f"HTTP {admin['status']}: the list shows {admin['rows']} messages "
        f"({admin['messages']} in the database), {admin['batch_rows']} of them from this "
        f"batch, {admin['batch_rows_sent']} of those marked sent"
    )
    sent_by = sorted((workers.name_of(pid), n) for pid, n in admin["sent_by_pid"].items())
    detail("the batch was sent by " + ", ".join(f"{name}: {n}" for name, n in sent_by))
    if (
        admin["status"] == 200
        and admin["messages"] == counts.get("sent")
        and admin["rows"] == admin["expected_rows"]
        and admin["batch_rows"] == admin["batch_rows_sent"] == min(batch.messages, admin["rows"])
    ):
        return []
    return [f"the admin does not list every message as sent: {admin}"]


def queued_sending(options: BatchOptions, base_variant: Mapping[str, str]) -> str:
    """Part 2: queue a batch with EMAIL_QUEUE=True, deliver it with db_worker processes at the
    local account's rate, check every recipient got exactly one copy, show it in the admin.
    Returns a one-line summary."""
    with contextlib.ExitStack() as stack:
        step(
            f"starting a local SES account: FakeSES, max send rate {options.rate:g} "
            f"recipients/s (enforced), {ACCOUNT_QUOTA} per 24 h"
        )
        ses = stack.enter_context(
            LocalSESAccount(
                DEMO_DIR / "fake-ses.log", rate=options.rate, quota=ACCOUNT_QUOTA, sender=SENDER
            )
        )
        detail(
            f"listening on {ses.endpoint_url}; sendwell reads these limits with SES v2 "
            "GetAccount and sends at 97% of the rate (SENDWELL['RATE_FRACTION'])"
        )
        variant = {**base_variant, "AWS_ENDPOINT_URL": ses.endpoint_url, "EMAIL_QUEUE": "True"}
        batch = queue_batch(options, variant)

        step(f"starting {options.workers} workers: manage.py db_worker {' '.join(WORKER_OPTIONS)}")
        started = time.monotonic()
        workers = stack.enter_context(Workers(options.workers, variant))
        took = wait_for_endpoint(ses, workers, len(batch.expected), started)
        detail(
            f"all {len(batch.expected)} recipients accepted {took:.1f}s after the workers started"
        )
        counts = wait_for_outbox(variant)
        step("stopping the workers")
        workers.stop()

        problems, busiest = check_endpoint(ses, batch, options.rate)
        step("stopping the local SES account")
    if set(counts) != {"sent"}:
        problems.append(f"not every message is sent: {counts}")
    problems += check_admin(batch, counts, workers)
    if problems:
        raise DemoError("queued sending: " + "; ".join(problems))
    return (
        f"{batch.messages} messages ({len(batch.expected)} recipients) queued in "
        f"{batch.seconds:.2f}s; {options.workers} workers delivered every recipient once in "
        f"{took:.1f}s, at most {busiest} per second (limit {options.rate:g}); none refused"
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
    manage(["sendtestemail", RECIPIENT], variant)
    test = expect_one(transport, received()[before:], "Test email from")
    output, _ = manage(["send_demo_email", RECIPIENT], variant)
    demo = expect_one(transport, received()[before + 1 :], "sendwell demo")
    check_demo_email_output(transport, output.strip(), demo)
    return [test, demo]


def run(options: BatchOptions) -> list[str]:
    """Both parts of the demo; returns a summary line for each."""
    step(
        f"sendwell demo: Python {platform.python_version()}, Django {django.get_version()}, "
        f"the example site in {EXAMPLE_DIR.relative_to(REPO_DIR)}/ with its production settings"
    )
    DEMO_DIR.mkdir(exist_ok=True)
    # A fresh database each run, so that what the outbox and the admin show is this run's.
    for suffix in ("", "-wal", "-shm"):
        DATABASE.with_name(DATABASE.name + suffix).unlink(missing_ok=True)
    deliveries: list[Delivery] = []
    step("part 1: sending at once (EMAIL_QUEUE=False), through SES v2, SES v1 and SMTP")
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

        step("where the SES limits in force came from (manage.py sendwell status)")
        status, _ = manage(["sendwell", "status"], ses_variant, echo=False)
        for line in status.splitlines():
            if line.startswith("ses:"):
                detail(line)

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
    step(f"part 1 delivered {len(deliveries)} messages")
    print_table(deliveries)
    print(
        "SES rows: the message id SES (moto) returned and recorded. SMTP rows: the Message-ID "
        "header.",
        flush=True,
    )

    step(
        f"part 2: queued sending (EMAIL_QUEUE=True): {options.count} messages, "
        f"{options.workers} db_worker processes, a local SES account allowing {options.rate:g}/s"
    )
    return [
        f"part 1: {len(deliveries)} messages sent at once through SES v2, SES v1 and SMTP",
        "part 2: " + queued_sending(options, ses_variant),
    ]


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the ExitStack, so the servers stop as on any other error.
    raise SystemExit(128 + signum)


def parse_arguments(argv: Sequence[str] | None) -> BatchOptions:
    parser = argparse.ArgumentParser(
        prog="./dev demo", description="Send email through the example site to local servers."
    )
    defaults = BatchOptions()
    parser.add_argument("--count", type=int, default=defaults.count, help="part 2's batch size")
    parser.add_argument(
        "--rate",
        type=float,
        default=defaults.rate,
        help="the local SES account's max send rate, recipients per second",
    )
    parser.add_argument(
        "--cc-every",
        type=int,
        default=defaults.cc_every,
        metavar="N",
        help="give every Nth message of the batch a second recipient (default: none)",
    )
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="db_worker processes to run"
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.rate <= 0 or args.cc_every < 0 or args.workers < 1:
        parser.error("--count, --rate and --workers must be positive, --cc-every at least 0")
    return BatchOptions(
        count=args.count, rate=args.rate, cc_every=args.cc_every, workers=args.workers
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    try:
        summary = run(options)
    except DemoError as error:
        print(f"\ndemo FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted; servers and workers stopped", file=sys.stderr)
        return 130
    except SystemExit:
        print("\ndemo terminated; servers and workers stopped", file=sys.stderr)
        raise
    step(f"demo passed in {time.monotonic() - started:.0f}s")
    print("\n".join(summary))
    print(
        "\nSee the records in the admin (log in as demo, password demo):\n"
        "    .venv/bin/python example/manage.py runserver --settings=example_site.settings.demo\n"
        f"    then open http://127.0.0.1:8000{ADMIN_URL_PATH}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
