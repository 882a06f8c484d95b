"""What to do after a failed attempt: retry, defer, fail over to SMTP or fail, and when.

A pure function of the error, the message's attempts and age, and the policy (the settings), so
it is tested without a database and the same rule serves every transport. The outbox's delivery
(:mod:`sendwell.delivery`) turns a :class:`Decision` into rows.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Literal

from sendwell.exceptions import DeliveryError, Disposition, ThrottledError

# SES's "Daily message quota exceeded": asking again soon only collects more refusals.
QUOTA_DEFER_SECONDS = 600.0
# The pause before a message SES throttled goes back to the pacer (seconds, jittered).
THROTTLE_PAUSE_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_age_seconds: float = 24 * 3600.0
    backoff_base_seconds: float = 10.0
    backoff_max_seconds: float = 3600.0
    failover_after_attempts: int = 2

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        """The policy in ``SENDWELL = {...}`` (read on each call: override_settings works)."""
        from sendwell import conf  # noqa: PLC0415 - keeps this module free of Django at import

        return cls(
            max_attempts=int(conf.setting("MAX_ATTEMPTS")),
            max_age_seconds=float(conf.setting("MAX_AGE_SECONDS")),
            backoff_base_seconds=float(conf.setting("BACKOFF_BASE_SECONDS")),
            backoff_max_seconds=float(conf.setting("BACKOFF_MAX_SECONDS")),
            failover_after_attempts=int(conf.setting("FAILOVER_AFTER_ATTEMPTS")),
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    """``defer``: wait, not an attempt's fault (quota, throttling); ``retry``: try again after
    ``delay``; ``failover``: next attempt over SMTP, now; ``fail``: for good."""

    kind: Literal["defer", "retry", "failover", "fail"]
    attempts: int  # the message's attempt count after this attempt
    delay: float | None  # seconds until the next attempt; None: never
    # A retryable failure of SES while failover is possible: counts towards the circuit breaker.
    counts_against_ses: bool = False
    # Throttling: retried without spending an attempt.
    throttled: bool = False


def backoff(attempt: int, policy: RetryPolicy, draw: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter": half of min(cap, base * 2**(attempt-1)), plus a
    random part of the other half. The jitter spreads the retries of a burst of failures (so
    they do not hit SES again all at once); the fixed half guarantees a real pause."""
    delay = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2 ** max(attempt - 1, 0))
    return float(delay / 2 + draw() * delay / 2)


def backoff_seconds(attempt: int) -> float:
    """:func:`backoff` with the policy in the settings."""
    return backoff(attempt, RetryPolicy.from_settings())


def decide(
    error: DeliveryError,
    *,
    attempts: int,
    age: float,
    policy: RetryPolicy,
    can_fail_over: bool,
    draw: Callable[[], float] = random.random,
) -> Decision:
    """What follows ``error`` for a message tried ``attempts`` times before, ``age`` seconds old.

    ``can_fail_over``: the attempt went to SES and the message may go over SMTP instead.
    """
    if error.disposition is Disposition.DEFER:
        return Decision("defer", attempts, QUOTA_DEFER_SECONDS)
    if isinstance(error, ThrottledError) and age < policy.max_age_seconds:
        # "Maximum sending rate exceeded" means slower, not down: come back in about a second,
        # through the pacer again, without spending an attempt or tripping the circuit.
        pause = THROTTLE_PAUSE_SECONDS * (0.5 + draw())
        return Decision("retry", attempts, pause, throttled=True)
    attempts += 1
    if error.disposition is not Disposition.RETRY:
        return Decision("fail", attempts, None)
    if can_fail_over and attempts >= policy.failover_after_attempts:
        return Decision("failover", attempts, 0.0, counts_against_ses=True)
    if attempts >= policy.max_attempts or age >= policy.max_age_seconds:
        return Decision("fail", attempts, None, counts_against_ses=can_fail_over)
    return Decision(
        "retry", attempts, backoff(attempts, policy, draw), counts_against_ses=can_fail_over
    )
