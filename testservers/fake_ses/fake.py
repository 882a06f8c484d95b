"""FakeSES: a small Amazon SES endpoint on 127.0.0.1 for sendwell's tests, demo and benchmarks.

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

Run as a process (``python -m testservers.fake_ses --port 8025``) several benchmark workers
can share it; ``/_fake/messages``, ``/_fake/stats``, ``/_fake/reset``, ``/_fake/inject`` and
``/_fake/config`` then read and steer it over HTTP (:class:`testservers.fake_ses.FakeSESProcess`
does both). Signatures are never checked. Standard library only, so it needs no test extra.

The wire formats are in ``protocol.py``, the enforced limits in ``limits.py``, the HTTP server in
``server.py``, the command line in ``cli.py``.
"""

from __future__ import annotations

import collections
import email
import email.policy
import email.utils
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from email.parser import BytesHeaderParser
from typing import Any

from testservers.base import LOCALHOST, TestServer
from testservers.fake_ses.limits import SendingLimits
from testservers.fake_ses.protocol import (
    _CONFIG_KEYS,
    _ERRORS,
    FAULTS,
    AcceptedMessage,
    _account_answer,
    _account_reply,
    _error,
    _rate_mode,
    _Refusal,
    _Reply,
    _Send,
    _sent_reply,
)
from testservers.fake_ses.server import _Server

__all__ = ["FakeSES"]


class FakeSES(TestServer):
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
        # The clock of the "ses" mode's budget (tests freeze it).
        self._clock: Callable[[], float] = time.monotonic
        self._limits = SendingLimits()
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
        self._server = _Server(self, port)
        self.port = int(self._server.server_address[1])
        self.endpoint_url = f"http://{LOCALHOST}:{self.port}"
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

    def start(self) -> None:
        """Nothing to do: FakeSES serves from the moment it exists (``with FakeSES() as ses``
        works all the same)."""

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        # Idle keep-alive connections would otherwise keep their threads (and answers) alive.
        self._server.close_connections()
        self._thread.join(timeout=5)

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
            self._limits.clear(self.max_send_rate, self._clock())
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
            return self._limits.day_total(time.time())

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

    def _account_query(self, api: int) -> _Reply:
        """GetAccount (``api=2``) or GetSendQuota (``api=1``), answered as configured."""
        with self._lock:
            self.requests += 1
            self.account_requests += 1
        answer = self.get_account if api == 2 else self.get_send_quota
        return _account_reply(api, answer, self._account())

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
            reply = _sent_reply(api, message.message_id)
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
            mode = self.rate_mode
            reason = self._limits.refusal(
                mode,
                recipients,
                rate=self.max_send_rate,
                quota=self.max_24_hour_send,
                now=now,
                at=self._clock(),
            )
            if reason is not None:
                self.refused[reason] = self.refused.get(reason, 0) + 1
                raise _Refusal.of("quota" if reason == "quota" else "throttle")
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
                self._limits.record(mode, recipients, now)
        return message

    def _fill_budget(self) -> None:  # caller holds the lock
        self._limits.fill(self.max_send_rate, self._clock())

    def _refill(self) -> float:  # caller holds the lock
        """The "ses" budget now (see :meth:`SendingLimits.budget`)."""
        return self._limits.budget(self.max_send_rate, self._clock())

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
