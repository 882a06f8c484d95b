"""The synchronous backends' pipeline: deliver now, in the caller's thread, then record.

    prepare -> suppressed recipients left out -> first send slot (pacer) -> hand over ->
    further calls and SES throttling retried within SYNC_MAX_WAIT -> recorded with the batch
    (records.SyncRecords)

It blocks like any Django backend until SES accepts the message or fails for good.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from django.core.mail import EmailMessage
from django.utils import timezone

from sendwell import conf
from sendwell.db import bookkeeping_alias
from sendwell.delivery import suppress
from sendwell.delivery.records import SyncRecords, build_record
from sendwell.delivery.route import Route, pacer_of
from sendwell.exceptions import DeliveryError, ThrottledError, TransientDeliveryError
from sendwell.mime import PreparedMessage
from sendwell.models import Message
from sendwell.pacing import Pacer, Slot
from sendwell.ratelimit import Reservation
from sendwell.transports.base import AcceptedCall, Transport

# Waits this short are taken even when SYNC_MAX_WAIT is 0: concurrent requests at a high rate
# get slots a fraction of a millisecond apart, and refusing those would be absurd.
SYNC_WAIT_TOLERANCE = 0.005
# The first pause before a synchronous send retries SES's throttling; it doubles per retry.
SYNC_THROTTLE_PAUSE = 0.05


def send_now(
    email: EmailMessage, route: Route, *, mailer: str, records: SyncRecords | None = None
) -> list[AcceptedCall] | None:
    """Deliver ``email`` now and record it; raise its DeliveryError (None: nobody to send to).

    Waits for its send slot and retries SES's throttling itself, for at most ``SYNC_MAX_WAIT``
    seconds in all; past that the message is recorded as failed and ThrottledError (retryable)
    raised.

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
    message, everyone = record
    transport = route.first  # a synchronous backend has one transport: no failover
    prepared, suppressed = suppress.split(everyone)
    if prepared is None:
        records.add_suppressed(message, suppressed)
        refusal = suppress.all_suppressed_error(suppressed, transport.name)
        if refusal is not None:
            raise refusal
        return None
    pacer = pacer_of(transport)
    if pacer is None:
        return SyncSend(message, prepared, transport, timezone.now(), suppressed=suppressed)
    max_wait = float(conf.setting("SYNC_MAX_WAIT"))
    # Inside the caller's transaction (on PostgreSQL), the limiter's rows are locked and
    # committed on sendwell's own connection: see sendwell.db.
    using = bookkeeping_alias()
    send = SyncSend(
        message,
        prepared,
        transport,
        timezone.now(),
        pacer=pacer,
        using=using,
        deadline=time.monotonic() + max_wait + SYNC_WAIT_TOLERANCE,
        suppressed=suppressed,
    )
    first = min(len(prepared.recipients), transport.max_recipients)
    slot = pacer.acquire(first, max_wait=max_wait + SYNC_WAIT_TOLERANCE, using=using)
    if not slot.allowed:
        error = no_slot(slot.reservation, transport.name)
        records.add(
            message,
            send.addresses,
            calls=[],
            error=error,
            transport=transport.name,
            started=send.started,
            attempted=False,
            suppressed=suppressed,
        )
        raise error
    send.slot = slot
    return send


@dataclasses.dataclass
class SyncSend:
    """A synchronous send between its first slot and SES's last answer.

    :func:`begin_send`, :meth:`complete` and the ``succeeded``/``failed`` methods run in the
    caller's thread (they use the database); only :meth:`first_call` may run in another thread,
    which is how a backend keeps several SES calls in flight (SESBackend.send_messages).
    """

    message: Message
    prepared: PreparedMessage
    transport: Transport
    started: datetime
    # Paced transports (SES) only: the account's pacer, the slot of the first call, the database
    # connection the pacer keeps its books on, and when the time allowed for waiting runs out
    # (monotonic). An unpaced transport (SMTP) takes the whole message in one hand-over.
    pacer: Pacer | None = None
    slot: Slot | None = None
    using: str = ""
    deadline: float = 0.0
    # The recipients left out because they are suppressed (recorded with the message).
    suppressed: tuple[str, ...] = ()

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
        failures_left = max(1, pacer.options.max_attempts) - 1
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
                raise no_slot(slot.reservation, self.transport.name, accepted=accepted)
            attempt = functools.partial(self.transport.send, self._part(part))

    def succeeded(self, calls: list[AcceptedCall], records: SyncRecords) -> None:
        records.add(
            self.message,
            self.addresses,
            calls=calls,
            error=None,
            transport=self.transport.name,
            started=self.started,
            suppressed=self.suppressed,
        )

    def failed(self, error: DeliveryError, records: SyncRecords) -> None:
        """Record ``error`` (the caller raises it)."""
        records.add(
            self.message,
            self.addresses,
            calls=list(error.accepted),
            error=error,
            transport=self.transport.name,
            started=self.started,
            suppressed=self.suppressed,
        )


def no_slot(
    reservation: Reservation, transport: str, *, accepted: Sequence[AcceptedCall] = ()
) -> ThrottledError:
    """The error of a synchronous send that got no slot in time (or hit the daily quota)."""
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
