"""The shared rate limiter (database and Redis) and the account quota it enforces."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
from django.db.models import Sum
from django.test import override_settings

from sendwell import quota
from sendwell.models import AccountQuota, RateBucket, SendCounter
from sendwell.options import SESOptions
from sendwell.ratelimit import DatabaseRateLimiter, Limits, RateLimiter, prune_counters
from sendwell.ratelimit.redis import RedisRateLimiter
from tests.concurrency import in_threads
from tests.server_fixtures import redis_server  # noqa: F401 - a fixture
from testservers.base import free_port
from testservers.fake_ses import FakeSES
from testservers.redis import RedisServer

LIMITS = Limits(rate=10.0, daily=1000.0)


@pytest.fixture(params=["database", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    name = f"test-{request.node.name}-{time.monotonic_ns()}"
    if request.param == "database":
        yield DatabaseRateLimiter(name)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        yield RedisRateLimiter(name, server.url)


def test_reservations_are_spaced_at_the_rate(limiter: RateLimiter) -> None:
    limits = Limits(rate=1.0, daily=1000.0)
    starts = []
    for _ in range(5):
        reservation = limiter.reserve(1, limits, max_wait=10)
        assert reservation.allowed
        assert reservation.start is not None
        starts.append(reservation.start)
    # Each recipient moves the schedule on by 1/rate = 1 s: the slots are exactly 1 s apart
    # (Redis keeps 14 significant digits: 0.1 ms).
    assert [round(b - a, 3) for a, b in itertools.pairwise(starts)] == [1.0] * 4


def test_recipients_count_not_calls(limiter: RateLimiter) -> None:
    first = limiter.reserve(50, LIMITS, max_wait=10)
    second = limiter.reserve(1, LIMITS, max_wait=10)
    assert first.start is not None
    assert second.start is not None
    assert round(second.start - first.start, 3) == 5.0  # 50 recipients at 10/s


def test_refused_when_the_wait_is_too_long_and_nothing_is_reserved(limiter: RateLimiter) -> None:
    first = limiter.reserve(20, LIMITS, max_wait=0)  # takes 2 s of the schedule
    assert first.allowed
    assert first.start is not None
    refused = limiter.reserve(1, LIMITS, max_wait=0.5)
    assert not refused.allowed
    assert refused.reason == "rate"
    assert refused.retry_at == pytest.approx(first.start + 2.0, abs=0.001)
    again = limiter.reserve(1, LIMITS, max_wait=0.5)  # the refusal reserved nothing
    assert again.retry_at == pytest.approx(refused.retry_at, abs=0.001)


def test_daily_quota_refuses_with_the_time_room_comes_back(limiter: RateLimiter) -> None:
    limits = Limits(rate=1000.0, daily=10.0)
    assert limiter.reserve(8, limits, max_wait=10).allowed
    assert limiter.reserve(2, limits, max_wait=10).allowed
    refused = limiter.reserve(1, limits, max_wait=10)
    assert not refused.allowed
    assert refused.reason == "quota"
    assert refused.retry_at is not None
    # The first 8 leave the window 24 hours after their minute.
    expected = (int(time.time() // 60) + 24 * 60) * 60
    assert abs(refused.retry_at - expected) <= 60


def test_refund_gives_quota_back(limiter: RateLimiter) -> None:
    limits = Limits(rate=1000.0, daily=5.0)
    reservation = limiter.reserve(5, limits, max_wait=10)
    assert not limiter.reserve(1, limits, max_wait=10).allowed
    limiter.refund(5, reservation)
    assert limiter.reserve(1, limits, max_wait=10).allowed


def test_ses_count_of_the_last_24_hours_is_respected(limiter: RateLimiter) -> None:
    # SES counted 98 (other senders on the account included) a moment ago; ours add to it.
    limits = Limits(rate=1000.0, daily=100.0, sent_last_24_hours=98.0, sent_counted_at=time.time())
    assert limiter.reserve(1, limits, max_wait=10).allowed
    assert limiter.reserve(1, limits, max_wait=10).allowed
    assert not limiter.reserve(1, limits, max_wait=10).allowed


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["database", "redis"])
def test_concurrent_reservations_never_overlap(kind: str, request: pytest.FixtureRequest) -> None:
    """8 threads with their own connections: the schedule has no two sends closer than 1/rate."""
    name = f"concurrent-{kind}-{time.monotonic_ns()}"
    url = request.getfixturevalue("redis_server").url if kind == "redis" else None
    limits = Limits(rate=200.0, daily=1e9)
    starts: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        limiter: RateLimiter = RedisRateLimiter(name, url) if url else DatabaseRateLimiter(name)
        for _ in range(25):
            reservation = limiter.reserve(1, limits, max_wait=100)
            assert reservation.allowed
            assert reservation.start is not None
            with lock:
                starts.append(reservation.start)

    in_threads(reserve_many, 8)
    starts.sort()
    assert len(starts) == 200
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # Every reservation got its own slot, at least 1/200 s after the previous one (Redis keeps
    # times as strings with 14 significant digits: 0.1 ms).
    assert min(gaps) >= 0.005 - 2e-4
    # ...and in any one-second window there are at most 200 starts.
    for index, start in enumerate(starts):
        in_window = sum(1 for s in starts[index:] if s < start + 1.0)
        assert in_window <= 201


def test_prune_counters_deletes_minutes_outside_the_window() -> None:
    now_minute = int(time.time() // 60)
    SendCounter.objects.create(bucket="b", minute=now_minute - 2000, recipients=5)
    SendCounter.objects.create(bucket="b", minute=now_minute, recipients=5)
    assert prune_counters() == 1
    assert list(SendCounter.objects.values_list("minute", flat=True)) == [now_minute]


# --- the account quota -------------------------------------------------------------------------


def options_for(fake: FakeSES, *, v2: bool = True) -> SESOptions:
    return SESOptions(
        region_name="us-east-1",
        access_key_id="testing",
        secret_access_key="testing-secret",
        endpoint_url=fake.endpoint_url,
        use_ses_v2=v2,
        max_attempts=1,
    )


@pytest.mark.parametrize("v2", [True, False], ids=["GetAccount", "GetSendQuota"])
def test_limits_are_read_from_ses_and_stored(v2: bool) -> None:
    with (
        FakeSES(max_send_rate=14, max_24_hour_send=50_000) as fake,
        override_settings(SENDWELL={"RATE_FRACTION": 1.0}),
    ):
        limits = quota.current_limits(options_for(fake, v2=v2))
    assert limits.rate == 14
    assert limits.daily == 50_000
    stored = AccountQuota.objects.get()
    assert stored.max_send_rate == 14
    assert stored.error == ""


def test_rate_fraction_leaves_headroom() -> None:
    with FakeSES(max_send_rate=100) as fake, override_settings(SENDWELL={}):
        assert quota.current_limits(options_for(fake)).rate == pytest.approx(97.0)


def test_settings_override_ses() -> None:
    with (
        FakeSES(max_send_rate=14) as fake,
        override_settings(SENDWELL={"MAX_SEND_RATE": 5, "RATE_FRACTION": 1.0}),
    ):
        assert quota.current_limits(options_for(fake)).rate == 5


def test_unreachable_limits_are_unknown_not_the_sandbox_and_say_why() -> None:
    options = SESOptions(
        region_name="us-east-1",
        access_key_id="testing",
        secret_access_key="testing-secret",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        max_attempts=1,
        connect_timeout=1,
    )
    with override_settings(SENDWELL={"RATE_FRACTION": 1.0}):
        limits = quota.current_limits(options)
    assert (limits.rate, limits.daily) == (None, None)
    assert (limits.rate_source, limits.daily_source) == ("unknown", "unknown")
    assert "Could not connect" in AccountQuota.objects.get().error


def test_stale_limits_are_refreshed() -> None:
    with (
        FakeSES(max_send_rate=14) as fake,
        override_settings(SENDWELL={"RATE_FRACTION": 1.0, "QUOTA_REFRESH_SECONDS": 0}),
    ):
        options = options_for(fake)
        assert quota.current_limits(options).rate == 14
        fake.configure(max_send_rate=50)
        quota.clear_cache()  # the per-process cache (5 s) is not what is being tested
        assert quota.current_limits(options).rate == 50


def test_a_call_goes_at_once_and_later_calls_wait_out_its_debt(limiter: RateLimiter) -> None:
    """SES's accounting: a 60-recipient call at 14/s goes as soon as there is budget for one
    recipient, then spends 60: the next call waits 60/14 s."""
    limits = Limits(rate=14.0, daily=None)
    single = limiter.reserve(1, limits, max_wait=100)
    big = limiter.reserve(60, limits, max_wait=100)
    after = limiter.reserve(1, limits, max_wait=100)
    assert single.start is not None
    assert big.start is not None
    assert after.start is not None
    # (Redis keeps times with 14 significant digits: 0.1 ms.)
    assert big.start - single.start == pytest.approx(1 / 14, abs=1e-3)  # not 60 slots later
    assert after.start - big.start == pytest.approx(60 / 14, abs=1e-3)


def test_no_daily_cap_when_the_quota_is_unlimited_or_unknown(limiter: RateLimiter) -> None:
    limits = Limits(rate=100_000.0, daily=None)
    assert all(limiter.reserve(50, limits, max_wait=10).allowed for _ in range(40))


def test_high_rates_take_the_shared_schedule_in_blocks() -> None:
    """At 10,000/s a process reserves 200 slots (20 ms) per round trip and hands them out."""
    from sendwell.ratelimit import BlockLimiter  # noqa: PLC0415

    name = f"blocks-{time.monotonic_ns()}"
    limiter = BlockLimiter(name, DatabaseRateLimiter(name))
    limits = Limits(rate=10_000.0, daily=1e9)
    waits = [limiter.reserve(1, limits, max_wait=1.0) for _ in range(400)]
    assert all(r.allowed for r in waits)
    bucket = RateBucket.objects.get(name=name)
    assert bucket.version <= 4  # 2 blocks of 200, not 400 round trips
    # The shared schedule moved on by the blocks' length: 400 slots of 0.1 ms at least.
    assert bucket.next_free - time.time() > -1.0
    counted = SendCounter.objects.filter(bucket=name).aggregate(total=Sum("recipients"))["total"]
    assert counted >= 400


def test_low_rates_reserve_each_call() -> None:
    from sendwell.ratelimit import BlockLimiter  # noqa: PLC0415

    name = f"noblocks-{time.monotonic_ns()}"
    limiter = BlockLimiter(name, DatabaseRateLimiter(name))
    for _ in range(3):
        limiter.reserve(1, Limits(rate=14.0, daily=1e9), max_wait=10)
    assert RateBucket.objects.get(name=name).version == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["database", "redis"])
def test_learned_state_changes_from_many_threads_are_never_lost(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """update_state is a compare-and-swap: 8 threads x 25 increments end at exactly 200."""
    name = f"state-{kind}-{time.monotonic_ns()}"
    url = request.getfixturevalue("redis_server").url if kind == "redis" else None

    def increment(text: str) -> str:
        return str(int(text or "0") + 1)

    def run() -> None:
        limiter: RateLimiter = RedisRateLimiter(name, url) if url else DatabaseRateLimiter(name)
        for _ in range(25):
            limiter.update_state(increment)

    in_threads(run, 8)
    limiter: RateLimiter = RedisRateLimiter(name, url) if url else DatabaseRateLimiter(name)
    assert limiter.read_state() == "200"
