"""What ``example/demo.py`` reads back from the local servers, checks and prints: the messages
each server received, as a table; the local SES account's calls per second; the admin's list."""

from __future__ import annotations

import dataclasses
import email.policy
import json
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import parseaddr

from demo_run import RECIPIENT, SENDER, DemoError, Workers, detail, manage, step

from testservers.fake_ses import FakeSESProcess
from testservers.moto_ses import LocalSESServer
from testservers.smtp import LocalSMTPServer


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One message as a server received it."""

    transport: str
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage


def moto_deliveries(ses: LocalSESServer, transport: str) -> list[Delivery]:
    """Every message moto accepted (SendEmail v2 raw content and SendRawEmail v1 both land in
    its record), oldest first."""
    return [
        Delivery(transport, m.message_id, m.source, m.destinations, m.parsed)
        for m in ses.sent_messages()
    ]


def smtp_deliveries(smtp: LocalSMTPServer, transport: str) -> list[Delivery]:
    return [
        Delivery(
            transport, str(m.message.get("Message-ID", "-")), m.sender, m.recipients, m.message
        )
        for m in smtp.messages
    ]


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


# --- part 2: the local SES account and the admin ------------------------------------------

SUPERUSER = ("demo", "demo")
ADMIN_URL_PATH = "/admin/sendwell/message/"

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
class Batch:
    """What ``queue_demo_batch`` queued."""

    tag: str  # in every subject: tells this run's messages apart
    messages: int
    expected: frozenset[tuple[str, str]]  # (Message-ID, recipient) pairs
    seconds: float  # how long the send() calls took


@dataclasses.dataclass(frozen=True)
class Received:
    """One SendEmail call the local SES account accepted."""

    message_id: str  # of the MIME it carried
    recipients: tuple[str, ...]
    at: float  # Unix time


def received_calls(ses: FakeSESProcess) -> list[Received]:
    """Every call the account accepted, with the Message-ID of the MIME it carried."""
    parser = BytesHeaderParser(policy=email.policy.default)
    return [
        Received(str(parser.parsebytes(m.raw).get("Message-ID", "")), m.destinations, m.received_at)
        for m in ses.messages(raw=True)
    ]


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


# --- the checks of part 2 ------------------------------------------------------------------


def check_endpoint(ses: FakeSESProcess, batch: Batch, rate: float) -> tuple[list[str], int]:
    """Print what the endpoint received per second and in total; return what went wrong and
    the most recipients it received within one second."""
    step(f"what the local SES account received, per second (limit {rate:g} recipients/s)")
    calls = received_calls(ses)
    if not calls:
        return ["the endpoint received nothing"], 0
    stats = ses.stats()
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
        and admin["messages"] == sum(counts.values())
        and admin["rows"] == admin["expected_rows"]
        and admin["batch_rows"] == admin["batch_rows_sent"] == min(batch.messages, admin["rows"])
    ):
        return []
    return [f"the admin does not list every message: {admin}"]
