"""The per-type part of an SES event: each type's detail object to normalized fields, and the
recipients the event concerns, each with its own fields (see docs/events.md for who they are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from sendwell.events import fields as f
from sendwell.events.types import EMPTY_TOPICS, EventParseError, EventType

# Per-recipient fields: (normalized address, the event's fields for that recipient).
Recipients = list[tuple[str, dict[str, Any]]]

# Each reader: (the detail object, its key for messages, mail.destination) -> (fields shared by
# every recipient, the recipients with their own fields).
_Reader = Callable[[Mapping[str, Any], str, list[str]], tuple[dict[str, Any], Recipients]]


def _read_bounce(
    detail: Mapping[str, Any], path: str, _: list[str]
) -> tuple[dict[str, Any], Recipients]:
    fields = {
        "bounce_type": f.string(detail, "bounceType", path),
        "bounce_subtype": f.string(detail, "bounceSubType", path),
        "feedback_id": f.string(detail, "feedbackId", path),
        "reporting_mta": f.string(detail, "reportingMTA", path),
        "remote_mta_ip": f.string(detail, "remoteMtaIp", path),
    }
    return fields, _recipient_objects(detail, "bouncedRecipients", path, dsn=True)


def _read_complaint(
    detail: Mapping[str, Any], path: str, _: list[str]
) -> tuple[dict[str, Any], Recipients]:
    fields = {
        "complaint_type": f.string(detail, "complaintFeedbackType", path),
        "complaint_subtype": f.string(detail, "complaintSubType", path),
        "user_agent": f.string(detail, "userAgent", path),
        "feedback_id": f.string(detail, "feedbackId", path),
    }
    return fields, _recipient_objects(detail, "complainedRecipients", path, dsn=False)


def _read_delivery(
    detail: Mapping[str, Any], path: str, _: list[str]
) -> tuple[dict[str, Any], Recipients]:
    millis = detail.get("processingTimeMillis")
    # bool is an int to Python, not to JSON.
    if millis is not None and (isinstance(millis, bool) or not isinstance(millis, int)):
        raise EventParseError(f"{path}.processingTimeMillis is {f.kind(millis)}, not an integer")
    fields = {
        "smtp_response": f.string(detail, "smtpResponse", path),
        "processing_time_ms": millis,
        "reporting_mta": f.string(detail, "reportingMTA", path),
        "remote_mta_ip": f.string(detail, "remoteMtaIp", path),
    }
    addresses = f.strings(detail, "recipients", path) or []
    return fields, [(f.address(address), {}) for address in addresses]


def _read_delivery_delay(
    detail: Mapping[str, Any], path: str, _: list[str]
) -> tuple[dict[str, Any], Recipients]:
    fields = {
        "delay_type": f.string(detail, "delayType", path),
        "delay_expires": f.time(detail, "expirationTime", path),
        "reporting_mta": f.string(detail, "reportingMTA", path),
    }
    return fields, _recipient_objects(detail, "delayedRecipients", path, dsn=True)


def _every_destination(
    fields: dict[str, Any], destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    """Send, Reject, Rendering Failure: what happened to the message happened to each recipient."""
    return fields, [(f.address(address), {}) for address in destination]


def _one_reader(
    fields: dict[str, Any], destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    """Open, Click, Subscription: one reader did it, and SES does not say who.

    With one destination it can only be that one; with several, an event per destination would
    claim that each of them opened (or unsubscribed), so there is one event with recipient "".
    """
    if len(destination) == 1:
        return fields, [(f.address(destination[0]), {})]
    return fields, []


def _read_send(
    detail: Mapping[str, Any], path: str, destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    return _every_destination({}, destination)


def _read_reject(
    detail: Mapping[str, Any], path: str, destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    return _every_destination({"reject_reason": f.string(detail, "reason", path)}, destination)


def _read_rendering_failure(
    detail: Mapping[str, Any], path: str, destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    fields = {
        "rendering_error": f.string(detail, "errorMessage", path),
        "template_name": f.string(detail, "templateName", path),
    }
    return _every_destination(fields, destination)


def _read_open(
    detail: Mapping[str, Any], path: str, destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    fields = {
        "ip_address": f.string(detail, "ipAddress", path),
        "user_agent": f.string(detail, "userAgent", path),
    }
    return _one_reader(fields, destination)


def _read_click(
    detail: Mapping[str, Any], path: str, destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    fields = {
        "ip_address": f.string(detail, "ipAddress", path),
        "user_agent": f.string(detail, "userAgent", path),
        "link": f.string(detail, "link", path),
        "link_tags": f.tags(detail, "linkTags", path),
    }
    return _one_reader(fields, destination)


def _read_subscription(
    detail: Mapping[str, Any], path: str, destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    fields: dict[str, Any] = {
        "contact_list": f.string(detail, "contactList", path),
        "subscription_source": f.string(detail, "source", path),
    }
    new = f.obj(detail, "newTopicPreferences", path)
    if new is not None:
        where = f"{path}.newTopicPreferences"
        unsubscribe_all = new.get("unsubscribeAll")
        if unsubscribe_all is not None and not isinstance(unsubscribe_all, bool):
            raise EventParseError(
                f"{where}.unsubscribeAll is {f.kind(unsubscribe_all)}, not true/false"
            )
        topics: dict[str, str] = {}
        for index, entry in enumerate(f.array(new, "topicSubscriptionStatus", where) or []):
            item = f"{where}.topicSubscriptionStatus[{index}]"
            if not isinstance(entry, Mapping):
                raise EventParseError(f"{item} is {f.kind(entry)}, not an object")
            topics[f.string(entry, "topicName", item)] = f.string(entry, "subscriptionStatus", item)
        fields["unsubscribe_all"] = unsubscribe_all
        fields["topic_preferences"] = MappingProxyType(topics) if topics else EMPTY_TOPICS
    return _one_reader(fields, destination)


def read_unknown(
    detail: Mapping[str, Any], path: str, destination: list[str]
) -> tuple[dict[str, Any], Recipients]:
    # What an unknown type means for its recipients is unknown too: one event, recipient "".
    return {}, []


READERS: dict[EventType, _Reader] = {
    EventType.SEND: _read_send,
    EventType.REJECT: _read_reject,
    EventType.BOUNCE: _read_bounce,
    EventType.COMPLAINT: _read_complaint,
    EventType.DELIVERY: _read_delivery,
    EventType.OPEN: _read_open,
    EventType.CLICK: _read_click,
    EventType.RENDERING_FAILURE: _read_rendering_failure,
    EventType.DELIVERY_DELAY: _read_delivery_delay,
    EventType.SUBSCRIPTION: _read_subscription,
}


def _recipient_objects(detail: Mapping[str, Any], key: str, path: str, *, dsn: bool) -> Recipients:
    """bouncedRecipients, complainedRecipients, delayedRecipients: objects with an emailAddress,
    and for bounces and delays the DSN's action, status and diagnostic code for that address."""
    recipients: Recipients = []
    for index, entry in enumerate(f.array(detail, key, path) or []):
        item = f"{f.where(path, key)}[{index}]"
        if not isinstance(entry, Mapping):
            raise EventParseError(f"{item} is {f.kind(entry)}, not an object")
        own: dict[str, Any] = {}
        if dsn:
            own = {
                "dsn_action": f.string(entry, "action", item),
                "dsn_status": f.string(entry, "status", item),
                "diagnostic_code": f.string(entry, "diagnosticCode", item),
            }
        recipients.append((f.address(f.string(entry, "emailAddress", item)), own))
    return recipients
