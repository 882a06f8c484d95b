"""A small Amazon SES endpoint on 127.0.0.1 for sendwell's tests and benchmarks.

It speaks the wire protocols boto3 uses (SES v2 REST-JSON ``SendEmail``/``GetAccount`` and the
v1 query API ``SendRawEmail``/``GetSendQuota``), so clients are tested against real HTTP, not a
mock. Unlike moto it can misbehave on purpose: added latency, SES's own throttling and quota
errors (optionally enforced from ``max_send_rate``/``max_24_hour_send``, counted in recipients as
SES counts them: ``enforce_rate=True`` in a rolling second, ``enforce_rate="ses"`` with SES's own
token budget that one large call may overdraw), 5xx answers, answers that never come, connections
closed before or after the message was accepted, and account queries that fail as real ones do
(``get_account``/``get_send_quota``: IAM denial, an endpoint without the call, a server error).
Every accepted message is recorded with the time it arrived::

    with FakeSES(max_send_rate=14, enforce_rate="ses", get_account="denied") as ses:
        ses.inject("throttle")  # the next send is refused, the one after accepted
        ...  # boto3.client("sesv2", endpoint_url=ses.endpoint_url, ...)
        assert ses.messages[0].destinations == ("to@example.com",)

Run as a process (``python -m sendwell.testing.fake_ses --port 8025``) several benchmark workers
can share it; ``/_fake/messages``, ``/_fake/stats``, ``/_fake/reset``, ``/_fake/inject`` and
``/_fake/config`` then read and steer it over HTTP. Signatures are never checked. Standard
library only, so it needs no test extra.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import contextlib
import dataclasses
import email
import email.policy
import email.utils
import json
import signal
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from xml.sax.saxutils import escape

__all__ = ["ACCOUNT_ANSWERS", "FAULTS", "AcceptedMessage", "FakeSES", "main"]

HOST = "127.0.0.1"
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


class FakeSES:
    """An SES endpoint serving on 127.0.0.1 (a free port unless ``port``) from the moment it exists.

    Faults come from :meth:`inject` (a queue consumed by the next send requests, in order) and
    then ``fault_plan``, which gets the 1-based number of the send request (restarting at 1 after
    :meth:`reset`). Send requests are SendEmail/SendRawEmail; account queries are never faulted
    or delayed. The faults, all in SES's own words and codes:

    - ``"throttle"``/``"quota"``: the sending-rate or daily-quota refusal (v1 400 Throttling, v2
      429 TooManyRequestsException), also what an enforced limit answers (see below);
    - ``"429"``: API-level "Rate exceeded" throttling; ``"500"``, ``"503"``: server errors;
    - ``"timeout"``: answer only after ``timeout_seconds`` (the client has given up by then); the
      message is recorded only with ``accept_on_timeout=True``, as SES may have accepted it;
    - ``"drop"``: close the connection without answering and without recording;
    - ``"drop_after_accept"``: handle the send as usual (recording it), then close the
      connection instead of answering: a lost response.

    ``enforce_rate`` refuses sends over the limits (counted in recipients, refusals counted in
    ``refused["rate"]``/``refused["quota"]``); ``max_24_hour_send`` caps the recipients of the
    last 24 hours unless it is -1 (unlimited, as in SES). The sending rate is counted as chosen:

    - ``True`` or ``"rolling"``: refuse a call when the recipients accepted in the last rolling
      second plus its own would exceed ``max_send_rate``;
    - ``"ses"``: as SES counts, a budget of ``max_send_rate`` recipients (one second's worth),
      refilled continuously at ``max_send_rate`` per second and full at the start (and after
      :meth:`reset`, and when this mode is switched on). A call is accepted while anything is
      left, however little, and then spends one unit per recipient, so the budget may go into
      debt: at 1/s a 50-recipient call is accepted and the calls after it are refused until the
      debt is refilled. A refused call spends nothing; only sends accepted in this mode spend.
      Lowering ``max_send_rate`` clamps the budget to the new capacity.

    ``get_account`` (v2 GetAccount) and ``get_send_quota`` (v1 GetSendQuota) choose how those
    queries answer: ``"ok"``; ``"denied"``, AWS's answer when the IAM policy lacks the action
    (v2 403 AccessDeniedException, v1 403 AccessDenied); ``"missing"``, a 404 HTML page from an
    endpoint without the call (a proxy or another service); ``"error"``, 500 InternalFailure.

    Any setting may be changed while it serves (also via ``POST /_fake/config``).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        region: str = "us-east-1",
        max_send_rate: float = 14.0,
        max_24_hour_send: int = 50_000,
        production_access: bool = True,
        enforce_rate: bool | str = False,
        verified_identities: Iterable[str] | None = None,
        latency: float = 0.0,
        fault_plan: Callable[[int], str | None] | None = None,
        timeout_seconds: float = 5.0,
        accept_on_timeout: bool = False,
        get_account: str = "ok",
        get_send_quota: str = "ok",
    ) -> None:
        self._lock = threading.Lock()
        self.region = region
        self.max_send_rate = max_send_rate
        # The "ses" mode's budget: recipients that may still start a call, as of _budget_at.
        self._clock: Callable[[], float] = time.monotonic
        self._budget = self._budget_at = 0.0
        self._fill_budget()
        self._enforce_rate: bool | str = False
        self.max_24_hour_send = max_24_hour_send  # -1 means unlimited, as in SES
        self.production_access = production_access
        self.enforce_rate = enforce_rate
        self.get_account = get_account
        self.get_send_quota = get_send_quota
        self.verified_identities = None if verified_identities is None else set(verified_identities)
        self.latency = latency
        self.fault_plan = fault_plan
        self.timeout_seconds = timeout_seconds
        # A timed-out send may still have been accepted by real SES: this makes it so here too.
        self.accept_on_timeout = accept_on_timeout
        self.messages: list[AcceptedMessage] = []
        self.requests = 0  # SES API requests of any kind
        self.send_requests = 0
        self.account_requests = 0  # GetAccount and GetSendQuota, however they were answered
        # Send requests being handled right now, and the most at once since the last reset().
        self.in_flight = self.max_in_flight = 0
        self.faults_served: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # refusals not injected: "rate", "quota", "unverified"
        self._stopping = threading.Event()  # wakes sleeping handlers so stop() is quick
        self._faults: collections.deque[str] = collections.deque()
        # (time, recipients) of recorded sends, pruned to 1 s and 24 h: O(1) limit checks.
        self._second: collections.deque[tuple[float, int]] = collections.deque()
        self._day: collections.deque[tuple[float, int]] = collections.deque()
        self._second_total = self._day_total = 0
        self._server = _Server(self, port)
        self.port = int(self._server.server_address[1])
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=f"FakeSES:{self.port}",
            daemon=True,
        )
        self._thread.start()

    # --- settings that are validated ------------------------------------------------------------

    @property
    def enforce_rate(self) -> bool | str:
        """False, True (the same as "rolling"), "rolling" or "ses": see the class docstring."""
        return self._enforce_rate

    @enforce_rate.setter
    def enforce_rate(self, value: bool | str) -> None:
        value = _rate_mode(value)
        with self._lock:
            if value == "ses" and self._enforce_rate != "ses":
                self._fill_budget()
            self._enforce_rate = value

    @property
    def rate_mode(self) -> str:
        """The sending-rate enforcement in force: "off", "rolling" or "ses"."""
        mode = self._enforce_rate
        return "off" if mode is False else "rolling" if mode is True else str(mode)

    @property
    def get_account(self) -> str:
        """How v2 GetAccount answers: one of :data:`ACCOUNT_ANSWERS`."""
        return self._get_account

    @get_account.setter
    def get_account(self, value: str) -> None:
        self._get_account = _account_answer(value)

    @property
    def get_send_quota(self) -> str:
        """How v1 GetSendQuota answers: one of :data:`ACCOUNT_ANSWERS`."""
        return self._get_send_quota

    @get_send_quota.setter
    def get_send_quota(self, value: str) -> None:
        self._get_send_quota = _account_answer(value)

    # --- lifecycle and control ------------------------------------------------------------------

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        # Idle keep-alive connections would otherwise keep their threads (and answers) alive.
        self._server.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def inject(self, fault: str, times: int = 1) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
        with self._lock:
            self._faults.extend([fault] * times)

    @property
    def pending_faults(self) -> list[str]:
        with self._lock:
            return list(self._faults)

    def reset(self) -> None:
        """Forget messages, queued faults and counters; settings are kept."""
        with self._lock:
            self.messages.clear()
            self._faults.clear()
            self._second.clear()
            self._day.clear()
            self._second_total = self._day_total = 0
            self._fill_budget()
            self.requests = self.send_requests = self.account_requests = 0
            self.max_in_flight = self.in_flight
            self.faults_served.clear()
            self.refused.clear()

    def configure(self, **changes: Any) -> None:
        """Change settings by the names of ``POST /_fake/config`` (see ``_CONFIG_KEYS``)."""
        unknown = set(changes) - set(_CONFIG_KEYS) - {"verified_identities"}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        for key, value in changes.items():
            if key == "verified_identities":
                self.verified_identities = None if value is None else {str(v) for v in value}
            else:
                attribute, kind = _CONFIG_KEYS[key]
                setattr(self, attribute, kind(value))

    @property
    def sent_last_24_hours(self) -> int:
        with self._lock:
            self._prune(time.time())
            return self._day_total

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[AcceptedMessage]:
        """Wait until at least ``count`` messages were accepted (for in-doubt sends)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.messages)} of {count} messages after {timeout}s")
            time.sleep(0.01)
        return list(self.messages)

    def stats(self) -> dict[str, Any]:
        sent = self.sent_last_24_hours
        with self._lock:
            return {
                "requests": self.requests,
                "send_requests": self.send_requests,
                "account_requests": self.account_requests,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "accepted": len(self.messages),
                "sent_last_24_hours": sent,
                "faults_served": dict(self.faults_served),
                "refused": dict(self.refused),
                "pending_faults": list(self._faults),
                # the "ses" mode's budget now (recipients; below 0 is debt), else None
                "rate_budget": self._refill() if self.rate_mode == "ses" else None,
                "config": {attr: getattr(self, attr) for attr, _ in _CONFIG_KEYS.values()}
                | {
                    "rate_mode": self.rate_mode,
                    "verified_identities": sorted(self.verified_identities or ()) or None,
                },
            }

    # --- request handling (runs in the server's handler threads) --------------------------------

    def _handle(self, method: str, path: str, query: str, body: bytes) -> _Reply:
        if path.startswith("/_fake/"):
            return self._control(method, path, query, body)
        if path.startswith("/v2/"):
            if method == "POST" and path == "/v2/email/outbound-emails":
                return self._send(2, lambda: _parse_v2(body))
            if method == "GET" and path == "/v2/email/account":
                return self._account_query(2)
            unknown = _Refusal(f"No operation for {method} {path}", (404, "NotFoundException"))
            return _error(2, unknown)
        params = dict(urllib.parse.parse_qsl(body.decode("utf-8") or query, keep_blank_values=True))
        action = params.get("Action")
        if action == "SendRawEmail":
            return self._send(1, lambda: _parse_v1(params))
        if action == "GetSendQuota":
            return self._account_query(1)
        return _error(1, _Refusal(f"FakeSES does not implement {action}.", (400, "InvalidAction")))

    def _account_query(self, api: int) -> _Reply:
        """GetAccount (``api=2``) or GetSendQuota (``api=1``), answered as configured."""
        with self._lock:
            self.requests += 1
            self.account_requests += 1
        if api == 2:
            answer, action = self.get_account, "GetAccount"
        else:
            answer, action = self.get_send_quota, "GetSendQuota"
        if answer == "missing":
            return _Reply(404, _NOT_FOUND_HTML, "text/html", aws=False)
        if answer == "denied":
            message = (
                f"User: {_DENIED_USER} is not authorized to perform: ses:{action} on resource: *"
            )
            denied = _Refusal(message, (403, "AccessDenied"), (403, "AccessDeniedException"))
            return _error(api, denied)
        if answer == "error":
            return _error(api, _Refusal.of("500"))
        account = self._account()
        if api == 2:
            return _json(200, account)
        fields = "".join(f"<{k}>{float(v)}</{k}>" for k, v in account["SendQuota"].items())
        return _xml(
            200,
            f'<GetSendQuotaResponse xmlns="{V1_NAMESPACE}"><GetSendQuotaResult>{fields}'
            f"</GetSendQuotaResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></GetSendQuotaResponse>",
        )

    def _account(self) -> dict[str, Any]:
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": self.production_access,
            "SendQuota": {
                "Max24HourSend": float(self.max_24_hour_send),
                "MaxSendRate": float(self.max_send_rate),
                "SentLast24Hours": float(self.sent_last_24_hours),
            },
            "SendingEnabled": True,
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
        }

    def _send(self, api: int, parse: Callable[[], _Send]) -> _Reply:
        with self._lock:
            self.requests += 1
            self.send_requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            number = self.send_requests
            fault = self._faults.popleft() if self._faults else None
        try:
            return self._answer_send(api, parse, number, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer_send(
        self, api: int, parse: Callable[[], _Send], number: int, fault: str | None
    ) -> _Reply:
        if fault is None and self.fault_plan is not None:
            fault = self.fault_plan(number)  # user code: called outside the lock
        if fault is not None:
            if fault not in FAULTS:
                raise ValueError(f"fault_plan returned unknown fault {fault!r}")
            with self._lock:
                self.faults_served[fault] = self.faults_served.get(fault, 0) + 1
        if self.latency > 0:
            self._stopping.wait(self.latency)
        if fault == "drop":
            return _Reply(0, b"", drop=True)
        try:
            if fault in _ERRORS:
                raise _Refusal.of(fault)
            record = fault != "timeout" or self.accept_on_timeout
            message = self._accept(api, parse(), record=record)
            if api == 2:
                reply = _json(200, {"MessageId": message.message_id})
            else:
                reply = _xml(
                    200,
                    f'<SendRawEmailResponse xmlns="{V1_NAMESPACE}"><SendRawEmailResult>'
                    f"<MessageId>{message.message_id}</MessageId></SendRawEmailResult>"
                    f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
                    "</ResponseMetadata></SendRawEmailResponse>",
                )
        except _Refusal as refusal:
            reply = _error(api, refusal)
        if fault == "timeout":  # answer after the client gave up; the answer is lost
            self._stopping.wait(self.timeout_seconds)
        reply.drop = fault == "drop_after_accept"
        return reply

    def _accept(self, api: int, send: _Send, *, record: bool) -> AcceptedMessage:
        headers = None
        if send.source is None or not send.destinations:  # SES falls back to the headers
            headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(send.raw)
        source = send.source or (headers.get("From", "") if headers else "")
        if not source:
            raise _Refusal.bad_request("Missing final '@domain'")
        self._check_identity(source)
        recipients = len(send.destinations)
        if headers is not None and not recipients:
            fields = [str(v) for k in ("To", "Cc", "Bcc") for v in headers.get_all(k, [])]
            recipients = len(email.utils.getaddresses(fields))
        with self._lock:
            now = time.time()
            self._prune(now)
            mode = self.rate_mode
            if mode != "off":
                over_day = self._day_total + recipients > self.max_24_hour_send >= 0
                if mode == "ses":  # anything left lets the whole call through
                    over_rate = self._refill() <= 0
                else:
                    over_rate = self._second_total + recipients > self.max_send_rate
                if over_day or over_rate:
                    reason = "quota" if over_day else "rate"
                    self.refused[reason] = self.refused.get(reason, 0) + 1
                    raise _Refusal.of("quota" if over_day else "throttle")
            message = AcceptedMessage(
                message_id=f"0100{int(now * 1000):012x}-{uuid.uuid4()}-000000",  # SES's shape
                api=api,
                source=source,
                destinations=send.destinations,
                raw=send.raw,
                configuration_set=send.configuration_set,
                tags=send.tags,
                received_at=now,
            )
            if record:
                self.messages.append(message)
                self._second.append((now, recipients))
                self._day.append((now, recipients))
                self._second_total += recipients
                self._day_total += recipients
                if mode == "ses":
                    self._budget -= recipients  # may go below 0: debt
        return message

    def _fill_budget(self) -> None:  # caller holds the lock
        self._budget, self._budget_at = max(float(self.max_send_rate), 0.0), self._clock()

    def _refill(self) -> float:  # caller holds the lock
        """The "ses" budget now: refilled at ``max_send_rate``/s, at most ``max_send_rate``."""
        now = self._clock()
        capacity = max(float(self.max_send_rate), 0.0)  # read each time: it may be changed
        self._budget = min(capacity, self._budget + max(now - self._budget_at, 0.0) * capacity)
        self._budget_at = now
        return self._budget

    def _prune(self, now: float) -> None:  # caller holds the lock
        while self._second and self._second[0][0] <= now - 1.0:
            self._second_total -= self._second.popleft()[1]
        while self._day and self._day[0][0] <= now - 86_400.0:
            self._day_total -= self._day.popleft()[1]

    def _check_identity(self, source: str) -> None:
        if self.verified_identities is None:
            return
        address = email.utils.parseaddr(source)[1].lower()
        identities = {identity.lower() for identity in self.verified_identities}
        if address not in identities and address.rpartition("@")[2] not in identities:
            with self._lock:
                self.refused["unverified"] = self.refused.get("unverified", 0) + 1
            raise _Refusal(
                "Email address is not verified. The following identities failed the check in "
                f"region {self.region.upper()}: {address}",
                (400, "MessageRejected"),
            )

    def _control(self, method: str, path: str, query: str, body: bytes) -> _Reply:
        try:
            data = json.loads(body) if body.strip() else {}
            if method == "GET" and path == "/_fake/messages":
                options = urllib.parse.parse_qs(query)
                raw = options.get("raw", ["0"])[0].lower() in ("1", "true", "yes")
                since = int(options.get("since", ["0"])[0])  # lets a benchmark fetch only news
                with self._lock:
                    messages = self.messages[since:]
                return _json(200, [message.to_json(raw=raw) for message in messages])
            if method == "GET" and path == "/_fake/stats":
                return _json(200, self.stats())
            if method == "POST" and path == "/_fake/reset":
                self.reset()
            elif method == "POST" and path == "/_fake/inject":
                self.inject(str(data["fault"]), int(data.get("times", 1)))
            elif method == "POST" and path == "/_fake/config":
                self.configure(**data)
            else:
                return _json(404, {"error": f"no control endpoint {method} {path}"})
            return _json(200, self.stats())
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": f"{type(exc).__name__}: {exc}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many benchmark clients connect at once

    def __init__(self, fake: FakeSES, port: int) -> None:
        super().__init__((HOST, port), _Handler)
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # botocore keeps connections alive; HTTP/1.1 with Content-Length on every answer allows it
    protocol_version = "HTTP/1.1"
    # An answer is two writes (headers, then body). With Nagle's algorithm the body waits for
    # the client to acknowledge the headers, which a kept-alive client delays by up to 40 ms:
    # every send after a connection's first took ``latency`` + 40 ms. TCP_NODELAY avoids it.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # flushing to a client that already left
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one stderr line per request would drown test and benchmark output

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urllib.parse.urlsplit(self.path)
        try:
            reply = self.server.fake._handle(self.command, url.path, url.query, body)
        except Exception as exc:  # a bug or a bad fault_plan must not hang the client
            reply = _json(500, {"message": repr(exc)}, {"x-amzn-ErrorType": "InternalFailure"})
        if reply.drop:  # no answer at all: the socket is closed once this returns
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.aws:
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up waiting (a "timeout" fault)
            self.close_connection = True


def _settings(argv: list[str] | None = None) -> dict[str, Any]:
    """The :class:`FakeSES` keyword arguments the command line asks for."""
    parser = argparse.ArgumentParser(
        prog="python -m sendwell.testing.fake_ses", description="Serve a fake SES on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rate", type=float, default=14.0, help="MaxSendRate, recipients/s")
    parser.add_argument("--quota", type=int, default=50_000, help="Max24HourSend (-1: unlimited)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each send")
    enforce = parser.add_mutually_exclusive_group()
    enforce.add_argument(
        "--enforce-rate",
        action="store_const",
        const=True,
        dest="enforce_rate",
        default=False,
        help="refuse over the quota or over the rate in any rolling second",
    )
    enforce.add_argument(
        "--enforce-ses",
        action="store_const",
        const="ses",
        dest="enforce_rate",
        help="refuse over the quota or the rate as SES counts it (a budget one call may overdraw)",
    )
    parser.add_argument("--timeout-seconds", type=float, default=5.0)
    parser.add_argument("--accept-on-timeout", action="store_true")
    parser.add_argument("--verified", action="append", help="verified identity (repeatable)")
    parser.add_argument("--sandbox", action="store_true", help="report no production access")
    for flag, call in (("--get-account", "v2 GetAccount"), ("--get-send-quota", "v1 GetSendQuota")):
        parser.add_argument(flag, choices=ACCOUNT_ANSWERS, default="ok", help=f"how {call} answers")
    args = parser.parse_args(argv)
    return {
        "port": args.port,
        "max_send_rate": args.rate,
        "max_24_hour_send": args.quota,
        "latency": args.latency,
        "enforce_rate": args.enforce_rate,
        "timeout_seconds": args.timeout_seconds,
        "accept_on_timeout": args.accept_on_timeout,
        "verified_identities": args.verified,
        "production_access": not args.sandbox,
        "get_account": args.get_account,
        "get_send_quota": args.get_send_quota,
    }


def main(argv: list[str] | None = None) -> int:
    settings = _settings(argv)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with FakeSES(**settings) as ses:
        print(ses.endpoint_url, flush=True)  # first line of output: parents read it
        while not stopped.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
