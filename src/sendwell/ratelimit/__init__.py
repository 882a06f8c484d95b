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
(:mod:`sendwell.ratecontrol`), which :mod:`sendwell.pacing` changes through ``update_state``.

Modules: ``base`` (types, protocol, the schedule's arithmetic), ``database``, ``redis`` (needs
the ``redis`` extra; imported only when configured), ``blocks`` (per-process blocks at high
rates), ``registry`` (one limiter per account and process: :func:`limiter_for`).
"""

from __future__ import annotations

from sendwell.ratelimit.base import (
    MINUTES_PER_DAY,
    Limits,
    RateLimiter,
    Reservation,
    StateChange,
    quota_retry_at,
    slot_start,
)
from sendwell.ratelimit.blocks import BLOCK_SECONDS, BlockLimiter
from sendwell.ratelimit.database import DatabaseRateLimiter, prune_counters
from sendwell.ratelimit.registry import limiter_for

__all__ = [
    "BLOCK_SECONDS",
    "MINUTES_PER_DAY",
    "BlockLimiter",
    "DatabaseRateLimiter",
    "Limits",
    "RateLimiter",
    "Reservation",
    "StateChange",
    "limiter_for",
    "prune_counters",
    "quota_retry_at",
    "slot_start",
]
