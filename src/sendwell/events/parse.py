"""SES's JSON (the ``Message`` of an SNS notification, or an SQS message body) to SESEvents.

Both formats SES publishes: identity notifications (``notificationType``: Bounce, Complaint,
Delivery, and Received for inbound mail) and configuration-set event publishing (``eventType``:
every type). They share the ``mail`` object and the per-type objects, so one reader serves both.

Pure: no Django, no settings, no network. Whatever SES sends is either a list of events or an
:class:`EventParseError`; nothing else escapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sendwell.events import fields as f
from sendwell.events.readers import READERS, read_unknown
from sendwell.events.types import EventParseError, EventType, SESEvent, SourceFormat

# SES's type names, compared without case, spaces or underscores so that "Rendering Failure"
# (SNS), "RenderingFailure" and "RENDERING_FAILURE" (the v2 API's spelling) are one type; each
# with the key of its detail object.
_TYPES: dict[str, tuple[EventType, str]] = {
    "send": (EventType.SEND, "send"),
    "reject": (EventType.REJECT, "reject"),
    "bounce": (EventType.BOUNCE, "bounce"),
    "complaint": (EventType.COMPLAINT, "complaint"),
    "delivery": (EventType.DELIVERY, "delivery"),
    "open": (EventType.OPEN, "open"),
    "click": (EventType.CLICK, "click"),
    "renderingfailure": (EventType.RENDERING_FAILURE, "failure"),
    "deliverydelay": (EventType.DELIVERY_DELAY, "deliveryDelay"),
    "subscription": (EventType.SUBSCRIPTION, "subscription"),
}


def parse_ses_message(message: str | bytes | Mapping[str, Any]) -> list[SESEvent]:
    """The events in one SES JSON object, one per recipient it concerns (never empty).

    ``message`` is the JSON text (SNS's ``Message`` is a string) or the object already decoded
    (emulators send one). Raises :class:`EventParseError`, and only that, when it cannot be read.
    """
    return _parse(_load(message))


def _load(message: object) -> Mapping[str, Any]:
    if isinstance(message, str | bytes | bytearray):
        try:
            message = json.loads(message)
        except RecursionError:
            raise EventParseError("the SES message is nested too deeply") from None
        except json.JSONDecodeError as error:
            # error.msg is json's own short text ("Expecting value"), never the input.
            raise EventParseError(
                f"the SES message is not JSON ({error.msg} at position {error.pos})"
            ) from None
        except ValueError:  # bytes that are not UTF-8/16/32
            raise EventParseError("the SES message is not JSON (not a Unicode text)") from None
    if not isinstance(message, Mapping):
        raise EventParseError(f"the SES message is {f.kind(message)}, not a JSON object")
    return message


def _parse(data: Mapping[str, Any]) -> list[SESEvent]:
    source_format: SourceFormat
    if data.get("eventType") is not None:
        type_key, source_format = "eventType", "event_publishing"
    elif data.get("notificationType") is not None:
        type_key, source_format = "notificationType", "notification"
    else:
        raise EventParseError("the SES message has neither eventType nor notificationType")
    type_name = data[type_key]
    if not isinstance(type_name, str):
        raise EventParseError(f"{type_key} is {f.kind(type_name)}, not a string")

    mail = f.obj(data, "mail", "")
    if mail is None:
        raise EventParseError("the SES message has no mail object")
    message_id = f.string(mail, "messageId", "mail")
    if not message_id:
        raise EventParseError("mail.messageId is missing or empty")
    mail_timestamp = f.time(mail, "timestamp", "mail")
    if mail_timestamp is None:
        raise EventParseError("mail.timestamp is missing")
    destination = f.strings(mail, "destination", "mail") or []
    tags = f.tags(mail, "tags", "mail")

    kind, detail_key = _TYPES.get(_type_key(type_name), (EventType.UNKNOWN, ""))
    detail: Mapping[str, Any] = {}
    if detail_key:
        detail = f.obj(data, detail_key, "") or {}
    timestamp = f.time(detail, "timestamp", detail_key) if detail_key else None

    fields, recipients = READERS.get(kind, read_unknown)(detail, detail_key, destination)
    raw = MappingProxyType(dict(data))
    events: list[SESEvent] = []
    seen: set[str] = set()
    for recipient, own_fields in recipients or [("", {})]:
        # An address listed twice, however spelled ("Jane <Jane@x>", "jane@x"), is one recipient:
        # each event is stored once.
        if recipient in seen:
            continue
        seen.add(recipient)
        events.append(
            SESEvent(
                type=kind,
                type_name=type_name,
                ses_message_id=message_id,
                recipient=recipient,
                timestamp=timestamp or mail_timestamp,
                mail_timestamp=mail_timestamp,
                source_format=source_format,
                tags=tags,
                raw=raw,
                **fields,
                **own_fields,
            )
        )
    return events


def _type_key(type_name: str) -> str:
    return type_name.replace(" ", "").replace("_", "").lower()
