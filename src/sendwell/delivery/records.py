"""The recorder: the only writer of Message, Recipient and Attempt rows for a delivery.

Both paths record with the same rules (:func:`accepted_ids`, :func:`attempt_row`):

- the outbox's messages exist before they are sent, and workers watch their rows, so their
  outcomes are written as they happen: :func:`record_accepted` as soon as SES (or the SMTP
  server) accepts recipients, then :func:`record_failure`, :func:`record_sent` or
  :func:`record_deferred`, each only while the worker still holds the claim;
- a synchronous send's rows are written after it, together with its batch's
  (:class:`SyncRecords`): a few queries per batch instead of a dozen per message.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from datetime import datetime

from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from sendwell import feedback, signals
from sendwell.db import bookkeeping_alias
from sendwell.delivery.claims import WORKER_PREFIX, release
from sendwell.delivery.route import Route
from sendwell.exceptions import DeliveryError
from sendwell.mime import PreparedMessage, prepare
from sendwell.models import (
    PENDING_RECIPIENT_STATUSES,
    Attempt,
    AttemptOutcome,
    Message,
    MessageStatus,
    Recipient,
    RecipientStatus,
)
from sendwell.transports.base import AcceptedCall

logger = logging.getLogger("sendwell.delivery")

# --- the rules -------------------------------------------------------------------------------


def accepted_ids(calls: Sequence[AcceptedCall]) -> dict[str, str]:
    """The SES message id each accepted address got (SMTP: ""), by lower-cased address:
    addresses are matched without regard to case, as servers treat them."""
    return {address.lower(): call.message_id for call in calls for address in call.recipients}


def attempt_row(
    message: Message,
    *,
    transport: str,
    outcome: str,
    started: datetime,
    finished: datetime,
    calls: Sequence[AcceptedCall] = (),
    error: DeliveryError | None = None,
    worker: str,
) -> Attempt:
    return Attempt(
        message=message,
        started_at=started,
        finished_at=finished,
        transport=transport,
        outcome=outcome,
        recipients=len(accepted_ids(calls)),
        ses_message_ids=[call.message_id for call in calls if call.message_id],
        error_code="" if error is None else error_code(error),
        error="" if error is None else str(error),
        worker=worker,
    )


def error_code(error: DeliveryError) -> str:
    return error.code or type(error).__name__


# --- before sending --------------------------------------------------------------------------


def build_record(
    email: EmailMessage, route: Route, *, mailer: str
) -> tuple[Message, PreparedMessage] | None:
    """An unsaved :class:`Message` for ``email`` and the prepared message (None: nobody).

    Everything that can be wrong with a message is found here, in the caller's request, not by a
    worker later: addresses, headers, tags, size.
    """
    prepared = prepare(email, configuration_set=route.first.configuration_set)
    if prepared is None:
        return None
    route.first.check(prepared)
    message = Message(
        mailer=mailer,
        transport=route.name,
        from_email=prepared.envelope_from,
        subject=str(email.subject)[:998],
        raw=prepared.raw,
        configuration_set=prepared.configuration_set or "",
        tags=dict(prepared.tags),
        list_name=prepared.list_name,
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
        list_name=message.list_name,
    )


@dataclasses.dataclass(frozen=True)
class Queued:
    """A message for the outbox: its unsaved row, whom to send it to, who is suppressed."""

    message: Message
    recipients: tuple[str, ...]
    suppressed: tuple[str, ...] = ()


def save_queued(queued: Sequence[Queued]) -> None:
    """Insert queued messages and their recipients, due now (the caller provides the
    transaction); a message whose recipients are all suppressed is saved as suppressed."""
    now = timezone.now()
    for item in queued:
        if item.recipients:
            item.message.status = MessageStatus.QUEUED
            item.message.next_attempt_at = now
        else:
            item.message.status = MessageStatus.SUPPRESSED
            item.message.next_attempt_at = None
    Message.objects.bulk_create([item.message for item in queued])
    Recipient.objects.bulk_create(
        [
            Recipient(message=item.message, address=address)
            for item in queued
            for address in item.recipients
        ]
        + [
            Recipient(message=item.message, address=address, status=RecipientStatus.SUPPRESSED)
            for item in queued
            for address in item.suppressed
        ]
    )
    for item in queued:
        if item.suppressed:
            # Once the caller's transaction commits: a rolled-back request queued nothing.
            transaction.on_commit(
                functools.partial(
                    _signal_suppressed,
                    item.message,
                    item.suppressed,
                    all_suppressed=not item.recipients,
                )
            )


def _signal_suppressed(message: Message, addresses: Sequence[str], *, all_suppressed: bool) -> None:
    # Robust: the send (or the queueing) has happened, and a receiver's bug must not turn it
    # into an error, nor stop the receivers after it.
    results = signals.recipients_suppressed.send_robust(
        sender=Message, message=message, addresses=tuple(addresses), all_suppressed=all_suppressed
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "sendwell: a recipients_suppressed receiver (%r) failed", receiver, exc_info=result
            )


def pending_recipients(message: Message) -> list[tuple[int, str]]:
    """(pk, address) of the recipients of ``message`` not yet sent, failed or suppressed."""
    return list(
        message.recipients.filter(status__in=PENDING_RECIPIENT_STATUSES).values_list(
            "pk", "address"
        )
    )


# --- the outbox: written as it happens -------------------------------------------------------


def record_accepted(
    message: Message,
    chunk: Sequence[tuple[int, str]],
    calls: Sequence[AcceptedCall],
    *,
    transport: str,
    started: datetime,
    worker: str,
) -> None:
    """Record the recipients of ``chunk`` that ``calls`` accepted as sent, and the attempt.

    Called first after a hand-over, before anything else can fail: what SES accepted must be on
    record, or a retry would send it again.
    """
    if not calls:
        return
    now = timezone.now()
    ids = accepted_ids(calls)
    by_message_id: dict[str, list[int]] = {}
    for pk, address in chunk:
        if address.lower() in ids:
            by_message_id.setdefault(ids[address.lower()], []).append(pk)
    with transaction.atomic():
        for message_id, pks in by_message_id.items():
            Recipient.objects.filter(pk__in=pks).update(
                status=RecipientStatus.SENT,
                ses_message_id=message_id,
                transport=transport,
                sent_at=now,
                error="",
            )
        attempt_row(
            message,
            transport=transport,
            outcome=AttemptOutcome.SENT,
            started=started,
            finished=now,
            calls=calls,
            worker=worker,
        ).save()
    message.ses_message_ids = [
        *message.ses_message_ids,
        *(call.message_id for call in calls if call.message_id),
    ]
    feedback.link_early_events(call.message_id for call in calls)


def record_suppressed(message: Message, rows: Sequence[tuple[int, str]], *, left: int) -> None:
    """Recipients found suppressed when the message was about to be sent (``left``: how many
    are still to be sent)."""
    Recipient.objects.filter(pk__in=[pk for pk, _ in rows]).update(
        status=RecipientStatus.SUPPRESSED, error=""
    )
    _signal_suppressed(message, [address for _, address in rows], all_suppressed=not left)


def record_nothing_left(message: Message) -> None:
    """No recipient is pending: sent (in earlier attempts), or suppressed if nobody was.

    "Sent" is any recipient not suppressed: by now SES's events may have moved the sent ones on
    (delivered, bounced, ...)."""
    sent = message.recipients.exclude(status=RecipientStatus.SUPPRESSED).exists()
    record_sent(message, status=MessageStatus.SENT if sent else MessageStatus.SUPPRESSED)


def record_sent(message: Message, *, transport: str = "", status: str = MessageStatus.SENT) -> None:
    """Every recipient is done: the message is sent."""
    release(
        message,
        status=status,
        sent_at=timezone.now(),
        next_attempt_at=None,
        delivered_by=transport or message.delivered_by,
        ses_message_ids=message.ses_message_ids,
        last_error="",
        last_error_code="",
    )


def record_deferred(message: Message, *, until: datetime, reason: str, code: str) -> None:
    """Not sent now, through no fault of the attempt (no send slot, no quota): not an attempt."""
    release(
        message,
        status=MessageStatus.DEFERRED,
        next_attempt_at=until,
        last_error=reason,
        last_error_code=code,
    )
    Recipient.objects.filter(message=message, status=RecipientStatus.SENDING).update(
        status=RecipientStatus.DEFERRED
    )


def record_failure(
    message: Message,
    error: DeliveryError,
    *,
    outcome: str,
    status: str,
    attempts: int,
    next_attempt_at: datetime | None,
    transport: str,
    started: datetime,
    worker: str,
) -> None:
    """An attempt failed with ``error``: record it, and what the retry policy made of it
    (``status`` FAILED fails the pending recipients; otherwise they wait)."""
    now = timezone.now()
    with transaction.atomic():
        attempt_row(
            message,
            transport=transport,
            outcome=outcome,
            started=started,
            finished=now,
            error=error,
            worker=worker,
        ).save()
        pending = Recipient.objects.filter(message=message, status__in=PENDING_RECIPIENT_STATUSES)
        if status == MessageStatus.FAILED:
            pending.update(status=RecipientStatus.FAILED, error=str(error))
        else:
            pending.update(status=RecipientStatus.DEFERRED)
        release(
            message,
            status=status,
            attempt_count=attempts,
            next_attempt_at=next_attempt_at,
            last_error=str(error),
            last_error_code=error_code(error),
            ses_message_ids=message.ses_message_ids,
        )


# --- synchronous sends: written after them, per batch ----------------------------------------


@dataclasses.dataclass
class SyncRecords:
    """Records of synchronous sends, written together in one transaction.

    A backend's ``send_messages()`` flushes them once at the end (also when it raises): three
    INSERTs for the whole batch instead of three per message. A process that dies in the middle
    of a batch loses the records of that batch's sent messages, never the messages.
    """

    messages: list[Message] = dataclasses.field(default_factory=list)
    recipients: list[Recipient] = dataclasses.field(default_factory=list)
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    # (message, suppressed addresses, all suppressed), signalled once the rows are saved.
    suppressed: list[tuple[Message, tuple[str, ...], bool]] = dataclasses.field(
        default_factory=list
    )

    def add_suppressed(self, message: Message, addresses: Sequence[str]) -> None:
        """Add a message not sent because every recipient is suppressed."""
        message.status = MessageStatus.SUPPRESSED
        message.next_attempt_at = None
        self.messages.append(message)
        self._add_suppressed_recipients(message, addresses, all_suppressed=True)

    def _add_suppressed_recipients(
        self, message: Message, addresses: Sequence[str], *, all_suppressed: bool
    ) -> None:
        if not addresses:
            return
        self.recipients.extend(
            Recipient(message=message, address=address, status=RecipientStatus.SUPPRESSED)
            for address in addresses
        )
        self.suppressed.append((message, tuple(addresses), all_suppressed))

    def add(
        self,
        message: Message,
        addresses: Sequence[str],
        *,
        calls: Sequence[AcceptedCall],
        error: DeliveryError | None,
        transport: str,
        started: datetime,
        attempted: bool = True,
        suppressed: Sequence[str] = (),
    ) -> None:
        """Add one sent (or failed) message (``suppressed``: recipients left out of it).

        A failed synchronous send is recorded as failed even when retryable: the caller got the
        error and decides; the outbox must not also retry it behind its back (that would send
        twice). An operator can retry it from the admin.
        """
        now = timezone.now()
        ids = accepted_ids(calls)
        message.status = MessageStatus.SENT if error is None else MessageStatus.FAILED
        message.attempt_count = 1 if attempted else 0
        message.next_attempt_at = None
        message.ses_message_ids = [call.message_id for call in calls if call.message_id]
        if error is None:
            message.sent_at = now
            message.delivered_by = transport
        else:
            message.last_error = str(error)
            message.last_error_code = error_code(error)
        self.messages.append(message)
        for address in addresses:
            sent = address.lower() in ids
            self.recipients.append(
                Recipient(
                    message=message,
                    address=address,
                    status=RecipientStatus.SENT if sent else RecipientStatus.FAILED,
                    ses_message_id=ids.get(address.lower(), ""),
                    transport=transport if sent else "",
                    sent_at=now if sent else None,
                    error="" if sent or error is None else str(error),
                )
            )
        self._add_suppressed_recipients(message, suppressed, all_suppressed=False)
        if attempted:
            self.attempts.append(
                attempt_row(
                    message,
                    transport=transport,
                    outcome=AttemptOutcome.SENT if error is None else AttemptOutcome.FAILED,
                    started=started,
                    finished=now,
                    calls=calls,
                    error=error,
                    worker=WORKER_PREFIX,
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
        suppressed, self.suppressed = self.suppressed, []
        ses_ids = [ses_id for message in self.messages for ses_id in message.ses_message_ids]
        self.messages, self.recipients, self.attempts = [], [], []
        with transaction.atomic(using=using):
            feedback.link_early_events(ses_ids, using)
        for message, addresses, all_suppressed in suppressed:
            _signal_suppressed(message, addresses, all_suppressed=all_suppressed)
