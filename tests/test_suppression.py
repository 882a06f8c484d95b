"""The suppression list, enforced by every backend as one step of the pipeline.

Default settings throughout (``SENDWELL = {}``): what a new user gets. The SES backend sends to
FakeSES (which records each call's envelope, where moto records the MIME's headers), the SMTP
backend to aiosmtpd; what arrived is read back
from the server, never from sendwell's own objects.
"""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage, send_mail
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from sendwell import signals, suppression
from sendwell.exceptions import SuppressedError
from sendwell.models import (
    Message,
    MessageStatus,
    Recipient,
    RecipientStatus,
    Suppression,
    SuppressionReason,
)
from sendwell.worker import drain
from tests.conftest import SENDER
from tests.mailers import SES, SMTP, mailer_settings, ses_options
from tests.test_outbox import outbox_settings
from testservers.fake_ses import FakeSES
from testservers.smtp import LocalSMTPServer


@pytest.fixture
def received() -> Iterator[list[dict[str, Any]]]:
    """What signals.recipients_suppressed said, in order."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    signals.recipients_suppressed.connect(receiver)
    yield calls
    signals.recipients_suppressed.disconnect(receiver)


@pytest.fixture
def smtp_server() -> Iterator[LocalSMTPServer]:
    with LocalSMTPServer() as server:
        yield server


def test_the_ses_backend_leaves_suppressed_recipients_out(
    fake_ses: FakeSES, received: list[dict[str, Any]]
) -> None:
    suppression.suppress("Gone <GONE@example.net>", reason=SuppressionReason.HARD_BOUNCE)
    with mailer_settings(SES, **ses_options(fake_ses)):
        sent = send_mail("Hi", "Body", SENDER, ["gone@example.net", "here@example.net"])
    assert sent == 1
    [delivered] = fake_ses.messages
    assert delivered.destinations == ("here@example.net",)
    rows = dict(Recipient.objects.values_list("address", "status"))
    assert rows == {"gone@example.net": RecipientStatus.SUPPRESSED, "here@example.net": "sent"}
    [call] = received
    assert call["addresses"] == ("gone@example.net",)
    assert call["all_suppressed"] is False
    assert call["message"].status == MessageStatus.SENT


def test_a_message_to_suppressed_addresses_only_is_not_sent_and_counts_as_not_sent(
    fake_ses: FakeSES, received: list[dict[str, Any]]
) -> None:
    suppression.suppress("complainer@example.net", reason=SuppressionReason.COMPLAINT)
    with mailer_settings(SES, **ses_options(fake_ses)):
        assert send_mail("Hi", "Body", SENDER, ["Complainer@Example.NET"]) == 0
    assert fake_ses.messages == []
    message = Message.objects.get()
    assert message.status == MessageStatus.SUPPRESSED
    assert message.attempts.count() == 0
    assert list(message.recipients.values_list("status", flat=True)) == ["suppressed"]
    assert received[0]["all_suppressed"] is True


def test_raising_instead_of_counting_is_a_setting(fake_ses: FakeSES) -> None:
    suppression.suppress("gone@example.net", reason=SuppressionReason.HARD_BOUNCE)
    with (
        mailer_settings(SES, **ses_options(fake_ses)),
        override_settings(SENDWELL={"RAISE_WHEN_ALL_SUPPRESSED": True}),
    ):
        with pytest.raises(SuppressedError, match="every recipient is suppressed") as caught:
            send_mail("Hi", "Body", SENDER, ["gone@example.net"])
        assert caught.value.addresses == ("gone@example.net",)
        assert "suppression remove" in str(caught.value)  # says how to undo it
    assert Message.objects.filter(status=MessageStatus.SUPPRESSED).count() == 1
    assert fake_ses.messages == []


def test_the_smtp_backend_enforces_it_too(
    smtp_server: LocalSMTPServer, received: list[dict[str, Any]]
) -> None:
    suppression.suppress("gone@example.net", reason=SuppressionReason.MANUAL)
    with mailer_settings(SMTP, host=smtp_server.host, port=smtp_server.port, timeout=5):
        message = EmailMessage("Hi", "Body", SENDER, ["here@example.net"], bcc=["gone@example.net"])
        assert message.send() == 1
        assert send_mail("Hi", "Body", SENDER, ["gone@example.net"]) == 0
    [delivered] = smtp_server.wait_for(1)
    assert delivered.recipients == ("here@example.net",)
    assert [call["all_suppressed"] for call in received] == [False, True]


def test_a_list_suppression_applies_to_that_list_only(fake_ses: FakeSES) -> None:
    suppression.suppress("reader@example.net", reason=SuppressionReason.UNSUBSCRIBE, scope="news")
    with mailer_settings(SES, **ses_options(fake_ses)):
        newsletter = EmailMessage(
            "News", "Body", SENDER, ["reader@example.net"], headers={"X-Sendwell-List": "news"}
        )
        assert newsletter.send() == 0
        receipt = EmailMessage("Your order", "Body", SENDER, ["reader@example.net"])
        assert receipt.send() == 1
        other_list = EmailMessage(
            "Offers", "Body", SENDER, ["reader@example.net"], headers={"X-Sendwell-List": "offers"}
        )
        assert other_list.send() == 1
    delivered = fake_ses.messages
    assert len(delivered) == 2
    # sendwell's control header never reaches the recipient.
    assert all(b"X-Sendwell-List" not in message.raw for message in delivered)
    assert Message.objects.get(status=MessageStatus.SUPPRESSED).list_name == "news"


def test_an_expired_suppression_no_longer_applies(fake_ses: FakeSES) -> None:
    suppression.suppress(
        "soft@example.net",
        reason=SuppressionReason.TRANSIENT_BOUNCES,
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    with mailer_settings(SES, **ses_options(fake_ses)):
        assert send_mail("Hi", "Body", SENDER, ["soft@example.net"]) == 1


def test_a_permanent_suppression_is_never_weakened_into_an_expiring_one() -> None:
    suppression.suppress("gone@example.net", reason=SuppressionReason.COMPLAINT)
    later = timezone.now() + timedelta(days=30)
    suppression.suppress(
        "gone@example.net", reason=SuppressionReason.TRANSIENT_BOUNCES, expires_at=later
    )
    row = Suppression.objects.get()
    assert (row.reason, row.expires_at) == (SuppressionReason.COMPLAINT, None)


def test_one_query_per_message_whatever_its_recipients(fake_ses: FakeSES) -> None:
    suppression.suppress("user7@example.net", reason=SuppressionReason.HARD_BOUNCE)
    recipients = [f"user{i}@example.net" for i in range(60)]
    with (
        mailer_settings(SES, **ses_options(fake_ses)),
        CaptureQueriesContext(connection) as queries,
    ):
        assert send_mail("Hi", "Body", SENDER, recipients) == 1
    asked = [q["sql"] for q in queries.captured_queries if "sendwell_suppression" in q["sql"]]
    assert len(asked) == 1
    destinations = [d for message in fake_ses.messages for d in message.destinations]
    assert sorted(destinations) == sorted(set(recipients) - {"user7@example.net"})


# The worker's threads (default CONCURRENCY) have their own connections: no test transaction.
@pytest.mark.django_db(transaction=True)
def test_the_outbox_counts_an_all_suppressed_message_as_not_sent(fake_ses: FakeSES) -> None:
    suppression.suppress("gone@example.net", reason=SuppressionReason.HARD_BOUNCE)
    with outbox_settings(fake_ses):
        assert send_mail("Hi", "Body", SENDER, ["gone@example.net"]) == 0
        assert send_mail("Hi", "Body", SENDER, ["gone@example.net", "here@example.net"]) == 1
        drain()
    statuses = sorted(Message.objects.values_list("status", flat=True))
    assert statuses == [MessageStatus.SENT, MessageStatus.SUPPRESSED]
    assert [m.destinations for m in fake_ses.messages] == [("here@example.net",)]


# The worker's threads (default CONCURRENCY) have their own connections: no test transaction.
@pytest.mark.django_db(transaction=True)
def test_a_queued_message_is_checked_again_when_it_is_sent(
    fake_ses: FakeSES,
    received: list[dict[str, Any]],
) -> None:
    """A bounce can arrive between queueing and sending (or a retry)."""
    with outbox_settings(fake_ses):
        assert send_mail("Hi", "Body", SENDER, ["bounces@example.net", "fine@example.net"]) == 1
        assert send_mail("Hi", "Body", SENDER, ["bounces@example.net"]) == 1
        suppression.suppress("bounces@example.net", reason=SuppressionReason.HARD_BOUNCE)
        drain()
    assert [m.destinations for m in fake_ses.messages] == [("fine@example.net",)]
    statuses = dict(Message.objects.values_list("subject", "status").order_by())
    by_status = sorted(Message.objects.values_list("status", flat=True))
    assert by_status == [MessageStatus.SENT, MessageStatus.SUPPRESSED], statuses
    assert Recipient.objects.filter(status=RecipientStatus.SUPPRESSED).count() == 2
    assert sorted(call["all_suppressed"] for call in received) == [False, True]


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+", fullmatch=True))
def test_the_fast_path_for_bare_addresses_gives_what_parsing_gives(address: str) -> None:
    """Envelope addresses skip parseaddr(); for every bare address that is the same result."""
    parsed = email.utils.parseaddr(address)[1]
    assert suppression.normalize(address) == (parsed or address).strip().lower()


@pytest.mark.parametrize(
    "spelled",
    ["Ann <ANN@Example.net>", "ann@example.net", " ann@example.net ", '"Ann" <ann@EXAMPLE.net>'],
)
def test_the_suppression_list_and_ses_events_read_an_address_alike(spelled: str) -> None:
    from sendwell.events.fields import address  # noqa: PLC0415

    assert suppression.normalize(spelled) == address(spelled) == "ann@example.net"


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_queueing_signals_nothing(
    fake_ses: FakeSES, received: list[dict[str, Any]]
) -> None:
    suppression.suppress("gone@example.net", reason=SuppressionReason.HARD_BOUNCE)
    with outbox_settings(fake_ses), contextlib.suppress(RuntimeError), transaction.atomic():
        assert send_mail("Hi", "Body", SENDER, ["gone@example.net", "here@example.net"]) == 1
        raise RuntimeError("the request failed after queueing")
    assert not Message.objects.exists()
    assert received == []  # what was never queued was never suppressed
