"""Operations on the outbox that an operator runs: retry and cancel messages.

The admin's actions and ``manage.py sendwell`` call these; each is a set of conditional
``UPDATE``s whose ``WHERE`` re-checks the status, so that a worker's claim and an operator's
click can never both win.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from sendwell.models import (
    PENDING_RECIPIENT_STATUSES,
    Message,
    MessageStatus,
    Recipient,
    RecipientStatus,
)

# Messages an operator may send again, and those an operator may still stop.
RETRYABLE_STATUSES = (MessageStatus.FAILED, MessageStatus.DEFERRED)
CANCELLABLE_STATUSES = (MessageStatus.QUEUED, MessageStatus.DEFERRED)
# Recipients a retry sends to again. SENT, SUPPRESSED and the feedback statuses (DELIVERED,
# BOUNCED, COMPLAINED) are final: whoever has been sent to is never sent to twice.
REQUEUED_RECIPIENT_STATUSES = (RecipientStatus.FAILED, RecipientStatus.DEFERRED)
_UNSENT_RECIPIENT_STATUSES = (*PENDING_RECIPIENT_STATUSES, RecipientStatus.FAILED)

# Rows per UPDATE: below every database's limit on query parameters (SQLite: 999 before 3.32).
_CHUNK = 500


@dataclasses.dataclass
class ActionResult:
    """What an action changed, and the statuses of the selected messages it left alone."""

    changed: int = 0
    skipped: Counter[str] = dataclasses.field(default_factory=Counter)


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _count_skipped(chunk: list[int], token: str, result: ActionResult) -> None:
    rows = (
        Message.objects.filter(pk__in=chunk)
        .exclude(claimed_by=token)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    for status, count in rows:
        result.skipped[status] += count


def _act(
    ids: Iterable[int],
    kind: str,
    *,
    take: Callable[[QuerySet[Message], datetime, str], int],
    recipients: Callable[[QuerySet[Recipient], datetime], object],
) -> ActionResult:
    """The shape both actions share, chunk by chunk, in one transaction: ``take`` updates the
    eligible messages among a chunk (its WHERE re-checks their status) and marks them with a
    one-off token in ``claimed_by``; ``recipients`` then updates the recipients of exactly those
    messages; the others are counted as skipped by status, and the token is cleared."""
    result = ActionResult()
    token = f"sendwell-admin-{kind}:{uuid.uuid4().hex}"
    for chunk in _chunks(ids):
        now = timezone.now()
        taken = take(Message.objects.filter(pk__in=chunk), now, token)
        if taken:
            marked = Recipient.objects.filter(message__in=chunk, message__claimed_by=token)
            recipients(marked, now)
        _count_skipped(chunk, token, result)
        if taken:
            Message.objects.filter(pk__in=chunk, claimed_by=token).update(claimed_by="")
        result.changed += taken
    return result


def retry_messages(ids: Iterable[int]) -> ActionResult:
    """Requeue the failed/deferred messages among ``ids`` for an immediate attempt.

    Each message gets a fresh retry budget (``attempt_count`` 0; its errors stay in its Attempt
    rows and in ``last_error`` until the next attempt) and its failed/deferred recipients are
    queued again; recipients already sent stay sent. A message with no unsent recipient left is
    skipped. Wakes one worker after the commit if anything was queued.

    The UPDATE checks the status itself, so a message a worker claimed after the operator
    looked is skipped, not requeued under the worker. It marks the rows it took with a one-off
    token in ``claimed_by`` (cleared before the commit) so that the recipients of exactly those
    messages, and nothing else, are requeued.
    """

    def take(messages: QuerySet[Message], now: datetime, token: str) -> int:
        unsent = Recipient.objects.filter(
            message=OuterRef("pk"), status__in=_UNSENT_RECIPIENT_STATUSES
        )
        return (
            messages.filter(status__in=RETRYABLE_STATUSES)
            .filter(Exists(unsent))
            .update(
                status=MessageStatus.QUEUED,
                next_attempt_at=now,
                attempt_count=0,
                claimed_by=token,
                updated_at=now,
            )
        )

    def requeue(recipients: QuerySet[Recipient], now: datetime) -> None:
        recipients.filter(status__in=REQUEUED_RECIPIENT_STATUSES).update(
            status=RecipientStatus.QUEUED, updated_at=now
        )

    with transaction.atomic():
        result = _act(ids, "retry", take=take, recipients=requeue)
        if result.changed:
            # Imported here: defining the task instantiates the TASKS backend, which the admin's
            # autodiscovery at start-up must not depend on.
            from sendwell.tasks import enqueue_drain  # noqa: PLC0415

            transaction.on_commit(enqueue_drain)
    return result


def cancel_messages(ids: Iterable[int], *, by: str) -> ActionResult:
    """Cancel the queued/deferred messages among ``ids``: nobody still waiting is sent to.

    Their pending recipients become ``failed`` with the error "cancelled by <by>"; recipients
    already sent keep their status. A message a worker holds (``sending``) or that is finished is
    skipped: the status is checked in the UPDATE itself, so a worker that claims a message
    between the operator's click and the UPDATE keeps it, and delivers it.
    """
    reason = f"cancelled by {by}"

    def take(messages: QuerySet[Message], now: datetime, token: str) -> int:
        return messages.filter(status__in=CANCELLABLE_STATUSES).update(
            status=MessageStatus.CANCELLED, next_attempt_at=None, claimed_by=token, updated_at=now
        )

    def fail(recipients: QuerySet[Recipient], now: datetime) -> None:
        recipients.filter(status__in=PENDING_RECIPIENT_STATUSES).update(
            status=RecipientStatus.FAILED, error=reason, updated_at=now
        )

    with transaction.atomic():
        return _act(ids, "cancel", take=take, recipients=fail)
