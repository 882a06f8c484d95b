"""The outbox's pipeline: one claimed message, from its pending recipients to its record.

    pending recipients -> suppressed ones left out -> transport (first choice, or failover)
    -> per chunk of recipients:
        renew the claim -> pace -> hand over -> record -> tell the pacer
    -> sent | deferred | retry | failover | failed (the retry policy, sendwell.retry)

Recipients are recorded as sent chunk by chunk, as soon as SES (or the SMTP server) accepts
them, so a retry or a worker that takes over an expired claim sends only to the ones still
pending.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timedelta

from django.utils import timezone

from sendwell import conf
from sendwell.delivery import circuit, claims, records, suppress
from sendwell.delivery.route import Route, pacer_of
from sendwell.exceptions import DeliveryError, ThrottledError
from sendwell.models import AttemptOutcome, Message, MessageStatus
from sendwell.ratelimit import Reservation
from sendwell.retry import Decision, RetryPolicy, decide
from sendwell.transports.base import AcceptedCall, Transport

logger = logging.getLogger("sendwell.delivery")

# Outcome.status when the message's lease expired before its send and another worker claimed it.
CLAIM_LOST = "claim_lost"


@dataclasses.dataclass
class Outcome:
    status: str
    accepted: list[AcceptedCall] = dataclasses.field(default_factory=list)
    error: DeliveryError | None = None


def deliver(message: Message, route: Route, *, worker: str, max_wait: float) -> Outcome:
    """Deliver a claimed message to its pending recipients; record everything that happens."""
    pending, suppressed = suppress.pending_without_suppressed(
        records.pending_recipients(message), list_name=message.list_name
    )
    if suppressed:
        records.record_suppressed(message, suppressed, left=len(pending))
    if not pending:  # sent before (a claim taken over after the last chunk), or suppressed
        records.record_nothing_left(message)
        return Outcome(message.status)
    transport = choose_transport(message, route)
    pacer = pacer_of(transport)
    accepted: list[AcceptedCall] = []
    for start in range(0, len(pending), transport.max_recipients):
        chunk = pending[start : start + transport.max_recipients]
        # Before the limiter, not between its wait and the send: a database write there (on
        # SQLite, waiting for the write lock) would start the send late, off its slot.
        if not claims.renew(message):
            logger.info(
                "sendwell message %s: its lease expired before it was sent and another worker "
                "claimed it; leaving it to that worker",
                message.pk,
            )
            return Outcome(CLAIM_LOST, accepted)
        slot = pacer.acquire(len(chunk), max_wait=max_wait) if pacer is not None else None
        if slot is not None and not slot.allowed:
            return _defer(message, slot.reservation, accepted, transport.name)
        started = timezone.now()
        try:
            calls = transport.send(records.prepared_from(message, tuple(a for _, a in chunk)))
        except DeliveryError as error:
            sent = list(error.accepted)
            records.record_accepted(
                message, chunk, sent, transport=transport.name, started=started, worker=worker
            )
            if pacer is not None and slot is not None:
                pacer.outcome(slot, sent=sum(len(call.recipients) for call in sent), error=error)
            return _after_failure(
                message, route, transport, error, started=started, worker=worker, accepted=accepted
            )
        records.record_accepted(
            message, chunk, calls, transport=transport.name, started=started, worker=worker
        )
        accepted.extend(calls)
        if pacer is not None and slot is not None:
            pacer.outcome(slot, sent=len(chunk))
    if route.failover and transport is route.first:
        circuit.record_success(transport)
    records.record_sent(message, transport=transport.name)
    return Outcome(MessageStatus.SENT, accepted)


def choose_transport(message: Message, route: Route) -> Transport:
    """The route's first transport, or the next one once the first has failed the message
    ``FAILOVER_AFTER_ATTEMPTS`` times or its circuit breaker is open."""
    fallback = route.after(route.first)
    if fallback is None:
        return route.first
    if message.attempt_count >= int(conf.setting("FAILOVER_AFTER_ATTEMPTS")):
        return fallback
    return fallback if circuit.is_open(route.first) else route.first


def _defer(
    message: Message, reservation: Reservation, accepted: list[AcceptedCall], transport: str
) -> Outcome:
    """The pacer said "not now": defer to when there is room (not an attempt, not an error)."""
    retry_at = reservation.retry_at or time.time() + 1
    reason = (
        "daily sending quota reached; deferred until the 24-hour window has room"
        if reservation.reason == "quota"
        else "send rate limit reached; deferred"
    )
    records.record_deferred(
        message,
        until=datetime.fromtimestamp(retry_at, tz=timezone.get_current_timezone()),
        reason=reason,
        code=f"sendwell.{reservation.reason}",
    )
    error = ThrottledError(f"sendwell: {reason}", transport=transport)
    return Outcome(MessageStatus.DEFERRED, accepted, error)


# What each kind of decision is recorded as: the attempt's outcome and the message's status.
_RECORDED_AS = {
    "defer": (AttemptOutcome.DEFERRED, MessageStatus.DEFERRED),
    "retry": (AttemptOutcome.RETRY, MessageStatus.DEFERRED),
    "failover": (AttemptOutcome.FAILED_OVER, MessageStatus.DEFERRED),
    "fail": (AttemptOutcome.FAILED, MessageStatus.FAILED),
}


def _after_failure(
    message: Message,
    route: Route,
    transport: Transport,
    error: DeliveryError,
    *,
    started: datetime,
    worker: str,
    accepted: list[AcceptedCall],
) -> Outcome:
    now = timezone.now()
    decision: Decision = decide(
        error,
        attempts=message.attempt_count,
        age=(now - message.created_at).total_seconds(),
        policy=RetryPolicy.from_settings(),
        can_fail_over=route.after(transport) is not None,
    )
    if decision.counts_against_ses:
        circuit.record_failure(transport)
    outcome, status = _RECORDED_AS[decision.kind]
    records.record_failure(
        message,
        error,
        outcome=outcome,
        status=status,
        attempts=decision.attempts,
        next_attempt_at=None if decision.delay is None else now + timedelta(seconds=decision.delay),
        transport=transport.name,
        started=started,
        worker=worker,
    )
    log = logger.warning if status == MessageStatus.FAILED else logger.info
    attempts = decision.attempts
    log("sendwell message %s: %s after attempt %s: %s", message.pk, outcome, attempts, error)
    return Outcome(status, accepted, error)
