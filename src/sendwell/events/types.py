"""The typed, normalized SES event: one :class:`SESEvent` per recipient an event concerns.

Nothing here knows about SNS, SQS or the database: the parser (:mod:`sendwell.events.parse`)
builds these from SES's JSON, and whatever stores them reads only these fields (and ``raw``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

SourceFormat = Literal["notification", "event_publishing"]

# Shared, immutable "empty" defaults: a frozen event must not carry a mutable dict.
EMPTY_TAGS: Mapping[str, tuple[str, ...]] = MappingProxyType({})
EMPTY_TOPICS: Mapping[str, str] = MappingProxyType({})
EMPTY_RAW: Mapping[str, Any] = MappingProxyType({})


class EventType(enum.StrEnum):
    SEND = "send"
    REJECT = "reject"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    OPEN = "open"
    CLICK = "click"
    RENDERING_FAILURE = "rendering_failure"
    DELIVERY_DELAY = "delivery_delay"
    SUBSCRIPTION = "subscription"
    # A type sendwell does not know (a new SES type, inbound "Received"): kept, with its name in
    # SESEvent.type_name, so that nothing SES sends is lost before someone decides what it means.
    UNKNOWN = "unknown"


class EventParseError(ValueError):
    """The SES JSON is not something sendwell can read: not JSON, not an object, no
    ``mail.messageId``, a field of the wrong type, a timestamp that is not ISO 8601.

    The message names the field and the problem, never the offending value (which may be huge
    or hostile), so it is safe to log and to answer with.
    """

    MAX_LENGTH = 200

    def __init__(self, message: str) -> None:
        if len(message) > self.MAX_LENGTH:
            message = message[: self.MAX_LENGTH - 3] + "..."
        super().__init__(message)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SESEvent:
    """One SES event as it concerns one recipient.

    Equality and hashing ignore ``raw``: two events are the same event when their normalized
    fields are, whatever extra fields SES (or an emulator) added. Mapping fields are read-only
    (``MappingProxyType``) and left out of the hash, which is computed from the rest.
    """

    type: EventType
    # SES's own name for the type ("Rendering Failure", "Received", a future one), verbatim.
    type_name: str
    ses_message_id: str
    # Lower-cased bare address; "" when SES does not say which recipient (see docs/events.md).
    recipient: str
    # The event's own time (bounce.timestamp, open.timestamp, ...), else mail.timestamp; UTC.
    timestamp: datetime
    # When SES accepted the message (mail.timestamp), UTC.
    mail_timestamp: datetime
    source_format: SourceFormat

    # Bounce, complaint: SES's id of the feedback.
    feedback_id: str = ""
    # Bounce: bounceType / bounceSubType, verbatim even when sendwell does not know them.
    bounce_type: str = ""
    bounce_subtype: str = ""
    # Bounce and DeliveryDelay, per recipient, from the DSN when there is one. Kept apart rather
    # than joined in one "diagnostic" string: a rule ("5.1.1 means the address is gone") reads the
    # status, a person reads the diagnostic code.
    dsn_action: str = ""
    dsn_status: str = ""
    diagnostic_code: str = ""
    # Bounce, Delivery, DeliveryDelay: the MTA that reported; its address (notifications only).
    reporting_mta: str = ""
    remote_mta_ip: str = ""
    # Complaint: complaintFeedbackType ("abuse", "fraud", "not-spam", ...; "" when the ISP sent
    # no feedback report) and complaintSubType ("OnAccountSuppressionList" or "").
    complaint_type: str = ""
    complaint_subtype: str = ""
    # Open, Click; and Complaint (the feedback report's User-Agent).
    user_agent: str = ""
    ip_address: str = ""
    # Click.
    link: str = ""
    link_tags: Mapping[str, tuple[str, ...]] = dataclasses.field(default=EMPTY_TAGS, hash=False)
    # Delivery.
    smtp_response: str = ""
    processing_time_ms: int | None = None
    # Reject.
    reject_reason: str = ""
    # Rendering Failure.
    rendering_error: str = ""
    template_name: str = ""
    # DeliveryDelay.
    delay_type: str = ""
    delay_expires: datetime | None = None
    # Subscription: the state after the change (newTopicPreferences); the state before stays in
    # raw. topic_preferences maps topicName to subscriptionStatus ("OptIn" / "OptOut").
    contact_list: str = ""
    subscription_source: str = ""
    unsubscribe_all: bool | None = None
    topic_preferences: Mapping[str, str] = dataclasses.field(default=EMPTY_TOPICS, hash=False)
    # mail.tags (event publishing only: identity notifications carry none).
    tags: Mapping[str, tuple[str, ...]] = dataclasses.field(default=EMPTY_TAGS, hash=False)
    # The whole SES JSON object this event came from, unknown fields included; shared by every
    # event parsed from the same object.
    raw: Mapping[str, Any] = dataclasses.field(
        default=EMPTY_RAW, compare=False, hash=False, repr=False
    )

    @property
    def dedup_key(self) -> tuple[str, str, str, str, str, str]:
        """What makes this event itself, to store it once when SNS delivers it twice.

        SNS delivers at least once, and SES sends no id per event: a redelivered notification
        has the same key, a second click on another link or a later open has not.
        """
        return (
            self.type_name,
            self.ses_message_id,
            self.recipient,
            self.timestamp.isoformat(),
            self.feedback_id,
            self.link,
        )
