"""The limiter in the project's database (the default: no extra service to run).

A reservation is one atomic UPDATE … RETURNING on the database's clock (compare-and-swap on a
version number where the database lacks ``RETURNING``): no lock is held across a network call,
and the same code is correct on SQLite (one writer at a time) and PostgreSQL. The rolling 24-hour
quota is kept in per-minute counters next to it, and the learned rate in the same row.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import F, Q, QuerySet, Sum

from sendwell.models import RateBucket, SendCounter
from sendwell.ratelimit.base import (
    MINUTES_PER_DAY,
    Limits,
    Reservation,
    StateChange,
    quota_retry_at,
    slot_start,
)

_CAS_ATTEMPTS = 100

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
