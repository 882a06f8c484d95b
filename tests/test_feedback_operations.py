"""Operating the feedback loop: the suppression and simulate commands, pruning, the admin's
pages, the W005 check, events that arrive before their send is recorded, and the example site's
newsletter list.

Default settings; sends go to FakeSES (real SES message ids), the admin is Django's test client
logged in as a superuser.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core import checks
from django.core.mail import send_mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone

from sendwell import feedback, suppression
from sendwell.delivery import SyncRecords
from sendwell.events import parse_ses_message
from sendwell.models import (
    Event,
    Message,
    Notification,
    Recipient,
    RecipientStatus,
    Suppression,
    SuppressionReason,
)
from sendwell.transports.base import AcceptedCall
from tests.conftest import SENDER
from tests.mailers import ses_options
from testservers.fake_ses import FakeSES

PAYLOADS = Path(__file__).resolve().parent / "ses_events"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("sendwell", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- manage.py sendwell suppression ----------------------------------------------------------


def test_add_list_and_remove() -> None:
    assert run("suppression", "add", "Ann <ANN@example.net>", "bob@example.net") == "suppressed 2\n"
    listed = run("suppression", "list")
    assert "ann@example.net manual" in listed
    assert "bob@example.net manual" in listed
    rows = [json.loads(line) for line in run("suppression", "list", "--json").splitlines()]
    assert {row["address"] for row in rows} == {"ann@example.net", "bob@example.net"}
    assert run("suppression", "list", "--search", "ann") == "ann@example.net manual\n"
    assert run("suppression", "remove", "ANN@example.net") == "removed 1\n"
    assert list(Suppression.objects.values_list("address", flat=True)) == ["bob@example.net"]


def test_add_refuses_what_is_not_an_address() -> None:
    with pytest.raises(CommandError, match="is not an email address"):
        run("suppression", "add", "not an address")
    assert not Suppression.objects.exists()


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    until = timezone.now() + timedelta(days=3)
    suppression.suppress("a@example.net", reason=SuppressionReason.COMPLAINT)
    suppression.suppress(
        "b@example.net", reason=SuppressionReason.UNSUBSCRIBE, scope="news", expires_at=until
    )
    exported = tmp_path / "list.csv"
    assert run("suppression", "export", str(exported)) == f"exported 2 to {exported}\n"
    Suppression.objects.all().delete()
    assert run("suppression", "import", str(exported)) == "imported 2\n"
    rows = {r.address: r for r in Suppression.objects.all()}
    assert rows["a@example.net"].reason == SuppressionReason.COMPLAINT
    assert (rows["b@example.net"].scope, rows["b@example.net"].reason) == ("news", "unsubscribe")
    assert rows["b@example.net"].expires_at == until


def test_import_reads_an_export_of_the_ses_account_list(tmp_path: Path) -> None:
    ses_export = tmp_path / "ses.csv"
    ses_export.write_text(
        "EmailAddress,Reason,LastUpdateTime\n"
        "gone@example.net,BOUNCE,2026-01-01T00:00:00Z\n"
        "angry@example.net,COMPLAINT,2026-01-02T00:00:00Z\n"
    )
    assert run("suppression", "import", str(ses_export)) == "imported 2\n"
    reasons = dict(Suppression.objects.values_list("address", "reason"))
    assert reasons == {"gone@example.net": "hard_bounce", "angry@example.net": "complaint"}


def test_a_bad_import_says_which_line_and_keeps_going_nowhere(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("address\nok@example.net\nnot an address\n")
    with pytest.raises(CommandError, match="line 3"):
        run("suppression", "import", str(bad))
    no_column = tmp_path / "nocolumn.csv"
    no_column.write_text("name\nAnn\n")
    with pytest.raises(CommandError, match="no address column"):
        run("suppression", "import", str(no_column))
    with pytest.raises(CommandError, match="cannot open"):
        run("suppression", "import", str(tmp_path / "missing.csv"))


def test_export_to_standard_output_is_csv(capsys: pytest.CaptureFixture[str]) -> None:
    suppression.suppress("a@example.net", reason=SuppressionReason.MANUAL, note="asked, by phone")
    run("suppression", "export")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows == [
        {
            "address": "a@example.net",
            "reason": "manual",
            "scope": "",
            "expires_at": "",
            "note": "asked, by phone",
        }
    ]


# --- manage.py sendwell simulate -------------------------------------------------------------


def test_simulated_bounce_and_complaint_suppress_and_the_next_send_is_refused(
    ses_mailer: FakeSES,
) -> None:
    assert send_mail("Hi", "Body", SENDER, ["bounce@simulator.amazonses.com"]) == 1
    assert send_mail("Hi", "Body", SENDER, ["complaint@simulator.amazonses.com"]) == 1
    bounced, complained = Message.objects.order_by("pk")
    assert run("simulate", "bounce", "--message", str(bounced.pk)) == (
        "bounce bounce@simulator.amazonses.com -> suppressed\n"
    )
    data = json.loads(run("simulate", "complaint", "--message", str(complained.pk), "--json"))
    assert data["suppressed"] == ["complaint@simulator.amazonses.com"]
    assert Notification.objects.filter(source="simulated").count() == 2
    statuses = dict(Recipient.objects.values_list("address", "status"))
    assert statuses == {
        "bounce@simulator.amazonses.com": RecipientStatus.BOUNCED,
        "complaint@simulator.amazonses.com": RecipientStatus.COMPLAINED,
    }
    both = ["bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com"]
    assert send_mail("Again", "Body", SENDER, both) == 0
    assert len(ses_mailer.messages) == 2


def test_simulated_delivery_and_delay(ses_mailer: FakeSES) -> None:
    assert send_mail("Hi", "Body", SENDER, ["a@example.net", "b@example.net"]) == 1
    message = Message.objects.get()
    run("simulate", "delay", "--message", str(message.pk), "--recipient", "B@example.net")
    run("simulate", "delivery", "--message", str(message.pk))
    events = sorted(Event.objects.values_list("type", "address"))
    assert events == [
        ("delivery", "a@example.net"),
        ("delivery", "b@example.net"),
        ("delivery_delay", "b@example.net"),
    ]
    assert set(Recipient.objects.values_list("status", flat=True)) == {"delivered"}
    assert not Suppression.objects.exists()


def test_simulate_explains_what_it_cannot_do(ses_mailer: FakeSES) -> None:
    with pytest.raises(CommandError, match="there is no message 999"):
        run("simulate", "bounce", "--message", "999")
    assert send_mail("Hi", "Body", SENDER, ["a@example.net"]) == 1
    message = Message.objects.get()
    with pytest.raises(CommandError, match=r"was not sent to x@example\.net"):
        run("simulate", "bounce", "--message", str(message.pk), "--recipient", "x@example.net")


# --- manage.py sendwell prune ----------------------------------------------------------------


def test_prune_keeps_the_retention_window_and_the_suppressions(ses_mailer: FakeSES) -> None:
    assert send_mail("Hi", "Body", SENDER, ["a@example.net", "b@example.net"]) == 1
    message = Message.objects.get()
    run("simulate", "bounce", "--message", str(message.pk), "--recipient", "a@example.net")
    run("simulate", "delivery", "--message", str(message.pk), "--recipient", "b@example.net")
    old = timezone.now() - timedelta(days=91)  # EVENT_RETENTION_DAYS is 90 by default
    Event.objects.filter(address="a@example.net").update(received_at=old)
    Notification.objects.filter(events__address="a@example.net").update(received_at=old)
    data = json.loads(run("prune", "--json"))
    assert data == {"days": 90, "events": 1, "notifications": 1}
    assert list(Event.objects.values_list("address", flat=True)) == ["b@example.net"]
    assert Suppression.objects.get().address == "a@example.net"  # the list outlives its events


# --- an event before its send's record -------------------------------------------------------


def test_an_event_that_came_before_the_record_is_linked_when_the_send_is_recorded() -> None:
    ses_json = json.loads((PAYLOADS / "ep-delivery.json").read_text())
    ses_json["mail"]["messageId"] = "0100-early"
    ses_json["delivery"]["recipients"] = ["early@example.net"]
    feedback.apply(parse_ses_message(ses_json))
    assert Event.objects.get().recipient is None
    # The send's record is written after the event (a synchronous batch flushes at its end).
    records = SyncRecords()
    records.add(
        Message(mailer="default", transport="ses", from_email=SENDER, raw=b"x"),
        ["early@example.net"],
        calls=[AcceptedCall("0100-early", ("early@example.net",))],
        error=None,
        transport="ses",
        started=datetime.now(UTC),
    )
    records.flush()
    event = Event.objects.get()
    assert event.recipient is not None
    assert event.recipient.address == "early@example.net"
    assert event.recipient.status == RecipientStatus.DELIVERED


# --- the admin -------------------------------------------------------------------------------


def test_the_admin_lists_events_and_edits_the_suppression_list(
    admin_client: Client, ses_mailer: FakeSES
) -> None:
    assert send_mail("Hi", "Body", SENDER, ["gone@example.net"]) == 1
    run("simulate", "bounce", "--message", str(Message.objects.get().pk))
    events = admin_client.get("/admin/sendwell/event/", {"type__exact": "bounce"})
    assert events.status_code == 200
    assert b"gone@example.net" in events.content
    event = Event.objects.get()
    page = admin_client.get(f"/admin/sendwell/event/{event.pk}/change/")
    assert page.status_code == 200
    assert b"5.1.1" in page.content  # the normalized fields and the raw JSON are shown
    found = admin_client.get("/admin/sendwell/suppression/", {"q": "gone@"})
    assert b"gone@example.net" in found.content
    added = admin_client.post(
        "/admin/sendwell/suppression/add/",
        {"address": "Someone <SOMEONE@example.net>", "scope": "", "reason": "manual", "note": ""},
    )
    assert added.status_code == 302
    assert Suppression.objects.filter(address="someone@example.net").exists()
    row = Suppression.objects.get(address="gone@example.net")
    removed = admin_client.post(f"/admin/sendwell/suppression/{row.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    assert not Suppression.objects.filter(address="gone@example.net").exists()
    assert send_mail("Again", "Body", SENDER, ["gone@example.net"]) == 1  # sent again


# --- the W005 check --------------------------------------------------------------------------


def test_w005_when_the_webhook_is_installed_without_topics() -> None:
    def ids() -> list[str]:
        return [message.id for message in checks.run_checks(tags=[checks.Tags.urls])]

    assert "sendwell.W005" not in ids()  # tests/urls.py has no webhook
    with override_settings(ROOT_URLCONF="tests.webhook_urls"):
        assert "sendwell.W005" in ids()  # the webhook, and no topic set
        arn = "arn:aws:sns:us-east-1:123456789012:ses"
        with override_settings(SENDWELL={"SNS_TOPIC_ARNS": [arn]}):
            assert "sendwell.W005" not in ids()


# --- the example site's newsletter -----------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "example"


def example_manage(database: Path, *args: str) -> str:
    """``example/manage.py`` with the demo settings on a database of its own, in a subprocess."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_site.settings.demo",
        "DATABASE": str(database),
        "PYTHONPATH": os.pathsep.join([str(EXAMPLE.parent / "src"), str(EXAMPLE.parent)]),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_example_newsletter_drops_an_address_sendwell_suppresses(tmp_path: Path) -> None:
    database = tmp_path / "example.sqlite3"
    example_manage(database, "migrate", "--verbosity", "0")
    subscribe = (
        "from newsletter.models import Subscriber; "
        "Subscriber.objects.create(email='reader@example.net'); "
        "Subscriber.objects.create(email='other@example.net')"
    )
    example_manage(database, "shell", "--no-imports", "-c", subscribe)
    example_manage(database, "sendwell", "suppression", "add", "Reader@Example.net")
    listing = (
        "from newsletter.models import Subscriber; "
        "print(sorted(s.email for s in Subscriber.objects.all()))"
    )
    listed = example_manage(database, "shell", "--no-imports", "-c", listing)
    assert listed.strip() == "['other@example.net']"


def test_a_long_import_shows_its_progress_on_a_terminal(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text("address\n" + "".join(f"user{i}@example.net\n" for i in range(2000)))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, out = Terminal(), io.StringIO()
    call_command("sendwell", "suppression", "import", str(big), stdout=out, stderr=terminal)
    assert out.getvalue() == "imported 2000\n"
    assert "\rimported 1,000" in terminal.getvalue()
    assert "\rimported 2,000" in terminal.getvalue()
    assert Suppression.objects.count() == 2000
    # Not on a terminal (a log, a pipe): no progress lines.
    quiet = io.StringIO()
    call_command("sendwell", "suppression", "import", str(big), stdout=out, stderr=quiet)
    assert quiet.getvalue() == ""


def test_a_longer_suppression_is_never_shortened() -> None:
    later, sooner = timezone.now() + timedelta(days=300), timezone.now() + timedelta(days=30)
    suppression.suppress("a@example.net", reason=SuppressionReason.MANUAL, expires_at=later)
    suppression.suppress(
        "a@example.net", reason=SuppressionReason.TRANSIENT_BOUNCES, expires_at=sooner
    )
    row = Suppression.objects.get()
    assert (row.reason, row.expires_at) == (SuppressionReason.MANUAL, later)
    suppression.suppress("a@example.net", reason=SuppressionReason.HARD_BOUNCE)  # for good
    row.refresh_from_db()
    assert (row.reason, row.expires_at) == (SuppressionReason.HARD_BOUNCE, None)


def test_an_unsubscribe_without_a_contact_list_suppresses_nothing() -> None:
    ses_json = json.loads((PAYLOADS / "ep-subscription.json").read_text())
    ses_json["subscription"].pop("contactList", None)
    ses_json["subscription"]["newTopicPreferences"] = {"unsubscribeAll": True}
    feedback.apply(parse_ses_message(ses_json))
    assert Event.objects.filter(type="subscription").exists()
    assert not Suppression.objects.exists()


def test_prune_keeps_what_the_transient_bounce_count_needs() -> None:
    with pytest.raises(CommandError, match="at least 7"):
        run("prune", "--days", "3")


def test_import_reads_a_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffaddress,scope\nann@example.net,news\n".encode())
    assert run("suppression", "import", str(excel)) == "imported 1\n"
    assert Suppression.objects.get().scope == "news"
    bad_scope = tmp_path / "scope.csv"
    bad_scope.write_text("address,scope\nbob@example.net,not a list\n")
    with pytest.raises(CommandError, match="is not a list name"):
        run("suppression", "import", str(bad_scope))


def test_the_admin_refuses_an_address_already_listed_in_another_case(admin_client: Client) -> None:
    suppression.suppress("ann@example.net", reason=SuppressionReason.COMPLAINT)
    response = admin_client.post(
        "/admin/sendwell/suppression/add/",
        {"address": "ANN@Example.net", "scope": "", "reason": "manual", "note": ""},
    )
    assert response.status_code == 200  # the form again, with the error; not a 500
    assert b"already exists" in response.content
    assert Suppression.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_message_whose_recipients_moved_on_is_still_sent_when_reclaimed(
    ses_mailer: FakeSES,
) -> None:
    """A worker taking over an expired claim after the last chunk finds nothing pending: the
    message is sent, even though SES's events moved its recipient past "sent"."""
    from sendwell.delivery import Route, claim, deliver  # noqa: PLC0415
    from sendwell.options import ses_options as build_options  # noqa: PLC0415
    from sendwell.transports.ses import SESTransport  # noqa: PLC0415

    assert send_mail("Hi", "Body", SENDER, ["a@example.net"]) == 1
    message = Message.objects.get()
    message.recipients.update(status=RecipientStatus.DELIVERED)
    Message.objects.update(status="deferred", next_attempt_at=timezone.now())
    [claimed] = claim(10, "test-worker")
    route = Route.of(SESTransport(build_options(ses_options(ses_mailer), where="test")))
    outcome = deliver(claimed, route, worker="test-worker", max_wait=1)
    assert outcome.status == "sent"
    assert Message.objects.get().status == "sent"
