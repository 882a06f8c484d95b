"""The SES account's sending limits as SES reports them, stored for every worker, refreshed.

``GetAccount`` (v2) or ``GetSendQuota`` (v1) gives the maximum send rate and the 24-hour quota;
when the configured API cannot be asked (denied, not implemented by the endpoint), the other one
is tried. One process refreshes the stored row when it is older than ``QUOTA_REFRESH_SECONDS``;
the others read it, and each process keeps what it read for a few seconds so that a send costs no
query here. Settings override both numbers.

What SES's numbers mean: ``Max24HourSend`` of -1 is an unlimited 24-hour quota. The sandbox is
whatever SES reports for it (1/s, 200 per 24 h); it is never assumed. Limits that cannot be read
(the guide's least-privilege IAM policy allows only ``ses:SendEmail`` and ``ses:SendRawEmail``)
are *unknown*: no 24-hour cap is invented (SES's own "Daily message quota exceeded" defers the
outbox) and the send rate is learned from SES's answers (:mod:`sendwell.ratecontrol`). That is
said once per process and cause, in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
import time
from datetime import timedelta
from typing import Any, Literal

from botocore import exceptions as botocore_exceptions
from botocore.parsers import ResponseParserError
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from sendwell import aws, conf
from sendwell.models import AccountQuota
from sendwell.options import SESOptions
from sendwell.transports.ses import translate_ses_error

logger = logging.getLogger("sendwell.quota")

_LOCAL_CACHE_SECONDS = 5.0
_cache: dict[tuple[Any, ...], tuple[float, KnownLimits]] = {}
_cache_lock = threading.Lock()
_refresh_lock = threading.Lock()
_said: set[tuple[str, str]] = set()  # (account, cause) already logged by this process

RateSource = Literal["ses", "settings", "unknown"]
DailySource = Literal["ses", "settings", "unlimited", "unknown"]
_OPERATIONS = {2: ("GetAccount", "ses:GetAccount"), 1: ("GetSendQuota", "ses:GetSendQuota")}


@dataclasses.dataclass(frozen=True)
class AccountLimits:
    """The limits as one GetAccount / GetSendQuota answer gave them (SES's numbers as given)."""

    max_send_rate: float
    max_24_hour_send: float  # -1: unlimited
    sent_last_24_hours: float
    production_access: bool | None


@dataclasses.dataclass(frozen=True)
class KnownLimits:
    """What sendwell knows of an account's limits now, and where each number comes from.

    ``rate`` already has ``RATE_FRACTION`` applied; None means unknown (learned while sending).
    ``daily`` None means no local 24-hour cap: SES said unlimited, or it is unknown.
    """

    rate: float | None
    daily: float | None
    rate_source: RateSource
    daily_source: DailySource
    sent_last_24_hours: float = 0.0
    sent_counted_at: float = 0.0
    production_access: bool | None = None
    error: str = ""  # why SES could not be asked, in one line


class LimitsUnreadable(Exception):
    """Neither GetAccount nor GetSendQuota answered; ``str()`` is the one-line cause.

    ``permanent``: asking again will not help (denied, not implemented, not SES's answer), as
    opposed to throttling, a 5xx or the network, after which the last limits read still stand.
    """

    def __init__(self, cause: str, *, permanent: bool) -> None:
        super().__init__(cause)
        self.permanent = permanent


# After a transient failure, the limits are asked for again this soon (seconds).
RETRY_SECONDS = 30.0
_CONNECTION_ERRORS = (botocore_exceptions.ConnectionError, botocore_exceptions.HTTPClientError)
_ANSWER_ERRORS = (ResponseParserError, KeyError, TypeError, ValueError, AttributeError)


@functools.lru_cache(maxsize=64)
def bucket_name(options: SESOptions) -> str:
    """One limiter per SES account and region (an endpoint or key pair stands for the account)."""
    identity = f"{options.endpoint_url or ''}|{options.access_key_id or 'default-chain'}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"ses:{options.region_name}:{digest}"


def _ask(options: SESOptions) -> AccountLimits:
    client = aws.ses_client(options)
    if options.use_ses_v2:
        account = client.get_account()
        quota = account.get("SendQuota", {})
        production = account.get("ProductionAccessEnabled")
    else:
        quota = client.get_send_quota()
        production = None
    return AccountLimits(
        max_send_rate=float(quota["MaxSendRate"]),
        max_24_hour_send=float(quota["Max24HourSend"]),
        sent_last_24_hours=float(quota.get("SentLast24Hours", 0)),
        production_access=production,
    )


def describe_failure(exc: Exception, options: SESOptions) -> tuple[str, bool]:
    """One short line saying why ``options``' limits could not be read (never a whole page),
    and whether the cause is permanent (see :class:`LimitsUnreadable`)."""
    operation, action = _OPERATIONS[options.api_version]
    if isinstance(exc, botocore_exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "") or "Unknown")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("AccessDenied", "AccessDeniedException") or status == 403:
            return f"{code}: {action} not allowed", True
        if status in (404, 405) or code in ("InvalidAction", "UnknownOperationException"):
            # A proxy, another service or an emulator without the call: its body may be a page.
            return f"HTTP {status or code}: the endpoint does not implement {operation}", True
        if str(error.get("Message", "")).lstrip().startswith("<"):
            transient = status >= 500 or status == 429
            return (
                f"HTTP {status}: the endpoint's answer to {operation} is not SES's",
                not transient,
            )
    if isinstance(exc, ResponseParserError):
        # An answer that is not SES's at all (an HTML page to a v1 query): never log the page.
        return f"the endpoint's answer to {operation} is not SES's (it could not be parsed)", True
    if isinstance(exc, botocore_exceptions.BotoCoreError | botocore_exceptions.ClientError):
        return f"{operation}: {translate_ses_error(exc, options)}", False
    # An answer without the numbers, or with something else in their place.
    return f"{operation}: the answer has no usable SendQuota ({type(exc).__name__})", True


def fetch_account_limits(options: SESOptions) -> AccountLimits:
    """Ask SES for the account's limits: the configured API's call, then the other API's.

    Raises :class:`LimitsUnreadable` (the first API's cause) when neither answers.
    """
    errors = (botocore_exceptions.BotoCoreError, botocore_exceptions.ClientError, *_ANSWER_ERRORS)
    try:
        return _ask(options)
    except errors as first:
        cause, permanent = describe_failure(first, options)
        if isinstance(first, _CONNECTION_ERRORS):
            raise LimitsUnreadable(cause, permanent=False) from first  # the other API is no nearer
        other = dataclasses.replace(options, use_ses_v2=not options.use_ses_v2)
        try:
            return _ask(other)
        except errors as second:
            other_cause, other_permanent = describe_failure(second, other)
            raise LimitsUnreadable(
                f"{cause}; {other_cause}", permanent=permanent and other_permanent
            ) from first


def refresh(options: SESOptions, using: str = DEFAULT_DB_ALIAS) -> AccountQuota:
    """Read the limits from SES and store them; on failure store "unknown" and the cause.

    A transient failure (throttling, a 5xx, the network) keeps limits read before, and asks
    again in RETRY_SECONDS: one worker's unlucky call must not make every worker forget them.
    """
    name = bucket_name(options)
    now = timezone.now()
    try:
        limits = fetch_account_limits(options)
    except LimitsUnreadable as exc:
        fetched_at = now
        if not exc.permanent:
            max_age = float(conf.setting("QUOTA_REFRESH_SECONDS"))
            fetched_at = now - timedelta(seconds=max(0.0, max_age - RETRY_SECONDS))
            known = AccountQuota.objects.using(using).filter(name=name, max_send_rate__isnull=False)
            if known.update(fetched_at=fetched_at):
                logger.info("sendwell could not refresh the SES limits (%s); keeping them", exc)
                return AccountQuota.objects.using(using).get(name=name)
        _say_once(name, str(exc))
        row, _ = AccountQuota.objects.using(using).update_or_create(
            name=name,
            defaults={
                "max_send_rate": None,
                "max_24_hour_send": None,
                "sent_last_24_hours": 0,
                "production_access": None,
                "fetched_at": fetched_at,
                "error": str(exc),
            },
        )
        return row
    row, _ = AccountQuota.objects.using(using).update_or_create(
        name=name,
        defaults={
            "max_send_rate": limits.max_send_rate,
            "max_24_hour_send": limits.max_24_hour_send,
            "sent_last_24_hours": limits.sent_last_24_hours,
            "production_access": limits.production_access,
            "fetched_at": now,
            "error": "",
        },
    )
    return row


def _say_once(name: str, cause: str) -> None:
    if (name, cause) in _said:
        return
    _said.add((name, cause))
    rate, daily = conf.setting("MAX_SEND_RATE"), conf.setting("MAX_24_HOUR_SEND")
    logger.warning(
        "sendwell could not read the SES limits (%s); %s; %s",
        cause,
        f"using SENDWELL['MAX_SEND_RATE'] = {rate:g}/s"
        if rate is not None
        else "learning the send rate from SES",
        f"SENDWELL['MAX_24_HOUR_SEND'] = {daily:g}" if daily is not None else "no 24-hour cap",
    )


def known_limits(
    row: AccountQuota | None, rate_override: Any, daily_override: Any, fraction: float
) -> KnownLimits:
    """What the stored row and the settings say, combined (settings win)."""
    rate: float | None = None
    rate_source: RateSource = "unknown"
    if rate_override is not None:
        rate, rate_source = float(rate_override) * fraction, "settings"
    elif row is not None and row.max_send_rate is not None and row.max_send_rate > 0:
        rate, rate_source = row.max_send_rate * fraction, "ses"
    daily: float | None = None
    daily_source: DailySource = "unknown"
    if daily_override is not None:
        daily, daily_source = float(daily_override), "settings"
    elif row is not None and row.max_24_hour_send is not None:
        if row.max_24_hour_send < 0:
            daily_source = "unlimited"
        else:
            daily, daily_source = row.max_24_hour_send, "ses"
    return KnownLimits(
        rate=rate,
        daily=daily,
        rate_source=rate_source,
        daily_source=daily_source,
        # SES's count includes our own sends up to the fetch; the limiter takes the larger of
        # it and its own count, so sends by other applications on the account are respected.
        sent_last_24_hours=row.sent_last_24_hours if row is not None and not row.error else 0.0,
        sent_counted_at=row.fetched_at.timestamp() if row is not None else 0.0,
        production_access=row.production_access if row is not None else None,
        error=row.error if row is not None else "",
    )


def current_limits(options: SESOptions, using: str = DEFAULT_DB_ALIAS) -> KnownLimits:
    """The limits to enforce now for ``options``' account (cached a few seconds per process);
    ``using``: the database connection to read and store them on."""
    rate_override = conf.setting("MAX_SEND_RATE")
    daily_override = conf.setting("MAX_24_HOUR_SEND")
    fraction = float(conf.setting("RATE_FRACTION"))
    key = (bucket_name(options), rate_override, daily_override, fraction)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and now - cached[0] < _LOCAL_CACHE_SECONDS:
        return cached[1]
    row: AccountQuota | None = None
    if rate_override is None or daily_override is None:
        max_age = timedelta(seconds=float(conf.setting("QUOTA_REFRESH_SECONDS")))
        row = AccountQuota.objects.using(using).filter(name=key[0]).first()
        if row is None or timezone.now() - row.fetched_at > max_age:
            # One refresh per process at a time: a worker's threads all find the row stale at
            # the same moment, and one GetAccount call answers for all of them.
            with _refresh_lock:
                row = AccountQuota.objects.using(using).filter(name=key[0]).first()
                if row is None or timezone.now() - row.fetched_at > max_age:
                    row = refresh(options, using)
    limits = known_limits(row, rate_override, daily_override, fraction)
    with _cache_lock:
        _cache[key] = (now, limits)
    return limits


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
    _said.clear()
