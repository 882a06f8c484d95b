"""An Amazon SNS HTTP(S) delivery, before and after its signature is checked.

What SNS POSTs (or what an SQS queue subscribed to a topic holds, without raw delivery) is a
JSON object; this module parses it strictly, says which fields are signed and builds the exact
bytes SNS signed. Nothing here trusts the content: :mod:`sendwell.sns.verify` does the trusting.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any, Final, Literal, NoReturn

__all__ = [
    "CONFIRMATION_TYPES",
    "MessageType",
    "Reason",
    "SNSMessage",
    "VerificationError",
    "parse_envelope",
    "parse_timestamp",
    "string_to_sign",
]

MessageType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
CONFIRMATION_TYPES: Final = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})

Reason = Literal[
    "malformed",  # not an SNS envelope at all: bad JSON, a missing or non-string field
    "bad_signature_version",  # a SignatureVersion other than "1"/"2", or "1" with require_v2
    "unknown_topic",  # TopicArn not in the allowlist (or the allowlist is empty)
    "stale",  # Timestamp too far from now: a replay, or a clock that is wrong
    "bad_cert_url",  # SigningCertURL is not an https URL of an SNS endpoint
    "bad_subscribe_url",  # SubscribeURL is not an https ConfirmSubscription URL of SNS
    "cert_unavailable",  # the signing certificate could not be fetched
    "bad_certificate",  # what was fetched is not one valid RSA certificate
    "bad_signature",  # the signature does not match the signed fields
    "not_confirmable",  # confirm_subscription() given something other than a confirmation
]

# The fields each type signs, in the order AWS puts them in the string to sign (alphabetical).
# Subject is signed only when the notification has one.
_SIGNED: Final[dict[str, tuple[str, ...]]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        *("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    ),
    "UnsubscribeConfirmation": (
        *("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    ),
}
_ENVELOPE: Final = ("Signature", "SignatureVersion", "SigningCertURL")
_OPTIONAL: Final = frozenset({"Subject"})

# RFC 3339 as SNS writes it (UTC, "Z", milliseconds); fromisoformat alone would also take
# offsets, week dates and spaces, none of which SNS sends.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


class VerificationError(ValueError):
    """An SNS delivery was refused. ``reason`` is a stable code for logs, metrics and tests;
    ``str(error)`` says what happened and what to do. Nothing the sender controls appears in it
    unbounded (see :func:`shorten`)."""

    def __init__(self, reason: Reason, message: str, remedy: str = "") -> None:
        self.reason: Reason = reason
        self.message = message
        self.remedy = remedy
        super().__init__(f"{message}: {remedy}" if remedy else message)


def shorten(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: safe to put attacker input in a log line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


@dataclasses.dataclass(frozen=True)
class SNSMessage:
    """An envelope whose signature, topic and age were checked.

    ``subscribe_url`` and ``token`` are set for both confirmation types (the URL was checked to
    be SNS's own); :func:`sendwell.sns.confirm_subscription` follows only a
    SubscriptionConfirmation's. ``raw`` is the whole parsed object, including the fields SNS does
    not sign (``UnsubscribeURL``, ``MessageAttributes``): do not trust those.
    """

    type: MessageType
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    subject: str | None
    subscribe_url: str | None
    token: str | None
    signature_version: str
    raw: dict[str, Any] = dataclasses.field(compare=False, hash=False, repr=False)


def _malformed(what: str) -> NoReturn:
    raise VerificationError(
        "malformed",
        f"Not an Amazon SNS message: {what}",
        "only POST what an SNS HTTP(S) subscription (or an SQS queue subscribed without raw "
        "message delivery) delivers",
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key would let the signature cover one and a later reader see the other.
    result = dict(pairs)
    if len(result) != len(pairs):
        _malformed("a key appears twice in one JSON object")
    return result


def _no_constant(name: str) -> NoReturn:
    _malformed(f"the JSON has {name}, which is not JSON")


def parse_envelope(body: bytes, *, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    """``body`` as a JSON object with every field its Type needs, each a string.

    Raises :class:`VerificationError` ("malformed") for anything else, and only that.
    """
    if not isinstance(body, bytes | bytearray):
        _malformed(f"the body is a {type(body).__name__}, not bytes")
    if len(body) > max_bytes:
        _malformed(f"the body is {len(body)} bytes, over the limit of {max_bytes}")
    try:
        text = bytes(body).decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        _malformed("the body is not UTF-8")
    except RecursionError:
        _malformed("the JSON is nested too deeply")
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        if isinstance(exc, VerificationError):
            raise
        _malformed(f"the body is not JSON ({shorten(str(exc), 120)})")
    if not isinstance(data, dict):
        _malformed(f"the JSON is a {type(data).__name__}, not an object")
    kind = data.get("Type")
    if not isinstance(kind, str) or kind not in _SIGNED:
        _malformed(f"Type is {shorten(kind, 40)}, not one of {', '.join(sorted(_SIGNED))}")
    for field in (*_SIGNED[kind], *_ENVELOPE):
        if field not in data:
            if field in _OPTIONAL:
                continue
            _malformed(f"a {kind} needs a {field} field")
        value = data[field]
        if not isinstance(value, str):
            _malformed(f"{field} is a {type(value).__name__}, not a string")
        try:
            # json.loads lets lone surrogates ("\ud800") through; they cannot have been signed.
            value.encode("utf-8")
        except UnicodeEncodeError:
            _malformed(f"{field} is not valid Unicode")
    return data


def string_to_sign(envelope: dict[str, Any]) -> bytes:
    """The bytes SNS signed: each signed field present as ``name\\nvalue\\n``, in AWS's order.

    ``envelope`` must have come through :func:`parse_envelope`.
    """
    parts = [
        f"{field}\n{envelope[field]}\n" for field in _SIGNED[envelope["Type"]] if field in envelope
    ]
    return "".join(parts).encode("utf-8")


def parse_timestamp(value: str) -> datetime:
    """SNS's ``Timestamp`` ("2024-05-01T12:00:00.000Z") as an aware UTC datetime."""
    if not _TIMESTAMP.fullmatch(value):
        _malformed(f"Timestamp {shorten(value, 40)} is not of the form 2024-05-01T12:00:00.000Z")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:  # the right shape but no such date (month 13, February 30)
        _malformed(f"Timestamp {shorten(value, 40)} is not a real date and time")
