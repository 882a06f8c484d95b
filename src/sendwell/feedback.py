"""What SES told us, applied: a verified SNS message stored once, its events stored once, linked
to the messages and recipients they are about, statuses moved forward, addresses suppressed.

The webhook view, the SQS poller and ``manage.py sendwell simulate`` all come through
:func:`ingest` with an :class:`~sendwell.sns.SNSMessage` (verified, or built by the simulator),
so every notification is processed by exactly the same code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from sendwell import conf, signals, suppression
from sendwell.events import EventParseError, EventType, SESEvent, parse_ses_message
from sendwell.models import (
    Event,
    Message,
    Notification,
    NotificationSource,
    Recipient,
    RecipientStatus,
    SuppressionReason,
)
from sendwell.sns import SNSMessage

logger = logging.getLogger("sendwell.feedback")

# A recipient's status only moves forward in this order, so a late or repeated event never hides
# a worse one: a Delivery arriving after a Complaint leaves it "complained". Statuses of the same
# rank do not replace each other (a bounce after a rejection stays a rejection).
STATUS_RANK: dict[str, int] = {
    RecipientStatus.QUEUED: 0,
    RecipientStatus.DEFERRED: 0,
    RecipientStatus.SENDING: 1,
    # Terminal before sending: events link by SES message id, which these never have.
    RecipientStatus.FAILED: 1,
    RecipientStatus.SUPPRESSED: 1,
    RecipientStatus.SENT: 2,
    RecipientStatus.DELIVERED: 3,
    RecipientStatus.REJECTED: 4,
    RecipientStatus.BOUNCED: 4,
    RecipientStatus.COMPLAINED: 5,
}


def status_after(event_type: str, bounce_type: str = "") -> str | None:
    """The recipient status an event shows (None: it says nothing about the status)."""
    match event_type:
        case EventType.SEND:
            return RecipientStatus.SENT
        case EventType.DELIVERY | EventType.OPEN | EventType.CLICK:
            return RecipientStatus.DELIVERED  # an open or a click proves the delivery
        case EventType.REJECT:
            return RecipientStatus.REJECTED
        case EventType.BOUNCE if bounce_type == "Permanent":
            return RecipientStatus.BOUNCED
        case EventType.COMPLAINT:
            return RecipientStatus.COMPLAINED
    return None


def moves_forward(current: str, new: str) -> bool:
    return STATUS_RANK.get(new, 0) > STATUS_RANK.get(current, 0)


# --- storing ---------------------------------------------------------------------------------


def store(
    message: SNSMessage, *, source: str = NotificationSource.SNS
) -> tuple[Notification, bool]:
    """Store a verified SNS message once; (its row, whether it is new). A redelivery of the same
    MessageId returns the first row and False."""
    notification, created = Notification.objects.get_or_create(
        sns_message_id=message.message_id,
        defaults={
            "topic_arn": message.topic_arn,
            "type": message.type,
            "source": source,
            "envelope": message.raw,
        },
    )
    return notification, created


def ingest(message: SNSMessage, *, source: str = NotificationSource.SNS) -> Notification:
    """Store ``message`` (once per SNS MessageId) and process it unless that was done before."""
    notification, _ = store(message, source=source)
    if notification.processed_at is None and notification.type == "Notification":
        process(notification)  # new, or its processing failed before
    return notification


def process(notification: Notification) -> list[Event]:
    """Parse a stored notification's SES JSON and apply its events (once each).

    SES JSON that cannot be read is recorded on the notification (``error``) and logged, not
    raised: SNS would only deliver the same bytes again.
    """
    try:
        events = parse_ses_message(_ses_json(notification.envelope))
    except EventParseError as error:
        notification.error = f"the SES JSON could not be read: {error}"
        notification.processed_at = timezone.now()
        notification.save(update_fields=["error", "processed_at"])
        logger.warning("sendwell: SNS message %s: %s", notification.sns_message_id, error)
        return []
    with transaction.atomic():
        saved = apply(events, notification=notification)
        notification.processed_at = timezone.now()
        notification.save(update_fields=["processed_at"])
        orphans = [record.ses_message_id for record in saved if record.message_id is None]
        if orphans:
            # The send's record may have been committed while this ran, after this looked for
            # it and before the recorder looked for these events: look again once both are in.
            transaction.on_commit(lambda: link_early_events(orphans))
    return saved


def _ses_json(envelope: dict[str, Any]) -> Any:
    # SNS carries SES's JSON as a string; emulators and tests sometimes send the object itself.
    return envelope.get("Message", "")


def apply(events: Sequence[SESEvent], *, notification: Notification | None = None) -> list[Event]:
    """Store each event once, link it, move its recipient's status, apply the suppression
    policy and send its signal; the events that were new."""
    saved = []
    links = _links({event.ses_message_id for event in events})
    for event in events:
        record, created = _store_event(event, notification, links)
        if not created:
            continue
        saved.append(record)
        if record.recipient is not None:
            _advance(record.recipient, event.type, event.bounce_type)
        _suppress_if_policy_says(event, record)
        signals.BY_EVENT_TYPE[event.type].send(
            sender=Event, event=event, record=record, raw=event.raw
        )
    return saved


def _links(ids: Iterable[str], using: str = DEFAULT_DB_ALIAS) -> dict[tuple[str, str], Recipient]:
    """The recipients of SES calls ``ids``, by (SES message id, address): one query."""
    recipients = (
        Recipient.objects.using(using)
        .filter(ses_message_id__in=ids)
        .select_related("message")
        .defer("message__raw")  # the MIME, possibly megabytes: not needed to link an event
    )
    return {(r.ses_message_id, suppression.normalize(r.address)): r for r in recipients}


def _store_event(
    event: SESEvent, notification: Notification | None, links: dict[tuple[str, str], Recipient]
) -> tuple[Event, bool]:
    recipient = links.get((event.ses_message_id, event.recipient))
    message = _message_of(event.ses_message_id, recipient, links)
    return Event.objects.get_or_create(
        dedup_key=_dedup_key(event),
        defaults={
            "notification": notification,
            "type": event.type,
            "type_name": event.type_name[:64],
            "ses_message_id": event.ses_message_id[:100],
            "address": event.recipient[:320],
            "occurred_at": event.timestamp,
            "message": message,
            "recipient": recipient,
            "detail": detail(event),
            "raw": dict(event.raw),
        },
    )


def _message_of(
    ses_id: str, recipient: Recipient | None, links: dict[tuple[str, str], Recipient]
) -> Message | None:
    if recipient is not None:
        return recipient.message
    # An event about the whole message (an open of a message to several) still belongs to it:
    # any recipient of that call names the message.
    return next((r.message for (s, _), r in links.items() if s == ses_id), None)


def _dedup_key(event: SESEvent) -> str:
    return hashlib.sha256("\x1f".join(event.dedup_key).encode()).hexdigest()


def detail(event: SESEvent) -> dict[str, Any]:
    """The event's normalized fields as JSON (without the identity columns and raw)."""
    skip = {"type", "ses_message_id", "recipient", "timestamp", "raw"}
    result: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        if field.name in skip:
            continue
        value = getattr(event, field.name)
        if value in ("", None) or (hasattr(value, "__len__") and not len(value)):
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        elif hasattr(value, "items"):
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        result[field.name] = value
    return result


def _advance(
    recipient: Recipient, event_type: str, bounce_type: str, using: str = DEFAULT_DB_ALIAS
) -> None:
    new = status_after(event_type, bounce_type)
    if new is None or not moves_forward(recipient.status, new):
        return
    # Conditional: a concurrent event that moved the status further meanwhile wins.
    lower = [status for status, rank in STATUS_RANK.items() if rank < STATUS_RANK[new]]
    Recipient.objects.using(using).filter(pk=recipient.pk, status__in=lower).update(status=new)
    recipient.status = new


# --- the suppression policy ------------------------------------------------------------------


def _suppress_if_policy_says(event: SESEvent, record: Event) -> None:
    if not event.recipient:
        return
    reason, expires_at = _policy(event)
    if reason is None:
        return
    scope = event.contact_list if reason == SuppressionReason.UNSUBSCRIBE else ""
    suppression.suppress(
        event.recipient, reason=reason, scope=scope, event=record, expires_at=expires_at
    )


def _policy(event: SESEvent) -> tuple[str | None, datetime | None]:
    """Whether ``event`` suppresses its recipient: (reason, expiry) or (None, None)."""
    on_ses_list = "OnAccountSuppressionList" in (event.bounce_subtype, event.complaint_subtype)
    if event.type == EventType.BOUNCE and event.bounce_type == "Permanent":
        if on_ses_list:
            return SuppressionReason.SES, None  # SES itself will not send to it
        if conf.setting("SUPPRESS_ON_PERMANENT_BOUNCE"):
            return SuppressionReason.HARD_BOUNCE, None
    elif event.type == EventType.BOUNCE and event.bounce_type == "Transient":
        return _transient_policy(event)
    elif event.type == EventType.COMPLAINT:
        if on_ses_list:
            return SuppressionReason.SES, None
        if conf.setting("SUPPRESS_ON_COMPLAINT"):
            return SuppressionReason.COMPLAINT, None
    elif event.type == EventType.SUBSCRIPTION and event.unsubscribe_all and event.contact_list:
        # For that contact list only: no contact list named must not suppress everything.
        return SuppressionReason.UNSUBSCRIBE, None
    return None, None


def _transient_policy(event: SESEvent) -> tuple[str | None, datetime | None]:
    needed = int(conf.setting("TRANSIENT_BOUNCES_TO_SUPPRESS"))
    if needed <= 0:
        return None, None
    since = event.timestamp - timedelta(seconds=float(conf.setting("TRANSIENT_BOUNCE_WINDOW")))
    seen = Event.objects.filter(
        type=EventType.BOUNCE,
        address=event.recipient,
        occurred_at__gte=since,
        occurred_at__lte=event.timestamp,  # an older bounce arriving late counts its own window
        detail__bounce_type="Transient",
    ).count()
    if seen < needed:
        return None, None
    seconds = float(conf.setting("TRANSIENT_SUPPRESSION_SECONDS"))
    return SuppressionReason.TRANSIENT_BOUNCES, timezone.now() + timedelta(seconds=seconds)


# --- events that came before their send's record ---------------------------------------------


def link_early_events(ses_message_ids: Iterable[str], using: str = DEFAULT_DB_ALIAS) -> int:
    """Link events that arrived before the send was recorded (a fast Delivery, a record written
    after its batch), and move their recipients' statuses; the number linked. One query when
    there are none."""
    ids = [ses_id for ses_id in ses_message_ids if ses_id]
    if not ids:
        return 0
    orphans = list(Event.objects.using(using).filter(ses_message_id__in=ids, message__isnull=True))
    if not orphans:
        return 0
    links = _links(ids, using)
    for record in orphans:
        recipient = links.get((record.ses_message_id, record.address))
        record.recipient = recipient
        record.message = _message_of(record.ses_message_id, recipient, links)
        record.save(update_fields=["recipient", "message"])
        if recipient is not None:
            _advance(recipient, record.type, record.detail.get("bounce_type", ""), using)
    return len(orphans)
