"""The send-rate limiter shared by every worker on every machine, counting recipients as SES does.

It is a schedule rather than a bucket of tokens: ``next_free`` is the earliest moment the next
call may go out, and each reservation of ``n`` recipients moves it ``n / rate`` seconds on. That
is how SES counts: a call goes through while the account has budget for one recipient and then
spends one unit per recipient, so a 60-recipient call goes at once and the sends after it wait
out its debt (see :func:`slot_start`). Single-recipient sends therefore start evenly spaced at
the account's rate with no burst: however many workers share it, no one-second window sees more
than the rate.

A reservation is one atomic UPDATE (compare-and-swap on a version number where the database
lacks ``RETURNING``): no lock is held across a network call, and the same code is correct on
SQLite (one writer at a time) and PostgreSQL. The rolling 24-hour quota is kept in per-minute
counters next to it. With ``SENDWELL["RATE_LIMITER"] = "redis"`` the same algorithm runs as one
Lua script in Redis instead. Both also keep the account's learned send rate
(:mod:`sendwell.ratecontrol`), which :mod:`sendwell.pacing` changes through :meth:`update_state`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import F, Q, QuerySet, Sum

from sendwell import conf
from sendwell.models import RateBucket, SendCounter

MINUTES_PER_DAY = 24 * 60
_CAS_ATTEMPTS = 100


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the limiter enforces: recipients per second and per rolling 24 hours (None: no
    local 24-hour cap)."""

    rate: float
    daily: float | None
    # Recipients SES said were sent in the last 24 hours (by anyone on the account), and when
    # SES said it: our own sends after that moment add to it. The quota counts the larger of
    # that and our own count.
    sent_last_24_hours: float = 0.0
    sent_counted_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class Reservation:
    allowed: bool
    # Allowed: seconds to wait before sending. Refused: when to try again (a Unix time).
    wait: float = 0.0
    retry_at: float | None = None
    reason: str = ""  # "rate" or "quota" when refused
    minute: int | None = None  # the counter the recipients were added to, for refund()
    start: float | None = None  # allowed: the Unix time of the slot reserved


# A function from the stored learned-rate state (JSON text, "" if none) to the new one.
StateChange = Callable[[str], str]


class RateLimiter(Protocol):
    name: str

    def reserve(self, recipients: int, limits: Limits, *, max_wait: float) -> Reservation:
        """Reserve ``recipients`` slots: the call may start at the first (see
        :func:`slot_start`); the schedule moves on by all of them."""
        ...

    def refund(self, recipients: int, reservation: Reservation) -> None: ...

    def read_state(self) -> str:
        """The account's learned-rate state as stored ("" if none)."""
        ...

    def update_state(self, change: StateChange) -> str:
        """Apply ``change`` to the stored state atomically (retried on a concurrent change);
        return the state stored."""
        ...


def slot_start(now: float, next_free: float) -> float:
    """When a call may start, given the schedule's next free moment: at once if the account has
    budget (``next_free`` has passed), else when the debt of earlier calls is paid. The number
    of recipients does not delay the call itself; it moves ``next_free`` on after it, as SES
    spends one unit of its budget per recipient."""
    return max(now, next_free)


def quota_retry_at(
    counts: list[tuple[int, int]], used: float, needed: float, daily: float
) -> float:
    """When enough of the oldest minutes leave the 24-hour window to make room for ``needed``."""
    excess = used + needed - daily
    freed = 0
    for minute, recipients in sorted(counts):
        freed += recipients
        if freed >= excess:
            return float((minute + MINUTES_PER_DAY) * 60)
    # More than the whole quota was asked for: it can never fit; try again in a day.
    return time.time() + 24 * 3600


# One statement moves the schedule on and returns the new next_free, or changes nothing when the
# slot is further away than max_wait: atomic on its own, so no lock is held and no
# compare-and-swap retried. RETURNING exists in PostgreSQL and in SQLite since 3.35.
# "Now" is the database's clock, read when the statement runs: a time taken in Python before it
# would be stale by however long the statement waited for SQLite's write lock, and the slot
# computed from it late or early by as much.
_SLOT_SQL = """
UPDATE {table} SET next_free = {greatest}({now}, next_free) + %s, version = version + 1
WHERE name = %s AND {greatest}({now}, next_free) - {now} <= %s
RETURNING next_free, {now}
"""
_GREATEST = {"postgresql": "GREATEST", "sqlite": "MAX"}
_COUNT_SQL = """
INSERT INTO {table} (bucket, minute, recipients) VALUES (%s, %s, %s)
ON CONFLICT (bucket, minute) DO UPDATE SET recipients = {table}.recipients + excluded.recipients
"""
_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
# How long a process trusts the 24-hour count it last read: all workers together cannot send
# more than the rate in that time, so far below the quota the sum need not be read again.
_USAGE_TRUST_SECONDS = 5.0
_usage: dict[str, tuple[float, float]] = {}


class DatabaseRateLimiter:
    """The limiter in the project's database (the default: no extra service to run).

    ``using``: the connection alias its statements go through (see :mod:`sendwell.db`).
    """

    def __init__(self, name: str, using: str = DEFAULT_DB_ALIAS) -> None:
        self.name = name
        self.using = using

    @property
    def connection(self) -> Any:
        return connections[self.using]

    def _counters(self) -> QuerySet[SendCounter]:
        return SendCounter.objects.using(self.using).filter(bucket=self.name)

    def _buckets(self) -> QuerySet[RateBucket]:
        return RateBucket.objects.using(self.using)

    def reserve(self, recipients: int, limits: Limits, *, max_wait: float) -> Reservation:
        refusal = self._check_quota(recipients, limits)
        if refusal is not None:
            return refusal
        if self.connection.vendor not in _GREATEST:
            return self._reserve_with_cas(recipients, limits, max_wait=max_wait)
        step = recipients / limits.rate
        sql = _SLOT_SQL.format(
            table=self.connection.ops.quote_name(RateBucket._meta.db_table),
            greatest=_GREATEST[self.connection.vendor],
            now=_NOW[self.connection.vendor],
        )
        refusal = Reservation(allowed=False, reason="rate")
        for _ in range(3):
            # The slot and its count in one transaction: one commit instead of two.
            with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
                cursor.execute(sql, [step, self.name, max_wait])
                row = cursor.fetchone()
                if row is not None:
                    start, database_now = float(row[0]) - step, float(row[1])
                    our_now = time.time()
                    self._count(int(start // 60), recipients)
            if row is not None:
                return self._counted(recipients, start, waited_from=(database_now, our_now))
            # Nothing updated: the bucket does not exist yet, or the slot is too far away. The
            # decision is the statement's (on the database's clock); this only says when.
            bucket = self._bucket()  # creates it if missing, then we try again
            now = time.time()
            start = slot_start(now, bucket.next_free)
            refusal = Reservation(allowed=False, wait=start - now, retry_at=start, reason="rate")
            if start - now > max_wait:
                return refusal
        return refusal

    def _counted(
        self, recipients: int, start: float, *, waited_from: tuple[float, float] | None = None
    ) -> Reservation:
        """Count the recipients (unless done already), then return the wait until ``start``.

        ``waited_from`` is (the database's time, ours) at the reservation, when ``start`` is on
        the database's clock. The wait is measured after counting: that may have waited for
        the database (SQLite's write lock), and a wait measured before it would start the send
        late by as much - bunching it with the next slots into one second.
        """
        counted = int(start // 60)
        if waited_from is None:  # the compare-and-swap path counts here
            self._count(counted, recipients)
        database_now, our_now = waited_from or (time.time(), time.time())
        wait = max(0.0, start - database_now - (time.time() - our_now))
        return Reservation(allowed=True, wait=wait, minute=counted, start=start)

    def _check_quota(self, recipients: int, limits: Limits) -> Reservation | None:
        """None if ``recipients`` fit in the rolling 24 hours, else the quota refusal."""
        if limits.daily is None:
            return None
        cached = _usage.get(self.name)
        if cached is not None:
            age = time.monotonic() - cached[0]
            # 50: one call may start just before the limiter counts it.
            if age < _USAGE_TRUST_SECONDS and (
                cached[1] + limits.rate * age + 50 + recipients <= limits.daily
            ):
                return None
        minute = int(time.time() // 60)
        window = self._counters().filter(minute__gt=minute - MINUTES_PER_DAY)
        # Two sums in one query; the per-minute rows are only read when the quota is full.
        sums = window.aggregate(
            ours=Sum("recipients"),
            since_ses=Sum("recipients", filter=Q(minute__gte=int(limits.sent_counted_at // 60))),
        )
        used = max(
            float(sums["ours"] or 0), limits.sent_last_24_hours + float(sums["since_ses"] or 0)
        )
        _usage[self.name] = (time.monotonic(), used)
        if used + recipients <= limits.daily:
            return None
        counts = list(window.values_list("minute", "recipients"))
        return Reservation(
            allowed=False,
            retry_at=quota_retry_at(counts, used, recipients, limits.daily),
            reason="quota",
        )

    def _reserve_with_cas(self, recipients: int, limits: Limits, *, max_wait: float) -> Reservation:
        """Databases without UPDATE ... RETURNING: read, then compare-and-swap on version."""
        for _ in range(_CAS_ATTEMPTS):
            bucket = self._bucket()
            now = time.time()
            start = slot_start(now, bucket.next_free)
            if start - now > max_wait:
                return Reservation(allowed=False, wait=start - now, retry_at=start, reason="rate")
            swapped = (
                self._buckets()
                .filter(name=self.name, version=bucket.version)
                .update(next_free=start + recipients / limits.rate, version=F("version") + 1)
            )
            if swapped:
                return self._counted(recipients, start)
        raise RuntimeError(f"rate limiter {self.name!r}: too much contention")  # pragma: no cover

    def refund(self, recipients: int, reservation: Reservation) -> None:
        """Give back quota for recipients SES certainly did not accept (the rate slot is spent)."""
        if reservation.minute is not None:
            self._counters().filter(minute=reservation.minute).update(
                recipients=F("recipients") - recipients
            )

    def read_state(self) -> str:
        return str(
            self._buckets().filter(name=self.name).values_list("learned", flat=True).first() or ""
        )

    def update_state(self, change: StateChange) -> str:
        for _ in range(_CAS_ATTEMPTS):
            bucket = self._bucket()
            new = change(bucket.learned)
            if new == bucket.learned:
                return new
            swapped = (
                self._buckets()
                .filter(name=self.name, learned_version=bucket.learned_version)
                .update(learned=new, learned_version=F("learned_version") + 1)
            )
            if swapped:
                return new
        raise RuntimeError(f"rate limiter {self.name!r}: too much contention")  # pragma: no cover

    def _bucket(self) -> RateBucket:
        try:
            return self._buckets().get(name=self.name)
        except RateBucket.DoesNotExist:
            try:
                with transaction.atomic(using=self.using):
                    return self._buckets().create(name=self.name)
            except IntegrityError:  # another worker created it first
                return self._buckets().get(name=self.name)

    def _count(self, minute: int, recipients: int) -> None:
        if self.connection.vendor in _GREATEST:  # PostgreSQL and SQLite: one upsert statement
            table = self.connection.ops.quote_name(SendCounter._meta.db_table)
            with self.connection.cursor() as cursor:
                cursor.execute(_COUNT_SQL.format(table=table), [self.name, minute, recipients])
            return
        updated = (
            self._counters().filter(minute=minute).update(recipients=F("recipients") + recipients)
        )
        if not updated:
            try:
                with transaction.atomic(using=self.using):
                    SendCounter.objects.using(self.using).create(
                        bucket=self.name, minute=minute, recipients=recipients
                    )
            except IntegrityError:
                self._counters().filter(minute=minute).update(
                    recipients=F("recipients") + recipients
                )

    def sent_in_window(self) -> int:
        minute = int(time.time() // 60)
        window = self._counters().filter(minute__gt=minute - MINUTES_PER_DAY)
        total: Any = window.aggregate(total=Sum("recipients"))["total"]
        return int(total or 0)


def prune_counters(older_than_minutes: int = MINUTES_PER_DAY + 60) -> int:
    """Delete per-minute counters that left the 24-hour window (the sweep calls it)."""
    minute = int(time.time() // 60)
    deleted, _ = SendCounter.objects.filter(minute__lt=minute - older_than_minutes).delete()
    return deleted


# At high rates a process takes the shared schedule's slots this many seconds at a time and hands
# them out itself: one database (or Redis) round trip per block instead of one per message. The
# slots are real slots of the shared schedule, so the rate holds; only at 100/s and more is a
# block more than one message.
BLOCK_SECONDS = 0.02
# A slot handed out more than this far in the past is not used (it would bunch with the next).
_STALE_SLOT = 0.02


@dataclasses.dataclass
class _Block:
    reservation: Reservation
    rate: float
    size: int
    base: float  # time.monotonic() of the block's first slot
    used: int = 0  # slots handed out or skipped
    handed: int = 0  # recipients handed out (counted against the quota)


_blocks: dict[str, _Block] = {}
_blocks_lock = threading.Lock()


class BlockLimiter:
    """Serves reservations from per-process blocks of the shared schedule (high rates only)."""

    def __init__(self, name: str, shared: RateLimiter) -> None:
        self.name = name
        self.shared = shared

    def reserve(self, recipients: int, limits: Limits, *, max_wait: float) -> Reservation:
        size = int(limits.rate * BLOCK_SECONDS)
        if size < 2 * recipients:
            return self.shared.reserve(recipients, limits, max_wait=max_wait)
        with _blocks_lock:
            now = time.monotonic()
            block = _blocks.get(self.name)
            # A learned rate changes a little on every report: a block a few percent off is
            # still good for its 20 ms (replacing it would leave its unused slots in the past).
            if block is not None and abs(block.rate - limits.rate) <= 0.05 * limits.rate:
                # Slots already past are skipped (a sender slower than the rate leaves them
                # unused; handing them out would send in a burst). A call of n goes at the first
                # of its n slots (see slot_start).
                first = max(block.used, math.ceil((now - _STALE_SLOT - block.base) * block.rate))
                slot = block.base + first / block.rate
                if first + recipients <= block.size and slot - now <= max_wait:
                    block.used = first + recipients
                    block.handed += recipients
                    return dataclasses.replace(
                        block.reservation, wait=max(0.0, slot - now), start=None
                    )
            if block is not None and block.handed < block.size:
                # Unused slots are gone with time; their quota count is given back.
                self.shared.refund(block.size - block.handed, block.reservation)
            _blocks.pop(self.name, None)
            # The block starts at its first slot; calls out of it wait for their own slots.
            reservation = self.shared.reserve(size, limits, max_wait=max_wait)
            if not reservation.allowed:
                # Near the daily quota a whole block may not fit where this call would.
                return self.shared.reserve(recipients, limits, max_wait=max_wait)
            base = time.monotonic() + reservation.wait
            block = _Block(reservation=reservation, rate=limits.rate, size=size, base=base)
            _blocks[self.name] = block
            block.used = block.handed = recipients
            return dataclasses.replace(
                reservation, wait=max(0.0, base - time.monotonic()), start=None
            )

    def refund(self, recipients: int, reservation: Reservation) -> None:
        self.shared.refund(recipients, reservation)

    def read_state(self) -> str:
        return self.shared.read_state()

    def update_state(self, change: StateChange) -> str:
        return self.shared.update_state(change)


_limiters: dict[tuple[str, str, str, str | None], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(name: str, using: str = DEFAULT_DB_ALIAS) -> RateLimiter:
    """The configured limiter (``SENDWELL["RATE_LIMITER"]``) for the bucket ``name``, one per
    process; ``using``: the database connection for the database limiter."""
    kind = str(conf.setting("RATE_LIMITER"))
    url = conf.setting("REDIS_URL") if kind == "redis" else None
    key = (kind, name, using, url)
    limiter = _limiters.get(key)
    if limiter is not None:
        return limiter
    shared: RateLimiter
    if kind == "redis":
        from sendwell.ratelimit_redis import RedisRateLimiter  # noqa: PLC0415 - optional extra

        shared = RedisRateLimiter(name, url)
    else:
        shared = DatabaseRateLimiter(name, using)
    with _limiters_lock:
        return _limiters.setdefault(key, BlockLimiter(name, shared))
