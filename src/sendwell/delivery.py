"""Delivery: the one code path every message takes, queued or not.

record -> claim -> (per chunk of recipients) pace -> transport -> record the outcome.

The synchronous backends call :func:`send_now`; the outbox worker calls :func:`claim` and
:func:`deliver`. Pacing (:mod:`sendwell.pacing`), error classification, retries
(:mod:`sendwell.retry`), failover and recording therefore exist once. Recipients are recorded as
sent chunk by chunk, as soon as SES (or the SMTP server) accepts them, so a retry or a worker that
takes over an expired claim sends only to the ones that are still pending.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.utils import timezone

from sendwell import conf
from sendwell.db import bookkeeping_alias
from sendwell.exceptions import (
    DeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from sendwell.mime import PreparedMessage, prepare
from sendwell.models import (
    PENDING_RECIPIENT_STATUSES,
    Attempt,
    AttemptOutcome,
    CircuitState,
    Message,
    MessageStatus,
    Recipient,
    RecipientStatus,
    Transport,
)
from sendwell.pacing import Pacer, Slot, pacer_for
from sendwell.ratelimit import Reservation
from sendwell.retry import RetryPolicy, decide
from sendwell.transports.base import AcceptedCall
from sendwell.transports.base import Transport as TransportProtocol
from sendwell.transports.ses import SESTransport

logger = logging.getLogger("sendwell.delivery")

_WORKER_PREFIX = f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class Route:
    """The transports a mailer may use for a message."""

    ses: SESTransport | None
    smtp: TransportProtocol | None
    failover: bool = False

    @property
    def name(self) -> str:
        if self.ses is not None and self.smtp is not None and self.failover:
            return Transport.FAILOVER
        return Transport.SES if self.ses is not None else Transport.SMTP


def worker_name() -> str:
    return f"{_WORKER_PREFIX}:{uuid.uuid4().hex[:8]}"


# --- recording ------------------------------------------------------------------------------


def build_record(
    email: EmailMessage, route: Route, *, mailer: str
) -> tuple[Message, PreparedMessage] | None:
    """An unsaved :class:`Message` for ``email`` and the prepared message (None: nobody).

    Everything that can be wrong with a message is found here, in the caller's request, not by a
    worker later: addresses, headers, tags, size.
    """
    default_set = route.ses.options.configuration_set if route.ses is not None else None
    prepared = prepare(email, configuration_set=default_set)
    if prepared is None:
        return None
    if route.ses is not None:
        route.ses.check_size(prepared)
    message = Message(
        mailer=mailer,
        transport=route.name,
        from_email=prepared.envelope_from,
        subject=str(email.subject)[:998],
        raw=prepared.raw,
        configuration_set=prepared.configuration_set or "",
        tags=dict(prepared.tags),
    )
    return message, prepared


def prepared_from(message: Message, recipients: tuple[str, ...]) -> PreparedMessage:
    """What a transport sends for a stored message, to ``recipients``."""
    return PreparedMessage(
        envelope_from=message.from_email,
        recipients=recipients,
        raw=bytes(message.raw),
        configuration_set=message.configuration_set or None,
        tags=tuple(message.tags.items()),
    )


def save_queued(records: Sequence[tuple[Message, PreparedMessage]]) -> None:
    """Insert queued messages and their recipients, due now (the caller provides the
    transaction)."""
    now = timezone.now()
    messages = [message for message, _ in records]
    for message in messages:
        message.status = MessageStatus.QUEUED
        message.next_attempt_at = now
    Message.objects.bulk_create(messages)
    Recipient.objects.bulk_create(
        [
            Recipient(message=message, address=address)
            for message, prepared in records
            for address in prepared.recipients
        ]
    )


# --- claiming -------------------------------------------------------------------------------


def claim(limit: int, worker: str) -> list[Message]:
    """Claim up to ``limit`` due messages for ``worker``: no other worker can have them.

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so that concurrent workers take different
    rows without waiting. SQLite allows one writer at a time, so a single ``UPDATE`` whose
    condition re-checks the status is already exclusive.
    """
    now = timezone.now()
    lease_end = now + timedelta(seconds=float(conf.setting("LEASE_SECONDS")))
    token = f"{worker}:{uuid.uuid4().hex[:8]}"
    # next_attempt_at is set exactly while a message is due (see the model): this condition alone
    # is what lets SQLite and PostgreSQL use the partial index sendwell_message_due.
    due = Message.objects.filter(next_attempt_at__lte=now)
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            ids = list(
                due.order_by("next_attempt_at")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:limit]
            )
            if ids:
                Message.objects.filter(pk__in=ids).update(
                    status=MessageStatus.SENDING, claimed_by=token, next_attempt_at=lease_end
                )
    else:
        oldest = due.order_by("next_attempt_at").values("pk")[:limit]
        # The outer filter repeats the condition, so a row claimed meanwhile is not taken again.
        due.filter(pk__in=oldest).update(
            status=MessageStatus.SENDING, claimed_by=token, next_attempt_at=lease_end
        )
    # Found again through the index: our rows are exactly those with our lease end and token.
    return list(
        Message.objects.filter(
            next_attempt_at=lease_end, claimed_by=token, status=MessageStatus.SENDING
        ).order_by()
    )


def _renew_claim(message: Message) -> bool:
    """Extend our lease on ``message`` for one send; False if we no longer hold it.

    A claim covers a whole batch, and a slow batch can outlast the lease: a message still
    waiting its turn in this worker then looks abandoned, and another worker takes it over.
    Checking and extending the claim before each send means that only its holder sends,
    provided the wait for the rate limiter (at most the worker's max wait) plus one send
    (connect + read timeouts) is shorter than ``LEASE_SECONDS``.
    """
    lease = timedelta(seconds=float(conf.setting("LEASE_SECONDS")))
    now = timezone.now()
    if message.next_attempt_at is not None and message.next_attempt_at - now > lease / 2:
        # More than half the lease left: nobody else can have taken the message, and one
        # limiter wait plus one send fit in what is left. Saves a write per message.
        return True
    lease_end = now + lease
    renewed = Message.objects.filter(
        pk=message.pk, claimed_by=message.claimed_by, status=MessageStatus.SENDING
    ).update(next_attempt_at=lease_end)
    if renewed:
        message.next_attempt_at = lease_end
    return bool(renewed)


def _release(message: Message, **fields: object) -> bool:
    """Update ``message`` only while we still hold its claim."""
    fields.setdefault("claimed_by", "")
    updated = Message.objects.filter(pk=message.pk, claimed_by=message.claimed_by).update(
        **fields, updated_at=timezone.now()
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return bool(updated)


# --- delivering -----------------------------------------------------------------------------


# Outcome.status when the message's lease expired before its send and another worker claimed it.
CLAIM_LOST = "claim_lost"


@dataclasses.dataclass
class Outcome:
    status: str
    accepted: list[AcceptedCall] = dataclasses.field(default_factory=list)
    error: DeliveryError | None = None


def deliver(message: Message, route: Route, *, worker: str, max_wait: float) -> Outcome:
    """Deliver a claimed message to its pending recipients; record everything that happens."""
    pending = list(
        message.recipients.filter(status__in=PENDING_RECIPIENT_STATUSES).values_list(
            "pk", "address"
        )
    )
    accepted: list[AcceptedCall] = []
    if not pending:
        _finish_sent(message)
        return Outcome(MessageStatus.SENT, accepted)
    transport = _choose_transport(message, route)
    pacer = pacer_for(route.ses.options) if transport is route.ses and route.ses else None
    size = transport.max_recipients
    for start in range(0, len(pending), size):
        chunk = pending[start : start + size]
        # Before the limiter, not between its wait and the send: a database write there (on
        # SQLite, waiting for the write lock) would start the send late, off its slot.
        if not _renew_claim(message):
            logger.info(
                "sendwell message %s: its lease expired before it was sent and another worker "
                "claimed it; leaving it to that worker",
                message.pk,
            )
            return Outcome(CLAIM_LOST, accepted)
        prepared = prepared_from(message, tuple(address for _, address in chunk))
        slot: Slot | None = None
        if pacer is not None:
            slot = pacer.acquire(len(chunk), max_wait=max_wait)
            if not slot.allowed:
                return _throttled(message, slot.reservation, accepted, transport.name, worker)
        started = timezone.now()
        try:
            calls = transport.send(prepared)
        except DeliveryError as error:
            calls = list(error.accepted)
            if calls:
                _record_chunk(
                    message,
                    chunk=chunk,
                    calls=calls,
                    transport_name=transport.name,
                    started=started,
                    worker=worker,
                )
            if pacer is not None and slot is not None:
                sent = sum(len(call.recipients) for call in calls)
                pacer.outcome(slot, sent=sent, error=error)
            return _failed_attempt(
                message,
                route=route,
                transport=transport,
                error=error,
                started=started,
                worker=worker,
                accepted=accepted,
            )
        # Recorded first: what SES accepted must be on record before anything else can fail.
        _record_chunk(
            message,
            chunk=chunk,
            calls=calls,
            transport_name=transport.name,
            started=started,
            worker=worker,
        )
        accepted.extend(calls)
        if pacer is not None and slot is not None:
            pacer.outcome(slot, sent=len(chunk))
    if transport is route.ses and route.failover:
        _circuit_success(route)
    _finish_sent(message, transport_name=transport.name)
    return Outcome(MessageStatus.SENT, accepted)


def _choose_transport(message: Message, route: Route) -> TransportProtocol:
    if route.ses is None:
        assert route.smtp is not None
        return route.smtp
    if route.smtp is None or not route.failover:
        return route.ses
    if message.attempt_count >= int(conf.setting("FAILOVER_AFTER_ATTEMPTS")):
        return route.smtp
    state = CircuitState.objects.filter(name=_circuit_name(route)).first()
    if state is not None and state.is_open():
        return route.smtp
    return route.ses


def _record_chunk(
    message: Message,
    *,
    chunk: list[tuple[int, str]],
    calls: list[AcceptedCall],
    transport_name: str,
    started: datetime,
    worker: str,
) -> None:
    now = timezone.now()
    by_address = {address.lower(): call.message_id for call in calls for address in call.recipients}
    with transaction.atomic():
        for call in calls:
            ids = [
                pk
                for pk, address in chunk
                if address.lower() in {a.lower() for a in call.recipients}
            ]
            Recipient.objects.filter(pk__in=ids).update(
                status=RecipientStatus.SENT,
                ses_message_id=call.message_id,
                transport=transport_name,
                sent_at=now,
                error="",
            )
        Attempt.objects.create(
            message=message,
            started_at=started,
            finished_at=now,
            transport=transport_name,
            outcome=AttemptOutcome.SENT,
            recipients=len(by_address),
            ses_message_ids=[call.message_id for call in calls if call.message_id],
            worker=worker,
        )
    message.ses_message_ids = [
        *message.ses_message_ids,
        *(c.message_id for c in calls if c.message_id),
    ]


def _finish_sent(message: Message, *, transport_name: str = "") -> None:
    _release(
        message,
        status=MessageStatus.SENT,
        sent_at=timezone.now(),
        next_attempt_at=None,
        delivered_by=transport_name or message.delivered_by,
        ses_message_ids=message.ses_message_ids,
        last_error="",
        last_error_code="",
    )


def _throttled(
    message: Message,
    reservation: Reservation,
    accepted: list[AcceptedCall],
    transport_name: str,
    worker: str,
) -> Outcome:
    """The limiter said "not now": defer to when there is room (not an attempt, not an error)."""
    retry_at = reservation.retry_at or time.time() + 1
    reason = (
        "daily sending quota reached; deferred until the 24-hour window has room"
        if reservation.reason == "quota"
        else "send rate limit reached; deferred"
    )
    error = ThrottledError(f"sendwell: {reason}", transport=transport_name)
    _release(
        message,
        status=MessageStatus.DEFERRED,
        next_attempt_at=datetime.fromtimestamp(retry_at, tz=timezone.get_current_timezone()),
        last_error=reason,
        last_error_code=f"sendwell.{reservation.reason}",
    )
    Recipient.objects.filter(message=message, status=RecipientStatus.SENDING).update(
        status=RecipientStatus.DEFERRED
    )
    return Outcome(MessageStatus.DEFERRED, accepted, error)


_OUTCOMES = {
    "defer": (AttemptOutcome.DEFERRED, MessageStatus.DEFERRED),
    "retry": (AttemptOutcome.RETRY, MessageStatus.DEFERRED),
    "failover": (AttemptOutcome.FAILED_OVER, MessageStatus.DEFERRED),
    "fail": (AttemptOutcome.FAILED, MessageStatus.FAILED),
}


def _failed_attempt(
    message: Message,
    *,
    route: Route,
    transport: TransportProtocol,
    error: DeliveryError,
    started: datetime,
    worker: str,
    accepted: list[AcceptedCall],
) -> Outcome:
    now = timezone.now()
    decision = decide(
        error,
        attempts=message.attempt_count,
        age=(now - message.created_at).total_seconds(),
        policy=RetryPolicy.from_settings(),
        can_fail_over=transport is route.ses and route.failover and route.smtp is not None,
    )
    if decision.counts_against_ses:
        _circuit_failure(route)
    outcome, status = _OUTCOMES[decision.kind]
    attempts = decision.attempts
    next_at = None if decision.delay is None else now + timedelta(seconds=decision.delay)

    with transaction.atomic():
        Attempt.objects.create(
            message=message,
            started_at=started,
            finished_at=now,
            transport=transport.name,
            outcome=outcome,
            recipients=0,
            error_code=error.code or type(error).__name__,
            error=str(error),
            worker=worker,
        )
        pending = Recipient.objects.filter(message=message, status__in=PENDING_RECIPIENT_STATUSES)
        if status == MessageStatus.FAILED:
            pending.update(status=RecipientStatus.FAILED, error=str(error))
        else:
            pending.update(status=RecipientStatus.DEFERRED)
        _release(
            message,
            status=status,
            attempt_count=attempts,
            next_attempt_at=next_at,
            last_error=str(error),
            last_error_code=error.code or type(error).__name__,
            ses_message_ids=message.ses_message_ids,
        )
    log = logger.warning if status == MessageStatus.FAILED else logger.info
    log("sendwell message %s: %s after attempt %s: %s", message.pk, outcome, attempts, error)
    return Outcome(status, accepted, error)


# --- the failover circuit breaker -----------------------------------------------------------


def _circuit_name(route: Route) -> str:
    assert route.ses is not None
    return pacer_for(route.ses.options).name


def _circuit_failure(route: Route) -> None:
    name = _circuit_name(route)
    with transaction.atomic():
        state, _ = CircuitState.objects.select_for_update().get_or_create(name=name)
        state.consecutive_failures += 1
        if state.consecutive_failures >= int(conf.setting("CIRCUIT_BREAKER_THRESHOLD")):
            seconds = float(conf.setting("CIRCUIT_BREAKER_SECONDS"))
            state.open_until = timezone.now() + timedelta(seconds=seconds)
        state.save()


def _circuit_success(route: Route) -> None:
    CircuitState.objects.filter(name=_circuit_name(route), consecutive_failures__gt=0).update(
        consecutive_failures=0, open_until=None
    )


# --- the synchronous path -------------------------------------------------------------------


def send_now(
    email: EmailMessage, route: Route, *, mailer: str, records: SyncRecords | None = None
) -> list[AcceptedCall] | None:
    """Deliver ``email`` now, in the caller's thread, and record it; raise its DeliveryError.

    Blocks like any Django backend until SES accepts the message or fails for good: it waits for
    its send slot and retries SES's throttling itself, for at most ``SYNC_MAX_WAIT`` seconds in
    all; past that the message is recorded as failed and ThrottledError (retryable) raised.

    The record is written after the send, into ``records`` (which the caller flushes, once per
    batch), or at once without it: a synchronous send costs a few queries, not a dozen. A crash
    before the flush leaves messages that were delivered but not recorded; nothing is lost or
    sent twice.
    """
    if records is None:
        records = SyncRecords()
        try:
            return send_now(email, route, mailer=mailer, records=records)
        finally:
            records.flush()
    send = begin_send(email, route, mailer=mailer, records=records)
    if send is None:
        return None
    try:
        calls = send.complete(send.first_call)
    except DeliveryError as error:
        send.failed(error, records)
        raise
    send.succeeded(calls, records)
    return calls


# Waits this short are taken even when SYNC_MAX_WAIT is 0: concurrent requests at a high rate
# get slots a fraction of a millisecond apart, and refusing those would be absurd.
SYNC_WAIT_TOLERANCE = 0.005
# The first pause before a synchronous send retries SES's throttling; it doubles per retry.
SYNC_THROTTLE_PAUSE = 0.05


@dataclasses.dataclass
class SyncSend:
    """A synchronous send between its first slot and SES's last answer.

    :func:`begin_send`, :meth:`complete` and the ``succeeded``/``failed`` methods run in the
    caller's thread (they use the database); only :meth:`first_call` may run in another thread,
    which is how a backend keeps several SES calls in flight (SESBackend.send_messages).
    """

    message: Message
    prepared: PreparedMessage
    transport: TransportProtocol
    started: datetime
    # SES only: the account's pacer, the slot of the first call, the database connection the
    # pacer keeps its books on, and when the time allowed for waiting runs out (monotonic).
    pacer: Pacer | None = None
    slot: Slot | None = None
    using: str = ""
    deadline: float = 0.0

    @property
    def addresses(self) -> list[str]:
        return list(self.prepared.recipients)

    def _part(self, recipients: Sequence[str]) -> PreparedMessage:
        return dataclasses.replace(self.prepared, recipients=tuple(recipients))

    def first_call(self) -> list[AcceptedCall]:
        """The first SES call (SMTP: the whole message); may run in any thread."""
        if self.pacer is None:
            return self.transport.send(self.prepared)
        return self.transport.send(self._part(self.addresses[: self.transport.max_recipients]))

    def complete(self, first: Callable[[], list[AcceptedCall]]) -> list[AcceptedCall]:
        """Take the first call's outcome (``first()`` returns or raises it), then send the rest.

        SES: each further call of up to 50 recipients gets its own slot. A throttled call is
        retried with a fresh slot (after a short, doubling pause) while the deadline allows; a
        5xx or connection error up to the ``max_attempts`` option in all; a timeout or a
        connection dropped while waiting for the answer never (SES may have accepted it).
        botocore retries nothing itself (see sendwell.aws): the pacer must hear of every
        throttle to learn the rate. Raises the last error, with every call that succeeded in its
        ``accepted``.
        """
        if self.pacer is None or self.slot is None:
            return first()
        pacer, slot = self.pacer, self.slot
        accepted: list[AcceptedCall] = []
        pending = self.addresses
        attempt, pause = first, SYNC_THROTTLE_PAUSE
        failures_left = max(1, self.pacer.options.max_attempts) - 1
        while True:
            try:
                calls = attempt()
                error: DeliveryError | None = None
            except DeliveryError as failure:
                calls, error = list(failure.accepted), failure
            sent = {address.lower() for call in calls for address in call.recipients}
            accepted.extend(calls)
            pacer.outcome(slot, sent=len(sent), error=error)
            pending = [address for address in pending if address.lower() not in sent]
            if error is not None:
                error.accepted = list(accepted)
                left = self.deadline - time.monotonic()
                if isinstance(error, ThrottledError):
                    # The pacer has been told (and slows down if it is learning the rate).
                    if left <= pause:
                        raise error
                elif (
                    failures_left <= 0
                    or not isinstance(error, TransientDeliveryError)
                    or error.in_doubt
                ):
                    raise error
                else:
                    failures_left -= 1
                # The same call again in a moment, through the pacer.
                time.sleep(pause * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                pause *= 2
            elif not pending:
                return accepted
            part = pending[: self.transport.max_recipients]
            left = max(0.0, self.deadline - time.monotonic())
            try:
                slot = pacer.acquire(len(part), max_wait=left, using=self.using)
            except Exception as failure:  # the database or Redis, with part of it sent
                error = TransientDeliveryError(
                    f"sendwell: could not pace the rest of the message ({failure})",
                    remedy="the recipients in 'accepted' were sent; retry the others later",
                    transport=self.transport.name,
                )
                error.accepted = list(accepted)
                raise error from failure
            if not slot.allowed:
                raise _no_slot(slot.reservation, self.transport.name, accepted=accepted)
            attempt = functools.partial(self.transport.send, self._part(part))

    def succeeded(self, calls: list[AcceptedCall], records: SyncRecords) -> None:
        records.add(
            self.message,
            self.addresses,
            calls=calls,
            error=None,
            transport_name=self.transport.name,
            started=self.started,
        )

    def failed(self, error: DeliveryError, records: SyncRecords) -> None:
        """Record ``error`` (the caller raises it)."""
        records.add(
            self.message,
            self.addresses,
            calls=list(error.accepted),
            error=error,
            transport_name=self.transport.name,
            started=self.started,
        )


def _no_slot(
    reservation: Reservation, transport: str, *, accepted: Sequence[AcceptedCall] = ()
) -> ThrottledError:
    max_wait = float(conf.setting("SYNC_MAX_WAIT"))
    quota_reached = reservation.reason == "quota"
    error = ThrottledError(
        "sendwell: "
        + (
            "the account's 24-hour sending quota is reached"
            if quota_reached
            else f"no send slot within SYNC_MAX_WAIT ({max_wait:g} s)"
        ),
        remedy="send through the outbox (EMAIL_QUEUE=True), which waits for room"
        + ("" if quota_reached else ", or raise SENDWELL['SYNC_MAX_WAIT']")
        + "; retrying later also works",
        code=f"sendwell.{reservation.reason}",
        transport=transport,
    )
    error.accepted = list(accepted)
    return error


def begin_send(
    email: EmailMessage, route: Route, *, mailer: str, records: SyncRecords
) -> SyncSend | None:
    """Render ``email`` and take its first send slot (None: nobody to send to).

    Waits for the slot up to ``SYNC_MAX_WAIT``; raises ThrottledError, recorded in ``records``,
    when none comes in time, and the message's own errors (addresses, headers, size) unrecorded.
    """
    record = build_record(email, route, mailer=mailer)
    if record is None:
        return None
    message, prepared = record
    if route.ses is None:
        assert route.smtp is not None
        return SyncSend(message, prepared, route.smtp, timezone.now())
    max_wait = float(conf.setting("SYNC_MAX_WAIT"))
    # Inside the caller's transaction (on PostgreSQL), the limiter's rows are locked and
    # committed on sendwell's own connection: see sendwell.db.
    using = bookkeeping_alias()
    send = SyncSend(
        message,
        prepared,
        route.ses,
        timezone.now(),
        pacer=pacer_for(route.ses.options),
        using=using,
        deadline=time.monotonic() + max_wait + SYNC_WAIT_TOLERANCE,
    )
    assert send.pacer is not None
    first = min(len(prepared.recipients), route.ses.max_recipients)
    slot = send.pacer.acquire(first, max_wait=max_wait + SYNC_WAIT_TOLERANCE, using=using)
    if not slot.allowed:
        error = _no_slot(slot.reservation, send.transport.name)
        records.add(
            message,
            send.addresses,
            calls=[],
            error=error,
            transport_name=send.transport.name,
            started=send.started,
            attempted=False,
        )
        raise error
    send.slot = slot
    return send


class SyncRecords:
    """Records of synchronous sends, written together in one transaction.

    A backend's ``send_messages()`` flushes them once at the end (also when it raises): three
    INSERTs for the whole batch instead of three per message. A process that dies in the middle
    of a batch loses the records of that batch's sent messages, never the messages.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[Recipient] = []
        self.attempts: list[Attempt] = []

    def add(
        self,
        message: Message,
        addresses: list[str],
        *,
        calls: list[AcceptedCall],
        error: DeliveryError | None,
        transport_name: str,
        started: datetime,
        attempted: bool = True,
    ) -> None:
        """Add one sent (or failed) message.

        A failed synchronous send is recorded as failed even when retryable: the caller got the
        error and decides; the outbox must not also retry it behind its back (that would send
        twice). An operator can retry it from the admin.
        """
        now = timezone.now()
        ids = {address.lower(): call.message_id for call in calls for address in call.recipients}
        message.status = MessageStatus.SENT if error is None else MessageStatus.FAILED
        message.attempt_count = 1 if attempted else 0
        message.next_attempt_at = None
        message.ses_message_ids = [call.message_id for call in calls if call.message_id]
        if error is None:
            message.sent_at = now
            message.delivered_by = transport_name
        else:
            message.last_error = str(error)
            message.last_error_code = error.code or type(error).__name__
        self.messages.append(message)
        for address in addresses:
            sent = address.lower() in ids
            self.recipients.append(
                Recipient(
                    message=message,
                    address=address,
                    status=RecipientStatus.SENT if sent else RecipientStatus.FAILED,
                    ses_message_id=ids.get(address.lower(), ""),
                    transport=transport_name if sent else "",
                    sent_at=now if sent else None,
                    error="" if sent or error is None else str(error),
                )
            )
        if attempted:
            self.attempts.append(
                Attempt(
                    message=message,
                    started_at=started,
                    finished_at=now,
                    transport=transport_name,
                    outcome=AttemptOutcome.SENT if error is None else AttemptOutcome.FAILED,
                    recipients=len(ids),
                    ses_message_ids=message.ses_message_ids,
                    error_code="" if error is None else message.last_error_code,
                    error="" if error is None else str(error),
                    worker=_WORKER_PREFIX,
                )
            )

    def flush(self) -> None:
        if not self.messages:
            return
        # What was sent stays recorded even if the caller's transaction rolls back (on
        # PostgreSQL; see sendwell.db): SES cannot take the email back.
        using = bookkeeping_alias()
        with transaction.atomic(using=using):
            # bulk_create sets the primary keys (PostgreSQL and SQLite return them), which the
            # recipients and attempts then refer to.
            Message.objects.using(using).bulk_create(self.messages)
            # The rows were built before the database was chosen; Django only relates rows
            # of one database, so say which before they refer to their saved messages.
            for row in (*self.recipients, *self.attempts):
                row._state.db = using
            Recipient.objects.using(using).bulk_create(self.recipients)
            Attempt.objects.using(using).bulk_create(self.attempts)
        self.messages, self.recipients, self.attempts = [], [], []
