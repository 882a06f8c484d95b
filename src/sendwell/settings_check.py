"""The system check that says when a ``SENDWELL = {...}`` setting is not what it may be (the
rules are in :mod:`sendwell.settings_table`).

Without it a typo (``"SYNC_CONCURENCY"``) would be ignored silently, and a wrong value
(``"MAX_ATTEMPTS": "eight"``) would only fail deep inside a worker, as a bare ``ValueError``.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from sendwell.settings_table import DEFAULTS, RULES, SECRET

CHECK_ID = "sendwell.E012"
REMOVED_ID = "sendwell.W004"
# Settings that existed once, and what replaced them.
_REMOVED = {
    "FALLBACK_SEND_RATE": "sendwell no longer assumes the sandbox's 1/s when SES's limits cannot "
    "be read: it learns the rate from what SES answers. Remove it, or set MAX_SEND_RATE.",
    "FALLBACK_24_HOUR_SEND": "sendwell no longer invents a 24-hour cap when SES's limits cannot "
    "be read (SES's own refusal defers the outbox). Remove it, or set MAX_24_HOUR_SEND.",
}


def sendwell_setting_problems() -> list[checks.CheckMessage]:
    """One error per unknown key or invalid value in ``settings.SENDWELL``."""
    configured = getattr(settings, "SENDWELL", None)
    if configured is None:
        return []
    if not isinstance(configured, dict):
        return [
            checks.Error(
                f"SENDWELL is a {type(configured).__name__}, not a dict",
                hint='Write SENDWELL = {"SETTING": value, ...}; see docs/settings.md.',
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
            shown = f"a {type(value).__name__}" if name in SECRET else repr(value)
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
