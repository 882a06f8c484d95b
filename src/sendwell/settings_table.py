"""sendwell's own settings (``SENDWELL = {...}``), each defined once: name, default, rule, doc.

Everything else is derived from :data:`SETTINGS`: the defaults (:data:`DEFAULTS`, read by
:func:`sendwell.conf.setting`), the validation behind system check ``sendwell.E012``
(:mod:`sendwell.settings_check`) and the settings reference in ``docs/settings.md``
(``python -m sendwell.settings_table`` prints it; a test keeps the two the same).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

Rule = Callable[[Any], str | None]  # None if the value is good, else what it should be


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def whole(minimum: int) -> Rule:
    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"a whole number >= {minimum}"
        return None

    return rule


def seconds(*, positive: bool = False) -> Rule:
    def rule(value: Any) -> str | None:
        number = _number(value)
        if number is None or number < 0 or (positive and number == 0):
            return "a number of seconds > 0" if positive else "a number of seconds >= 0"
        return None

    return rule


def positive_or_none(value: Any) -> str | None:
    if value is None:
        return None
    number = _number(value)
    return "None (read it from SES) or a number > 0" if number is None or number <= 0 else None


def fraction(value: Any) -> str | None:
    number = _number(value)
    if number is None or not 0 < number <= 1:
        return "a number above 0 and at most 1, e.g. 0.97"
    return None


def choice(*choices: str) -> Rule:
    def rule(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)

    return rule


def text_or_none(value: Any) -> str | None:
    return None if value is None or (isinstance(value, str) and value) else "a string or None"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty string"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def topic_arns(value: Any) -> str | None:
    if isinstance(value, list | tuple) and all(
        isinstance(arn, str) and arn.startswith("arn:aws") and arn.count(":") == 5 for arn in value
    ):
        return None
    return 'a list of SNS topic ARNs, e.g. ["arn:aws:sns:eu-west-1:123456789012:ses-events"]'


def dotted_path_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and "." in value and " " not in value):
        return None
    return 'None or the dotted path of a class, e.g. "myproject.sns.ProxyFetcher"'


def basic_auth(value: Any) -> str | None:
    if value is None:
        return None
    if (
        isinstance(value, str)
        and ":" in value
        and value.split(":", 1)[0]
        and value.split(":", 1)[1]
    ):
        return None
    return 'None or "user:password", as in the endpoint URL given to SNS'


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    rule: Rule
    doc: str  # one line, Markdown
    secret: bool = False  # never echoed in a check message


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MAX_SEND_RATE",
        None,
        positive_or_none,
        "recipients per second; None: read from SES, or learned from SES's answers when it "
        "cannot be read ([outbox.md](outbox.md#rate-limiting-to-the-ses-quota))",
    ),
    Setting(
        "MAX_24_HOUR_SEND",
        None,
        positive_or_none,
        "recipients per rolling 24 hours; None: read from SES (-1 there: no cap), no cap when "
        "it cannot be read",
    ),
    Setting("QUOTA_REFRESH_SECONDS", 300, seconds(positive=True), "how often the limits are read"),
    Setting(
        "RATE_FRACTION",
        0.97,
        fraction,
        "fraction of a known rate actually used, so that jitter never shows SES a second over "
        "its limit (sends may arrive up to 1/fraction - 1 = 31 ms off their slots)",
    ),
    Setting(
        "RATE_LIMITER", "database", choice("database", "redis"), "where the shared limiter lives"
    ),
    Setting(
        "REDIS_URL", None, text_or_none, "Redis for the `redis` limiter (never shown)", secret=True
    ),
    Setting(
        "SYNC_MAX_WAIT",
        10.0,
        seconds(),
        "seconds one synchronous send may wait in all, for its slot and for SES's throttling; "
        "past it `ThrottledError` ([ses.md](ses.md#waiting-and-sess-throttling))",
    ),
    Setting(
        "SYNC_CONCURRENCY",
        4,
        whole(1),
        "SES calls one synchronous `send_messages()` keeps in flight "
        "([ses.md](ses.md#several-messages-at-once))",
    ),
    Setting("MAX_ATTEMPTS", 8, whole(1), "attempts before a retried message becomes `failed`"),
    Setting(
        "MAX_AGE_SECONDS", 24 * 3600, seconds(positive=True), "age at which it becomes `failed`"
    ),
    Setting(
        "BACKOFF_BASE_SECONDS",
        10.0,
        seconds(),
        "retry delay: between half and all of base x 2^(attempt-1)",
    ),
    Setting("BACKOFF_MAX_SECONDS", 3600.0, seconds(), "the retry delay's cap"),
    Setting(
        "LEASE_SECONDS",
        120,
        seconds(positive=True),
        "a worker's claim on a message; keep it above the SES connect + read timeouts "
        "(checked: `sendwell.W002`)",
    ),
    Setting("BATCH_SIZE", 50, whole(1), "messages one delivery task claims at once"),
    Setting("CONCURRENCY", 8, whole(1), "sending threads per worker"),
    Setting(
        "TASK_TIME_BUDGET_SECONDS",
        60.0,
        seconds(positive=True),
        "how long one delivery task drains before handing over to a fresh one",
    ),
    Setting("TASK_BACKEND", "default", text, "the `TASKS` alias delivery tasks go to"),
    Setting("TASK_QUEUE", "default", text, "the queue delivery tasks go to"),
    Setting(
        "FAILOVER_AFTER_ATTEMPTS",
        2,
        whole(1),
        "retryable SES failures before a message goes over SMTP",
    ),
    Setting(
        "CIRCUIT_BREAKER_THRESHOLD",
        5,
        whole(1),
        "consecutive retryable SES failures that send everything over SMTP for a while",
    ),
    Setting("CIRCUIT_BREAKER_SECONDS", 60.0, seconds(), "how long the circuit stays open"),
    # The feedback loop.
    Setting(
        "SNS_TOPIC_ARNS",
        [],
        topic_arns,
        "the SNS topics whose notifications the webhook accepts (empty: it accepts none)",
    ),
    Setting(
        "SNS_MAX_AGE",
        3600.0,
        seconds(positive=True),
        "how old (or how far in the future) an SNS message's Timestamp may be, in seconds",
    ),
    Setting(
        "SNS_REQUIRE_SIGNATURE_V2",
        False,
        boolean,
        "refuse SNS messages signed with SignatureVersion 1 (SHA1)",
    ),
    Setting(
        "SNS_BASIC_AUTH",
        None,
        basic_auth,
        '`"user:password"` the webhook requires (put them in the endpoint URL given to SNS)',
        secret=True,
    ),
    Setting(
        "SNS_FETCHER",
        None,
        dotted_path_or_none,
        "a class whose `fetch(url) -> bytes` gets SNS's signing certificates and, if it has "
        "one, whose `confirm(url)` confirms subscriptions (None: HTTPS, no redirects, 5 s); "
        "every URL is checked to be SNS's own before either is called",
    ),
    Setting(
        "SUPPRESS_ON_PERMANENT_BOUNCE",
        True,
        boolean,
        "suppress an address at its first permanent bounce",
    ),
    Setting("SUPPRESS_ON_COMPLAINT", True, boolean, "suppress an address at its first complaint"),
    Setting(
        "TRANSIENT_BOUNCES_TO_SUPPRESS",
        5,
        whole(0),
        "transient bounces within `TRANSIENT_BOUNCE_WINDOW` that suppress an address (0: never)",
    ),
    Setting(
        "TRANSIENT_BOUNCE_WINDOW",
        7 * 24 * 3600.0,
        seconds(positive=True),
        "the window in which transient bounces are counted, in seconds",
    ),
    Setting(
        "TRANSIENT_SUPPRESSION_SECONDS",
        30 * 24 * 3600.0,
        seconds(positive=True),
        "how long repeated transient bounces suppress an address",
    ),
    Setting(
        "RAISE_WHEN_ALL_SUPPRESSED",
        False,
        boolean,
        "raise `SuppressedError` for a message whose recipients are all suppressed, "
        "instead of counting it as not sent",
    ),
    Setting(
        "EVENT_RETENTION_DAYS",
        90,
        whole(1),
        "how long `manage.py sendwell prune` keeps SES events and SNS notifications",
    ),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}
RULES: dict[str, Rule] = {setting.name: setting.rule for setting in SETTINGS}
SECRET = frozenset(setting.name for setting in SETTINGS if setting.secret)


def markdown() -> str:
    """The settings reference as a Markdown table (docs/settings.md holds it)."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        rows.append(f"| `{setting.name}` | `{setting.default!r}` | {setting.doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
