"""What each ``SENDWELL = {...}`` setting may be, and the system check that says when it is not.

Without it a typo (``"SYNC_CONCURENCY"``) would be ignored silently, and a wrong value
(``"MAX_ATTEMPTS": "eight"``) would only fail deep inside a worker, as a bare ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import checks

from sendwell.conf import DEFAULTS

CHECK_ID = "sendwell.E012"
REMOVED_ID = "sendwell.W004"
_SECRET_VALUES = frozenset({"REDIS_URL"})
# Settings that existed once, and what replaced them.
_REMOVED = {
    "FALLBACK_SEND_RATE": "sendwell no longer assumes the sandbox's 1/s when SES's limits cannot "
    "be read: it learns the rate from what SES answers. Remove it, or set MAX_SEND_RATE.",
    "FALLBACK_24_HOUR_SEND": "sendwell no longer invents a 24-hour cap when SES's limits cannot "
    "be read (SES's own refusal defers the outbox). Remove it, or set MAX_24_HOUR_SEND.",
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _whole(minimum: int) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"a whole number >= {minimum}"
        return None

    return rule


def _seconds(*, positive: bool = False) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        number = _number(value)
        if number is None or number < 0 or (positive and number == 0):
            return "a number of seconds > 0" if positive else "a number of seconds >= 0"
        return None

    return rule


def _positive_or_none(value: Any) -> str | None:
    if value is None:
        return None
    number = _number(value)
    return "None (read it from SES) or a number > 0" if number is None or number <= 0 else None


def _fraction(value: Any) -> str | None:
    number = _number(value)
    if number is None or not 0 < number <= 1:
        return "a number above 0 and at most 1, e.g. 0.97"
    return None


def _choice(*choices: str) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)

    return rule


def _text_or_none(value: Any) -> str | None:
    return None if value is None or (isinstance(value, str) and value) else "a string or None"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty string"


RULES: dict[str, Callable[[Any], str | None]] = {
    "MAX_SEND_RATE": _positive_or_none,
    "MAX_24_HOUR_SEND": _positive_or_none,
    "QUOTA_REFRESH_SECONDS": _seconds(positive=True),
    "RATE_FRACTION": _fraction,
    "RATE_LIMITER": _choice("database", "redis"),
    "REDIS_URL": _text_or_none,
    "SYNC_MAX_WAIT": _seconds(),
    "SYNC_CONCURRENCY": _whole(1),
    "MAX_ATTEMPTS": _whole(1),
    "MAX_AGE_SECONDS": _seconds(positive=True),
    "BACKOFF_BASE_SECONDS": _seconds(),
    "BACKOFF_MAX_SECONDS": _seconds(),
    "LEASE_SECONDS": _seconds(positive=True),
    "BATCH_SIZE": _whole(1),
    "CONCURRENCY": _whole(1),
    "TASK_TIME_BUDGET_SECONDS": _seconds(positive=True),
    "TASK_BACKEND": _text,
    "TASK_QUEUE": _text,
    "FAILOVER_AFTER_ATTEMPTS": _whole(1),
    "CIRCUIT_BREAKER_THRESHOLD": _whole(1),
    "CIRCUIT_BREAKER_SECONDS": _seconds(),
}
assert set(RULES) == set(DEFAULTS), "every SENDWELL setting needs a rule"


def sendwell_setting_problems() -> list[checks.CheckMessage]:
    """One error per unknown key or invalid value in ``settings.SENDWELL``."""
    configured = getattr(settings, "SENDWELL", None)
    if configured is None:
        return []
    if not isinstance(configured, dict):
        return [
            checks.Error(
                f"SENDWELL is a {type(configured).__name__}, not a dict",
                hint='Write SENDWELL = {"SETTING": value, ...}; see docs/outbox.md#settings.',
                id=CHECK_ID,
            )
        ]
    problems: list[checks.CheckMessage] = []
    for name, value in configured.items():
        rule = RULES.get(name)
        if name in _REMOVED:
            # A warning, not an error: an upgrade must not stop migrate and runserver.
            problems.append(
                checks.Warning(
                    f"SENDWELL[{name!r}] was removed and is ignored",
                    hint=_REMOVED[name],
                    id=REMOVED_ID,
                )
            )
            continue
        if rule is None:
            problems.append(
                checks.Error(
                    f"SENDWELL[{name!r}] is not a sendwell setting",
                    hint=f"Known settings: {', '.join(sorted(RULES))}.",
                    id=CHECK_ID,
                )
            )
            continue
        expected = rule(value)
        if expected is not None:
            # A Redis URL may hold a password: never echo it.
            shown = f"a {type(value).__name__}" if name in _SECRET_VALUES else repr(value)
            problems.append(
                checks.Error(
                    f"SENDWELL[{name!r}] = {shown} is not {expected}",
                    hint=f"Write {expected}, or leave it out for the default ({DEFAULTS[name]!r}).",
                    id=CHECK_ID,
                )
            )
    if configured.get("RATE_LIMITER") == "redis" and not configured.get("REDIS_URL"):
        problems.append(
            checks.Error(
                "SENDWELL['RATE_LIMITER'] is 'redis' but SENDWELL['REDIS_URL'] is not set",
                hint="Set REDIS_URL, e.g. 'redis://127.0.0.1:6379/0', or use the 'database' "
                "limiter.",
                id=CHECK_ID,
            )
        )
    return problems
