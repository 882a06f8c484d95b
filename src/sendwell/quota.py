"""The SES account's sending limits: read from SES, stored for every worker, refreshed periodically.

``GetAccount`` (v2) or ``GetSendQuota`` (v1) gives the maximum send rate and the 24-hour quota.
One process refreshes the stored row when it is older than ``QUOTA_REFRESH_SECONDS``; the others
read it, and each process keeps what it read for a few seconds so that a send costs no query here.
Settings override both numbers (for credentials without ``ses:GetAccount``, or to send slower);
when SES cannot be asked and nothing is set, the sandbox's limits apply (1/s, 200 per 24 h) and
the stored row says why.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
import time
from datetime import timedelta
from typing import Any

from botocore import exceptions as botocore_exceptions
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from sendwell import aws, conf
from sendwell.models import AccountQuota
from sendwell.options import SESOptions
from sendwell.ratelimit import Limits
from sendwell.transports.ses import translate_ses_error

logger = logging.getLogger("sendwell.quota")

_LOCAL_CACHE_SECONDS = 5.0
_cache: dict[tuple[Any, ...], tuple[float, Limits]] = {}
_cache_lock = threading.Lock()
_refresh_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class AccountLimits:
    max_send_rate: float
    max_24_hour_send: float
    sent_last_24_hours: float
    production_access: bool | None


@functools.lru_cache(maxsize=64)
def bucket_name(options: SESOptions) -> str:
    """One limiter per SES account and region (an endpoint or key pair stands for the account)."""
    identity = f"{options.endpoint_url or ''}|{options.access_key_id or 'default-chain'}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"ses:{options.region_name}:{digest}"


def fetch_account_limits(options: SESOptions) -> AccountLimits:
    """Ask SES for the account's limits (one API call)."""
    client = aws.ses_client(options)
    try:
        if options.use_ses_v2:
            account = client.get_account()
            quota = account.get("SendQuota", {})
            return AccountLimits(
                max_send_rate=float(quota["MaxSendRate"]),
                max_24_hour_send=float(quota["Max24HourSend"]),
                sent_last_24_hours=float(quota.get("SentLast24Hours", 0)),
                production_access=account.get("ProductionAccessEnabled"),
            )
        quota = client.get_send_quota()
        return AccountLimits(
            max_send_rate=float(quota["MaxSendRate"]),
            max_24_hour_send=float(quota["Max24HourSend"]),
            sent_last_24_hours=float(quota.get("SentLast24Hours", 0)),
            production_access=None,
        )
    except (botocore_exceptions.BotoCoreError, botocore_exceptions.ClientError) as exc:
        raise translate_ses_error(exc, options) from exc


def refresh(options: SESOptions, using: str = DEFAULT_DB_ALIAS) -> AccountQuota:
    """Read the limits from SES and store them; on failure store the fallback and the reason."""
    name = bucket_name(options)
    now = timezone.now()
    try:
        limits = fetch_account_limits(options)
    except Exception as exc:  # any failure falls back to safe limits, and is recorded
        logger.warning(
            "sendwell could not read the SES sending quota (%s); using SENDWELL FALLBACK limits "
            "%s/s and %s per 24 h. Allow ses:GetAccount (v2) / ses:GetSendQuota (v1), or set "
            "SENDWELL['MAX_SEND_RATE'] and SENDWELL['MAX_24_HOUR_SEND'].",
            exc,
            conf.setting("FALLBACK_SEND_RATE"),
            conf.setting("FALLBACK_24_HOUR_SEND"),
        )
        row, _ = AccountQuota.objects.using(using).update_or_create(
            name=name,
            defaults={
                "max_send_rate": float(conf.setting("FALLBACK_SEND_RATE")),
                "max_24_hour_send": float(conf.setting("FALLBACK_24_HOUR_SEND")),
                "sent_last_24_hours": 0,
                "production_access": None,
                "fetched_at": now,
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


def current_limits(options: SESOptions, using: str = DEFAULT_DB_ALIAS) -> Limits:
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

    if rate_override is not None and daily_override is not None:
        limits = Limits(rate=float(rate_override) * fraction, daily=float(daily_override))
    else:
        max_age = timedelta(seconds=float(conf.setting("QUOTA_REFRESH_SECONDS")))
        row = AccountQuota.objects.using(using).filter(name=key[0]).first()
        if row is None or timezone.now() - row.fetched_at > max_age:
            # One refresh per process at a time: a worker's threads all find the row stale at
            # the same moment, and one GetAccount call answers for all of them.
            with _refresh_lock:
                row = AccountQuota.objects.using(using).filter(name=key[0]).first()
                if row is None or timezone.now() - row.fetched_at > max_age:
                    row = refresh(options, using)
        rate = float(rate_override) if rate_override is not None else row.max_send_rate
        daily = float(daily_override) if daily_override is not None else row.max_24_hour_send
        # SES's count includes our own sends up to the fetch; the limiter takes the larger of it
        # and its own count, so sends by other applications on the account are respected too.
        limits = Limits(
            rate=rate * fraction,
            daily=daily,
            sent_last_24_hours=row.sent_last_24_hours,
            sent_counted_at=row.fetched_at.timestamp(),
        )
    with _cache_lock:
        _cache[key] = (now, limits)
    return limits


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
