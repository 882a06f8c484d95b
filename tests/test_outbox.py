"""The outbox: durable queueing, claims, retries with backoff, quota deferral, failover.

Delivery goes to the fault-injecting local SES endpoint (and aiosmtpd for failover); the worker's
drain loop runs for real, in this process. Multi-process and multi-machine behaviour is in
test_workers.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import django
import pytest
from django.core.mail import EmailMessage
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from sendwell import compat
from sendwell.delivery import claim
from sendwell.exceptions import InvalidMessageError, ThrottledError
from sendwell.models import (
    Attempt,
    AttemptOutcome,
    Message,
    MessageStatus,
    Recipient,
    RecipientStatus,
)
from sendwell.worker import drain
from tests.concurrency import in_threads
from tests.conftest import SENDER
from tests.mailers import HAS_MAILERS, SES, get_mailer, mailer_settings, ses_options
from testservers.fake_ses import FakeSES
from testservers.smtp import LocalSMTPServer

OUTBOX = "sendwell.backends.OutboxBackend"
DUMMY_TASKS = (
    "django.tasks.backends.dummy.DummyBackend"
    if django.VERSION >= (6, 0)
    else "django_tasks.backends.dummy.DummyBackend"  # RemovedInSendwellDjango52
)
FAST_RETRIES = {
    "MAX_SEND_RATE": 10_000,
    "MAX_24_HOUR_SEND": 10_000_000,
    "BACKOFF_BASE_SECONDS": 0.0,
    "MAX_ATTEMPTS": 3,
    # In the calling thread: other threads' connections cannot see a test's transaction.
    "CONCURRENCY": 1,
}


def outbox_settings(ses: Any, smtp: dict[str, Any] | None = None, **extra: Any) -> Any:
    """The outbox as the default mailer, with the dummy task backend (tests drain by hand)."""
    ses_part = ses_options(ses, **extra) if ses is not None else None
    failover = ses is not None and smtp is not None
    tasks = override_settings(TASKS={"default": {"BACKEND": DUMMY_TASKS}})
    if HAS_MAILERS:
        mailers = override_settings(
            MAILERS={
                "default": {
                    "BACKEND": OUTBOX,
                    "OPTIONS": {"ses": ses_part, "smtp": smtp, "failover": failover},
                }
            }
        )
    else:  # RemovedInSendwellDjango52
        classic: dict[str, Any] = {
            "EMAIL_BACKEND": OUTBOX,
            "SENDWELL_TRANSPORT": "failover" if failover else "ses" if ses else "smtp",
        }
        if ses_part:
            classic.update(
                AWS_SES_REGION_NAME=ses_part["region_name"],
                AWS_ACCESS_KEY_ID=ses_part["access_key_id"],
                AWS_SECRET_ACCESS_KEY=ses_part["secret_access_key"],
                AWS_SES_ENDPOINT_URL=ses_part["endpoint_url"],
            )
        if smtp:
            classic.update(EMAIL_HOST=smtp["host"], EMAIL_PORT=smtp["port"], EMAIL_USE_TLS=False)
        mailers = override_settings(**classic)
    return _Both(tasks, mailers)


class _Both:
    def __init__(self, *managers: Any) -> None:
        self.managers = managers

    def __enter__(self) -> None:
        for manager in self.managers:
            manager.__enter__()

    def __exit__(self, *exc: Any) -> None:
        for manager in reversed(self.managers):
            manager.__exit__(*exc)


def queue(count: int = 1, **kwargs: Any) -> list[EmailMessage]:
    messages = [
        EmailMessage(f"Queued {i}", "Body", SENDER, [f"user{i}@example.net"], **kwargs)
        for i in range(count)
    ]
    assert get_mailer().send_messages(messages) == count
    return messages


def make_due() -> None:
    Message.objects.filter(status=MessageStatus.DEFERRED).update(next_attempt_at=timezone.now())


def test_send_messages_only_writes_and_enqueues_after_commit(
    fake_ses: FakeSES, django_capture_on_commit_callbacks: Any
) -> None:
    with outbox_settings(fake_ses):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            messages = queue(3)
            assert compat.task_backends["default"].results == []  # nothing before the commit
        assert len(callbacks) == 1
        [enqueued] = compat.task_backends["default"].results
        assert enqueued.task.name == "drain_outbox"
    rows = Message.objects.order_by("pk")
    assert [m.status for m in rows] == [MessageStatus.QUEUED] * 3
    assert [m.sendwell_id for m in messages] == [r.pk for r in rows]  # type: ignore[attr-defined]
    assert fake_ses.messages == []  # nothing sent by send_messages itself


def test_rolled_back_transaction_sends_nothing(fake_ses: FakeSES) -> None:
    with outbox_settings(fake_ses):
        try:
            with transaction.atomic():
                queue(2)
                raise RuntimeError("the view failed after queueing")
        except RuntimeError:
            pass
        assert Message.objects.count() == 0
        assert drain(time_budget=5)["claimed"] == 0
    assert fake_ses.messages == []


def test_message_that_cannot_be_sent_is_refused_at_send_messages(fake_ses: FakeSES) -> None:
    bad = EmailMessage(
        "Bad", "Body", SENDER, ["a@example.net"], headers={"X-SES-MESSAGE-TAGS": "x"}
    )
    good = EmailMessage("Good", "Body", SENDER, ["b@example.net"])
    with outbox_settings(fake_ses), pytest.raises(InvalidMessageError):
        get_mailer().send_messages([good, bad])
    assert Message.objects.count() == 0  # all or nothing: the caller sees the error


@pytest.mark.django_db(transaction=True)
def test_drain_delivers_and_records_everything(fake_ses: FakeSES) -> None:
    threaded = {**FAST_RETRIES, "CONCURRENCY": 4}
    with outbox_settings(fake_ses), override_settings(SENDWELL=threaded):
        queue(5, bcc=["hidden@example.org"])
        results = drain(time_budget=10)
    assert results["claimed"] == 5
    assert results.get(MessageStatus.SENT) == 5
    assert len(fake_ses.messages) == 5
    for message in Message.objects.all():
        assert message.status == MessageStatus.SENT
        assert message.delivered_by == "ses"
        assert message.sent_at is not None
        assert len(message.ses_message_ids) == 1
        recipients = list(message.recipients.all())
        assert {r.status for r in recipients} == {RecipientStatus.SENT}
        assert {r.ses_message_id for r in recipients} == set(message.ses_message_ids)
        [attempt] = message.attempts.all()
        assert attempt.outcome == AttemptOutcome.SENT
        assert attempt.recipients == 2
    accepted = {m.message_id for m in fake_ses.messages}
    assert accepted == {i for m in Message.objects.all() for i in m.ses_message_ids}


def test_retryable_errors_are_retried_with_backoff_then_sent_once(fake_ses: FakeSES) -> None:
    fake_ses.inject("500")
    fake_ses.inject("throttle")
    settings = {**FAST_RETRIES, "BACKOFF_BASE_SECONDS": 30.0}
    with outbox_settings(fake_ses), override_settings(SENDWELL=settings):
        queue(1)
        drain(time_budget=5)
        message = Message.objects.get()
        assert message.status == MessageStatus.DEFERRED
        assert message.attempt_count == 1
        assert message.last_error_code == "InternalFailure"
        assert message.next_attempt_at is not None
        # The first retry waits between half and all of the base delay.
        delay = (message.next_attempt_at - timezone.now()).total_seconds()
        assert 14 <= delay <= 30
        assert drain(time_budget=5)["claimed"] == 0  # not due yet
        make_due()
        drain(time_budget=5)
        # Throttled: back in about a second, without spending an attempt.
        message.refresh_from_db()
        assert message.last_error_code == "TooManyRequestsException"  # v2 throttling
        assert message.attempt_count == 1
        assert message.next_attempt_at is not None
        assert (message.next_attempt_at - timezone.now()).total_seconds() <= 1.5
        make_due()
        drain(time_budget=5)
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.attempt_count == 1
    outcomes = list(message.attempts.values_list("outcome", flat=True))
    assert outcomes == [AttemptOutcome.RETRY, AttemptOutcome.RETRY, AttemptOutcome.SENT]
    assert len(fake_ses.messages) == 1


def test_retries_end_in_failed_with_the_last_error(fake_ses: FakeSES) -> None:
    fake_ses.inject("503", times=10)
    with outbox_settings(fake_ses), override_settings(SENDWELL=FAST_RETRIES):
        queue(1)
        for _ in range(3):
            drain(time_budget=5)
            make_due()
    message = Message.objects.get()
    assert message.status == MessageStatus.FAILED
    assert message.attempt_count == 3
    assert "ServiceUnavailable" in message.last_error
    assert message.recipients.get().status == RecipientStatus.FAILED


def test_permanent_error_fails_at_once_with_its_remedy(fake_ses: FakeSES) -> None:
    with outbox_settings(fake_ses), override_settings(SENDWELL=FAST_RETRIES):
        get_mailer().send_messages([EmailMessage("X", "B", "a@unverified.test", ["t@example.net"])])
        drain(time_budget=5)
    message = Message.objects.get()
    assert message.status == MessageStatus.FAILED
    assert message.attempt_count == 1
    assert "Email address is not verified" in message.last_error
    assert "verify the sender" in message.last_error


def test_ses_quota_exceeded_defers_without_counting_an_attempt(fake_ses: FakeSES) -> None:
    fake_ses.inject("quota")
    with outbox_settings(fake_ses), override_settings(SENDWELL=FAST_RETRIES):
        queue(1)
        drain(time_budget=5)
    message = Message.objects.get()
    assert message.status == MessageStatus.DEFERRED
    assert message.attempt_count == 0
    assert message.attempts.get().outcome == AttemptOutcome.DEFERRED
    assert message.next_attempt_at is not None
    assert message.next_attempt_at > timezone.now() + timedelta(minutes=5)


def test_daily_quota_defers_the_excess_until_the_window_has_room(fake_ses: FakeSES) -> None:
    settings = {**FAST_RETRIES, "MAX_24_HOUR_SEND": 3}
    with outbox_settings(fake_ses), override_settings(SENDWELL=settings):
        queue(5)
        drain(time_budget=5)
    statuses = sorted(Message.objects.values_list("status", flat=True))
    assert statuses == ["deferred", "deferred", "sent", "sent", "sent"]
    assert len(fake_ses.messages) == 3
    for message in Message.objects.filter(status=MessageStatus.DEFERRED):
        assert message.attempt_count == 0
        assert message.last_error_code == "sendwell.quota"
        assert message.next_attempt_at is not None
        # Room comes back when the first sends leave the rolling 24-hour window.
        assert message.next_attempt_at > timezone.now() + timedelta(hours=23)


def test_failover_to_smtp_after_retryable_ses_failures(fake_ses: FakeSES) -> None:
    fake_ses.inject("503", times=100)
    settings = {**FAST_RETRIES, "FAILOVER_AFTER_ATTEMPTS": 2, "CIRCUIT_BREAKER_THRESHOLD": 100}
    with LocalSMTPServer() as smtp:
        smtp_options = {"host": smtp.host, "port": smtp.port}
        with outbox_settings(fake_ses, smtp_options), override_settings(SENDWELL=settings):
            queue(1)
            for _ in range(3):
                drain(time_budget=5)
                make_due()
        [received] = smtp.messages
    message = Message.objects.get()
    assert message.status == MessageStatus.SENT
    assert message.delivered_by == "smtp"
    assert received.recipients == ("user0@example.net",)
    outcomes = list(message.attempts.values_list("transport", "outcome"))
    assert outcomes == [("ses", "retry"), ("ses", "failed_over"), ("smtp", "sent")]
    assert message.recipients.get().transport == "smtp"


def test_permanent_ses_rejection_never_fails_over(fake_ses: FakeSES) -> None:
    with LocalSMTPServer() as smtp:
        smtp_options = {"host": smtp.host, "port": smtp.port}
        with outbox_settings(fake_ses, smtp_options), override_settings(SENDWELL=FAST_RETRIES):
            get_mailer().send_messages([EmailMessage("X", "B", "a@unverified.test", ["t@x.net"])])
            drain(time_budget=5)
        assert smtp.messages == []
    assert Message.objects.get().status == MessageStatus.FAILED


def test_open_circuit_sends_new_messages_over_smtp(fake_ses: FakeSES) -> None:
    fake_ses.inject("500", times=2)
    settings = {
        **FAST_RETRIES,
        "FAILOVER_AFTER_ATTEMPTS": 5,
        "CIRCUIT_BREAKER_THRESHOLD": 2,
        "CONCURRENCY": 1,
    }
    with LocalSMTPServer() as smtp:
        smtp_options = {"host": smtp.host, "port": smtp.port}
        with outbox_settings(fake_ses, smtp_options), override_settings(SENDWELL=settings):
            queue(2)
            drain(time_budget=5)  # two SES failures open the circuit
            queue(1)
            make_due()
            drain(time_budget=5)
        assert len(smtp.messages) == 3
    assert fake_ses.messages == []
    assert set(Message.objects.values_list("delivered_by", flat=True)) == {"smtp"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_message(fake_ses: FakeSES) -> None:
    with outbox_settings(fake_ses):
        queue(60)
    claimed: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(10):
            got = [m.pk for m in claim(5, f"w{threading.get_ident()}")]
            with lock:
                claimed.extend(got)

    in_threads(take, 6)
    assert len(claimed) == 60
    assert len(set(claimed)) == 60


def test_expired_claim_is_taken_over(fake_ses: FakeSES) -> None:
    with outbox_settings(fake_ses), override_settings(SENDWELL=FAST_RETRIES):
        queue(1)
        [first] = claim(10, "dead-worker")  # ... which then dies without a word
        assert claim(10, "other") == []
        assert drain(time_budget=5)["claimed"] == 0  # the lease holds
        Message.objects.filter(pk=first.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        assert drain(time_budget=5)["claimed"] == 1
    message = Message.objects.get()
    assert message.status == MessageStatus.SENT
    assert message.claimed_by == ""
    assert len(fake_ses.messages) == 1


def test_recipients_already_sent_are_not_sent_again(fake_ses: FakeSES) -> None:
    """A message that failed half-way (second chunk of 50) resends only the rest."""
    recipients = [f"r{i}@example.net" for i in range(60)]
    fake_ses.fault_plan = lambda n: "503" if n == 2 else None
    settings = {**FAST_RETRIES, "BACKOFF_BASE_SECONDS": 60.0}
    with outbox_settings(fake_ses), override_settings(SENDWELL=settings):
        get_mailer().send_messages([EmailMessage("Big", "B", SENDER, bcc=recipients)])
        drain(time_budget=5)
        message = Message.objects.get()
        assert message.status == MessageStatus.DEFERRED
        assert message.recipients.filter(status=RecipientStatus.SENT).count() == 50
        make_due()
        drain(time_budget=5)
    sent = [d for m in fake_ses.messages for d in m.destinations]
    assert sorted(sent) == sorted(recipients)  # everyone exactly once
    assert Message.objects.get().status == MessageStatus.SENT


def test_sync_backend_records_every_message(fake_ses: FakeSES) -> None:
    with mailer_settings(SES, **ses_options(fake_ses)):
        message = EmailMessage("Sync", "Body", SENDER, ["a@example.net"], bcc=["b@example.net"])
        assert message.send() == 1
    row = Message.objects.get()
    assert row.status == MessageStatus.SENT
    assert row.transport == "ses"
    assert row.ses_message_ids == [message.ses_message_id]  # type: ignore[attr-defined]
    assert sorted(Recipient.objects.values_list("address", "status")) == [
        ("a@example.net", "sent"),
        ("b@example.net", "sent"),
    ]
    assert Attempt.objects.get().outcome == AttemptOutcome.SENT


def test_sync_backend_waits_for_its_slot_like_any_django_backend(fake_ses: FakeSES) -> None:
    """send_mail() blocks until its slot (here 0.25 s after the first send) instead of raising."""
    settings = {"MAX_SEND_RATE": 4, "MAX_24_HOUR_SEND": 100, "RATE_FRACTION": 1.0}
    with mailer_settings(SES, **ses_options(fake_ses)), override_settings(SENDWELL=settings):
        assert EmailMessage("1", "B", SENDER, ["a@example.net"]).send() == 1
        assert EmailMessage("2", "B", SENDER, ["a@example.net"]).send() == 1
    first, second = fake_ses.messages
    assert second.received_at - first.received_at >= 0.25 - 0.01  # paced, not refused
    assert Message.objects.get(subject="2").status == MessageStatus.SENT


def test_sync_backend_raises_throttled_past_sync_max_wait(fake_ses: FakeSES) -> None:
    settings = {"MAX_SEND_RATE": 1, "MAX_24_HOUR_SEND": 100, "RATE_FRACTION": 1.0}
    with (
        mailer_settings(SES, **ses_options(fake_ses)),
        override_settings(SENDWELL={**settings, "SYNC_MAX_WAIT": 0.2}),
    ):
        # 3 recipients go at once (SES's accounting), and put the account 3 s in debt.
        assert (
            EmailMessage(
                "1", "B", SENDER, ["a@example.net", "b@example.net", "c@example.net"]
            ).send()
            == 1
        )
        started = time.monotonic()
        with pytest.raises(ThrottledError) as excinfo:
            EmailMessage("2", "B", SENDER, ["a@example.net"]).send()
        assert time.monotonic() - started < 2.0  # refused once the slot is past the budget
    assert excinfo.value.retryable
    assert "SYNC_MAX_WAIT (0.2 s)" in str(excinfo.value)
    assert "EMAIL_QUEUE=True" in str(excinfo.value)
    assert len(fake_ses.messages) == 1
    assert Message.objects.get(subject="2").status == MessageStatus.FAILED


@pytest.mark.parametrize("attempt", [1, 2, 3, 8, 20])
def test_backoff_grows_exponentially_with_jitter_and_a_cap(attempt: int) -> None:
    from sendwell.retry import backoff_seconds  # noqa: PLC0415

    settings = {"BACKOFF_BASE_SECONDS": 10.0, "BACKOFF_MAX_SECONDS": 3600.0}
    with override_settings(SENDWELL=settings):
        delays = [backoff_seconds(attempt) for _ in range(200)]
    full = min(3600.0, 10.0 * 2 ** (attempt - 1))
    assert all(full / 2 <= d <= full for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # jittered, not fixed
