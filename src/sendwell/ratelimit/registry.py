"""One limiter per account (bucket), connection and process: the configured kind, in blocks."""

from __future__ import annotations

import threading

from django.db import DEFAULT_DB_ALIAS

from sendwell import conf
from sendwell.ratelimit.base import RateLimiter
from sendwell.ratelimit.blocks import BlockLimiter
from sendwell.ratelimit.database import DatabaseRateLimiter

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
        from sendwell.ratelimit.redis import RedisRateLimiter  # noqa: PLC0415 - optional extra

        shared = RedisRateLimiter(name, url)
    else:
        shared = DatabaseRateLimiter(name, using)
    with _limiters_lock:
        return _limiters.setdefault(key, BlockLimiter(name, shared))
