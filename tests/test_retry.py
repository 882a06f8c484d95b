"""The retry decision: a pure function of the error, the attempts, the age and the policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendwell.exceptions import (
    DeliveryError,
    IdentityNotVerifiedError,
    QuotaExceededError,
    ServiceUnavailableError,
    ThrottledError,
)
from sendwell.retry import QUOTA_DEFER_SECONDS, Decision, RetryPolicy, backoff, decide

POLICY = RetryPolicy(
    max_attempts=8,
    max_age_seconds=86400,
    backoff_base_seconds=10,
    backoff_max_seconds=3600,
    failover_after_attempts=2,
)


def after(error: DeliveryError, attempts: int = 0, age: float = 0.0, **kw: bool) -> Decision:
    return decide(
        error,
        attempts=attempts,
        age=age,
        policy=POLICY,
        can_fail_over=kw.get("fail_over", False),
        draw=lambda: 0.5,
    )


def test_the_daily_quota_defers_without_spending_an_attempt() -> None:
    assert after(QuotaExceededError("quota"), attempts=3) == Decision(
        "defer", 3, QUOTA_DEFER_SECONDS
    )


def test_throttling_comes_back_in_about_a_second_without_an_attempt_or_the_circuit() -> None:
    decision = after(ThrottledError("slow down"), attempts=2, fail_over=True)
    assert decision == Decision("retry", 2, 1.0, throttled=True)
    # Past the message's age limit it is an ordinary retryable failure.
    assert after(ThrottledError("slow down"), attempts=7, age=86400).kind == "fail"


def test_retryable_errors_back_off_exponentially_then_fail() -> None:
    error = ServiceUnavailableError("500")
    assert after(error, attempts=0) == Decision("retry", 1, 7.5)  # 10 s: between 5 and 10
    assert after(error, attempts=3).delay == 60.0  # 80 s: between 40 and 80
    assert after(error, attempts=7) == Decision("fail", 8, None)
    assert after(error, attempts=1, age=86400).kind == "fail"


def test_with_failover_the_second_retryable_failure_goes_over_smtp() -> None:
    error = ServiceUnavailableError("500")
    first = after(error, attempts=0, fail_over=True)
    assert (first.kind, first.counts_against_ses) == ("retry", True)
    assert after(error, attempts=1, fail_over=True) == Decision(
        "failover", 2, 0.0, counts_against_ses=True
    )


def test_permanent_errors_fail_at_once_and_never_fail_over() -> None:
    decision = after(IdentityNotVerifiedError("not verified"), fail_over=True)
    assert decision == Decision("fail", 1, None)


@given(
    attempt=st.integers(min_value=1, max_value=60),
    draw=st.floats(min_value=0, max_value=1),
)
def test_backoff_is_between_half_and_all_of_the_capped_exponential(
    attempt: int, draw: float
) -> None:
    full = min(3600.0, 10.0 * 2 ** (attempt - 1))
    assert full / 2 <= backoff(attempt, POLICY, lambda: draw) <= full


@pytest.mark.parametrize("attempts", range(10))
def test_a_decision_never_moves_the_attempt_count_back(attempts: int) -> None:
    for error in (ServiceUnavailableError("x"), ThrottledError("x"), QuotaExceededError("x")):
        assert after(error, attempts=attempts).attempts >= attempts
