"""Synchronous batches: SESBackend.send_messages() keeps several SES calls in flight.

Against the fault-injecting local SES endpoint: the calls really overlap (a barrier in the
endpoint lets the first requests through only when they are all in flight at once), outcomes are
handled in message order, a failure stops the batch and is raised after every started call is
recorded, and the rate limiter still bounds the pace.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import override_settings

from sendwell.exceptions import DeliveryError, InvalidMessageError, PermanentDeliveryError
from sendwell.models import Attempt, Message, MessageStatus
from tests.conftest import SENDER
from tests.mailers import SES, get_mailer, mailer_settings, ses_options
from testservers.fake_ses import FakeSES

UNLIMITED = {"MAX_SEND_RATE": 10_000, "MAX_24_HOUR_SEND": 10_000_000}
BARRIER_TIMEOUT = 30.0  # only reached when the calls do not overlap: then the test fails


def batch(count: int, *, sender: str = SENDER, bad: dict[int, str] | None = None) -> list[Any]:
    """``count`` messages; ``bad`` maps an index to the sender it gets instead of ``sender``."""
    return [
        EmailMessage(f"Batch {i}", "Body", (bad or {}).get(i, sender), [f"user{i}@example.net"])
        for i in range(count)
    ]


@contextlib.contextmanager
def sending_through(ses: FakeSES, width: int, **sendwell: Any) -> Iterator[None]:
    """``ses`` as the default mailer, ``width`` SES calls in flight, and limits that never bind
    unless ``sendwell`` sets them."""
    settings = {**UNLIMITED, "SYNC_CONCURRENCY": width, **sendwell}
    with mailer_settings(SES, **ses_options(ses)), override_settings(SENDWELL=settings):
        yield


def hold_until_in_flight(width: int) -> Any:
    """A fault plan that holds the first ``width`` send requests until all of them arrived."""
    barrier = threading.Barrier(width, timeout=BARRIER_TIMEOUT)

    def plan(number: int) -> None:
        if number <= width:
            barrier.wait()

    return plan


def sent_ids(messages: list[Any]) -> list[str | None]:
    return [getattr(message, "ses_message_id", None) for message in messages]


@pytest.mark.parametrize("width", [2, 4])
def test_calls_overlap_up_to_sync_concurrency(fake_ses: FakeSES, width: int) -> None:
    fake_ses.fault_plan = hold_until_in_flight(width)
    messages = batch(12)
    with sending_through(fake_ses, width):
        assert get_mailer().send_messages(messages) == 12
    assert fake_ses.max_in_flight == width
    # Every message got the id SES gave its own call, and is recorded as sent.
    accepted = {m.message_id: m.destinations for m in fake_ses.messages}
    for i, message in enumerate(messages):
        assert accepted[message.ses_message_id] == (f"user{i}@example.net",)
    rows = Message.objects.order_by("subject")
    assert [row.status for row in rows] == [MessageStatus.SENT] * 12
    assert {row.ses_message_ids[0] for row in rows} == set(accepted)


def test_sync_concurrency_1_sends_one_call_after_another(fake_ses: FakeSES) -> None:
    messages = batch(6)
    with sending_through(fake_ses, 1):
        assert get_mailer().send_messages(messages) == 6
    assert fake_ses.max_in_flight == 1
    assert len(fake_ses.messages) == 6
    assert None not in sent_ids(messages)


def test_failure_stops_the_batch_after_the_calls_in_flight_are_recorded(
    fake_ses: FakeSES,
) -> None:
    # Messages 0-3 are in flight together; message 2's sender is not verified.
    fake_ses.fault_plan = hold_until_in_flight(4)
    messages = batch(10, bad={2: "nobody@unverified.test"})
    with (
        sending_through(fake_ses, 4),
        pytest.raises(PermanentDeliveryError, match="not verified") as excinfo,
    ):
        get_mailer().send_messages(messages)
    assert "verify" in str(excinfo.value)  # the remedy
    ids = sent_ids(messages)
    # Before the failure: sent. The failure: not. Its in-flight successors (at most 3): sent and
    # recorded. After those: never started, no record.
    assert None not in (ids[0], ids[1], ids[3])
    assert ids[2] is None
    started = [i for i, value in enumerate(ids) if value is not None]
    assert max(started) <= 2 + 3
    assert set(ids[max(started) + 1 :]) == {None}
    # What SES accepted is exactly what is recorded as sent; the failure is recorded as failed.
    accepted = {m.message_id for m in fake_ses.messages}
    assert accepted == {value for value in ids if value is not None}
    rows = {row.subject: row for row in Message.objects.all()}
    assert rows["Batch 2"].status == MessageStatus.FAILED
    assert "not verified" in rows["Batch 2"].last_error
    sent_rows = {s for s, row in rows.items() if row.status == MessageStatus.SENT}
    assert sent_rows == {f"Batch {i}" for i in started}
    assert set(rows) == sent_rows | {"Batch 2"}
    assert Attempt.objects.count() == len(rows)


def test_fail_silently_sends_everything_else(fake_ses: FakeSES) -> None:
    messages = batch(10, bad={2: "nobody@unverified.test", 7: "nobody@unverified.test"})
    with sending_through(fake_ses, 4):
        mailer = get_mailer()
        mailer.fail_silently = True
        assert mailer.send_messages(messages) == 8
    ids = sent_ids(messages)
    assert [i for i, value in enumerate(ids) if value is None] == [2, 7]
    assert len(fake_ses.messages) == 8
    statuses = dict(Message.objects.values_list("subject", "status"))
    assert statuses["Batch 2"] == statuses["Batch 7"] == MessageStatus.FAILED
    assert sum(status == MessageStatus.SENT for status in statuses.values()) == 8


def test_invalid_message_is_raised_after_the_calls_before_it(fake_ses: FakeSES) -> None:
    messages = batch(8)
    messages[5].extra_headers["X-SES-MESSAGE-TAGS"] = "not a tag"
    with (
        sending_through(fake_ses, 4),
        pytest.raises(InvalidMessageError, match="not name=value"),
    ):
        get_mailer().send_messages(messages)
    ids = sent_ids(messages)
    assert None not in ids[:5]  # the calls in flight when message 5 was refused all finished
    assert set(ids[5:]) == {None}
    assert len(fake_ses.messages) == 5
    assert Message.objects.filter(status=MessageStatus.SENT).count() == 5


def test_an_earlier_failure_is_raised_before_a_later_invalid_message(fake_ses: FakeSES) -> None:
    # Message 1 fails at SES while message 3, refused before any call, waits for its turn: the
    # caller hears of message 1, as it would sending one message after another.
    fake_ses.fault_plan = hold_until_in_flight(3)
    messages = batch(6, bad={1: "nobody@unverified.test"})
    messages[3].extra_headers["X-SES-MESSAGE-TAGS"] = "not a tag"
    with (
        sending_through(fake_ses, 4),
        pytest.raises(DeliveryError, match="not verified"),
    ):
        get_mailer().send_messages(messages)
    ids = sent_ids(messages)
    assert None not in (ids[0], ids[2])
    assert ids[1] is None
    assert set(ids[3:]) == {None}


def test_overlapping_calls_never_exceed_the_account_rate() -> None:
    # The endpoint enforces 20 recipients per rolling second and refuses one over it; the
    # backend may wait for slots (SYNC_MAX_WAIT) and keeps 4 calls in flight.
    with FakeSES(
        verified_identities={"example.com"}, max_send_rate=20, enforce_rate=True, latency=0.05
    ) as ses:
        messages = batch(45)
        with sending_through(ses, 4, MAX_SEND_RATE=20, MAX_24_HOUR_SEND=10_000, SYNC_MAX_WAIT=5.0):
            assert get_mailer().send_messages(messages) == 45
        assert ses.refused == {}
        assert ses.max_in_flight > 1
        times = sorted(m.received_at for m in ses.messages)
        # No rolling second holds more than the rate.
        assert (
            max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times)) <= 20
        )
