"""SES's two wire protocols as FakeSES speaks them: requests parsed, answers and errors built.

SES v2 is REST-JSON (``POST /v2/email/outbound-emails``, ``GET /v2/email/account``); v1 is the
query protocol (form-encoded ``Action=SendRawEmail``/``GetSendQuota``, XML answers). Errors use
SES's own codes and texts for each, so botocore parses them into the exceptions it raises
against real SES.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email
import email.policy
import json
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any
from xml.sax.saxutils import escape

V1_NAMESPACE = "http://ses.amazonaws.com/doc/2010-12-01/"
FAULTS = frozenset(
    {"throttle", "quota", "429", "500", "503", "timeout", "drop", "drop_after_accept"}
)
# How the account queries (v2 GetAccount, v1 GetSendQuota) answer: see FakeSES.
ACCOUNT_ANSWERS = ("ok", "denied", "missing", "error")
# The IAM user a "denied" account query names, in AWS's wording.
_DENIED_USER = "arn:aws:iam::123456789012:user/sendwell-app"
# What a web server that is not SES (a proxy, another service) answers for a path it lacks,
# padded as nginx pads its error pages (so that browsers show them rather than their own).
_NOT_FOUND_HTML = (
    b'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n'
    b"<html><head>\n"
    b"<title>404 Not Found</title>\n"
    b"</head><body>\n"
    b"<h1>Not Found</h1>\n"
    b"<p>The requested URL was not found on this server.</p>\n"
    b"<hr>\n"
    b"<address>Apache/2.4.58 (Ubuntu) Server at 127.0.0.1 Port 80</address>\n"
    b"</body></html>\n"
) + b"<!-- a padding to disable MSIE and Chrome friendly error page -->\n" * 4

# fault -> (message, (v1 status, v1 code), (v2 status, v2 code)). SES documents one throttling
# error for both sending limits, told apart only by its text, so "quota" shares the codes.
_ERRORS: dict[str, tuple[str, tuple[int, str], tuple[int, str]]] = {
    "throttle": (
        "Maximum sending rate exceeded.",
        (400, "Throttling"),
        (429, "TooManyRequestsException"),
    ),
    "quota": (
        "Daily message quota exceeded.",
        (400, "Throttling"),
        (429, "TooManyRequestsException"),
    ),
    "429": ("Rate exceeded", (400, "Throttling"), (429, "TooManyRequestsException")),
    "500": ("An internal failure occurred.", (500, "InternalFailure"), (500, "InternalFailure")),
    "503": ("Service is unavailable.", (503, "ServiceUnavailable"), (503, "ServiceUnavailable")),
}


def _rate_mode(value: Any) -> bool | str:
    """Validate an ``enforce_rate`` value: False, True (the same as "rolling"), "rolling", "ses"."""
    if isinstance(value, bool):
        return value
    if value in ("rolling", "ses"):
        return str(value)
    raise ValueError(f"enforce_rate must be False, True, 'rolling' or 'ses', not {value!r}")


def _rate_mode_setting(value: Any) -> bool | str:
    """``enforce_rate`` from JSON/``configure()``: also "off", the ``rate_mode`` of False."""
    return False if value == "off" else _rate_mode(value)


def _account_answer(value: Any) -> str:
    if value not in ACCOUNT_ANSWERS:
        raise ValueError(f"account query answer must be one of {ACCOUNT_ANSWERS}, not {value!r}")
    return str(value)


# POST /_fake/config key -> (attribute, conversion); "rate" and "quota" are the CLI's names
_CONFIG_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "latency": ("latency", float),
    "rate": ("max_send_rate", float),
    "max_send_rate": ("max_send_rate", float),
    "quota": ("max_24_hour_send", int),
    "max_24_hour_send": ("max_24_hour_send", int),
    "enforce_rate": ("enforce_rate", _rate_mode_setting),
    "production_access": ("production_access", bool),
    "timeout_seconds": ("timeout_seconds", float),
    "accept_on_timeout": ("accept_on_timeout", bool),
    "get_account": ("get_account", _account_answer),
    "get_send_quota": ("get_send_quota", _account_answer),
}


@dataclasses.dataclass(frozen=True)
class AcceptedMessage:
    """One message the fake accepted through SendEmail (``api=2``) or SendRawEmail (``api=1``)."""

    message_id: str
    api: int
    source: str  # FromEmailAddress / Source as given, else the From header of the message
    destinations: tuple[str, ...]  # exactly the envelope recipients of the call, in order
    raw: bytes
    configuration_set: str | None
    tags: dict[str, str]
    received_at: float  # time.time() when it was accepted

    @property
    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def to_json(self, *, raw: bool = False) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["destinations"] = list(self.destinations)
        data["size"] = len(self.raw)
        data["raw"] = base64.b64encode(self.raw).decode("ascii") if raw else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AcceptedMessage:
        """Rebuild one entry of ``GET /_fake/messages`` (``raw`` is empty unless ``?raw=1``)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in fields}
        values["destinations"] = tuple(values["destinations"])
        values["raw"] = base64.b64decode(values["raw"]) if values.get("raw") else b""
        return cls(**values)


class _Refusal(Exception):
    """SES refusing a request; v1 and v2 sometimes use different codes for the same refusal."""

    def __init__(
        self, message: str, v1: tuple[int, str], v2: tuple[int, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.v1, self.v2 = message, v1, v2 or v1

    @classmethod
    def of(cls, fault: str) -> _Refusal:
        message, v1, v2 = _ERRORS[fault]
        return cls(message, v1, v2)

    @classmethod
    def bad_request(cls, message: str) -> _Refusal:
        return cls(message, (400, "InvalidParameterValue"), (400, "BadRequestException"))


@dataclasses.dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    aws: bool = True  # an answer of SES itself (with x-amzn-RequestId), not of another server


@dataclasses.dataclass(frozen=True)
class _Send:
    source: str | None
    destinations: tuple[str, ...]
    raw: bytes
    configuration_set: str | None
    tags: dict[str, str]


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(data).encode(), headers=headers or {})


def _xml(status: int, body: str) -> _Reply:
    return _Reply(status, f'<?xml version="1.0"?>\n{body}\n'.encode(), "text/xml")


def _error(api: int, refusal: _Refusal) -> _Reply:
    if api == 2:  # botocore's rest-json parser takes the code from this header
        status, code = refusal.v2
        return _json(status, {"message": refusal.message}, {"x-amzn-ErrorType": code})
    status, code = refusal.v1
    kind = "Sender" if status < 500 else "Receiver"
    return _xml(
        status,
        f'<ErrorResponse xmlns="{V1_NAMESPACE}"><Error><Type>{kind}</Type><Code>{code}</Code>'
        f"<Message>{escape(refusal.message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>",
    )


def _b64(data: Any) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError):
        raise _Refusal.bad_request("Could not decode the base64 raw message data.") from None


def _parse_v2(body: bytes) -> _Send:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise _Refusal.bad_request("Could not parse the request body as JSON.") from None
    content = data.get("Content") or {}
    if "Raw" not in content:  # Simple/Template: sendwell always builds the MIME itself
        raise _Refusal.bad_request("FakeSES accepts only Content.Raw (sendwell sends raw MIME).")
    destination = data.get("Destination") or {}
    kinds = ("ToAddresses", "CcAddresses", "BccAddresses")
    return _Send(
        source=data.get("FromEmailAddress"),
        destinations=tuple(a for kind in kinds for a in destination.get(kind) or ()),
        raw=_b64((content["Raw"] or {}).get("Data", "")),
        configuration_set=data.get("ConfigurationSetName"),
        tags={tag["Name"]: tag["Value"] for tag in data.get("EmailTags") or ()},
    )


def _members(params: dict[str, str], prefix: str) -> list[str]:
    """The numbered ``prefix.N[...]`` keys of a query-protocol list, as prefixes, in order."""
    numbers = {key[len(prefix) :].split(".")[0] for key in params if key.startswith(prefix)}
    return [f"{prefix}{n}" for n in sorted(numbers, key=lambda n: int(n) if n.isdigit() else 0)]


def _parse_v1(params: dict[str, str]) -> _Send:
    if "RawMessage.Data" not in params:
        raise _Refusal.bad_request("1 validation error detected: RawMessage must not be null.")
    return _Send(
        source=params.get("Source"),
        destinations=tuple(params[key] for key in _members(params, "Destinations.member.")),
        raw=_b64(params["RawMessage.Data"]),
        configuration_set=params.get("ConfigurationSetName"),
        tags={params[f"{t}.Name"]: params[f"{t}.Value"] for t in _members(params, "Tags.member.")},
    )


def _account_reply(api: int, answer: str, account: dict[str, Any]) -> _Reply:
    """GetAccount (``api=2``) or GetSendQuota (``api=1``) answered as ``answer`` (one of
    :data:`ACCOUNT_ANSWERS`); ``account`` is the v2 GetAccount body that "ok" answers with."""
    action = "GetAccount" if api == 2 else "GetSendQuota"
    if answer == "missing":
        return _Reply(404, _NOT_FOUND_HTML, "text/html", aws=False)
    if answer == "denied":
        message = f"User: {_DENIED_USER} is not authorized to perform: ses:{action} on resource: *"
        denied = _Refusal(message, (403, "AccessDenied"), (403, "AccessDeniedException"))
        return _error(api, denied)
    if answer == "error":
        return _error(api, _Refusal.of("500"))
    if api == 2:
        return _json(200, account)
    fields = "".join(f"<{k}>{float(v)}</{k}>" for k, v in account["SendQuota"].items())
    return _xml(
        200,
        f'<GetSendQuotaResponse xmlns="{V1_NAMESPACE}"><GetSendQuotaResult>{fields}'
        f"</GetSendQuotaResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
        "</ResponseMetadata></GetSendQuotaResponse>",
    )


def _sent_reply(api: int, message_id: str) -> _Reply:
    """SendEmail's (``api=2``) or SendRawEmail's (``api=1``) answer for an accepted message."""
    if api == 2:
        return _json(200, {"MessageId": message_id})
    return _xml(
        200,
        f'<SendRawEmailResponse xmlns="{V1_NAMESPACE}"><SendRawEmailResult>'
        f"<MessageId>{message_id}</MessageId></SendRawEmailResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
        "</ResponseMetadata></SendRawEmailResponse>",
    )
