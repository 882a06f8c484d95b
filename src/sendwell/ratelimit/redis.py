"""The shared rate limiter in Redis: the database limiter's algorithm as one atomic Lua script.

Redis suits many workers on many machines: a reservation is one round trip, and the script reads
Redis's own clock, so machines whose clocks disagree still share one schedule. Needs ``redis``
(``pip install sendwell[redis]``) and ``SENDWELL = {"RATE_LIMITER": "redis", "REDIS_URL": ...}``.
"""

from __future__ import annotations

from typing import Any

import redis

from sendwell.ratelimit.base import Limits, Reservation, StateChange

# KEYS[1]: the schedule (next free moment, a Unix time as a string)
# KEYS[2]: a hash of per-minute recipient counts for the rolling 24 hours
# ARGV: recipients, rate, daily quota (-1: no cap), max wait, SES's own count of the last 24
# hours and the minute it was read (our sends from that minute on add to it)
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local daily = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local ses_sent = tonumber(ARGV[5])
local ses_minute = tonumber(ARGV[6])
local since_ses = 0
local minute = math.floor(now / 60)
local used = 0
local entries = {}
local counts = redis.call('HGETALL', KEYS[2])
for i = 1, #counts, 2 do
  local m = tonumber(counts[i])
  local c = tonumber(counts[i + 1])
  if m > minute - 1440 then
    used = used + c
    if m >= ses_minute then since_ses = since_ses + c end
    table.insert(entries, {m, c})
  else
    redis.call('HDEL', KEYS[2], counts[i])
  end
end
if ses_sent + since_ses > used then used = ses_sent + since_ses end
if daily >= 0 and used + n > daily then
  table.sort(entries, function(a, b) return a[1] < b[1] end)
  local excess = used + n - daily
  local freed = 0
  local retry = now + 86400
  for _, e in ipairs(entries) do
    freed = freed + e[2]
    if freed >= excess then retry = (e[1] + 1440) * 60 break end
  end
  return {0, '0', tostring(retry), 'quota', '-1'}
end
-- slot_start() in ratelimit/base.py: a call goes once the debt of earlier calls is paid
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < now then start = now end
if start - now > max_wait then
  return {0, tostring(start - now), tostring(start), 'rate', '-1'}
end
redis.call('SET', KEYS[1], tostring(start + n / rate))
local counted = math.floor(start / 60)
redis.call('HINCRBY', KEYS[2], counted, n)
redis.call('EXPIRE', KEYS[2], 90000)
return {1, tostring(start - now), tostring(start), '', tostring(counted)}
"""

_clients: dict[str, Any] = {}


class RedisRateLimiter:
    def __init__(self, name: str, url: str | None) -> None:
        if not url:
            from sendwell.exceptions import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError(
                "SENDWELL['RATE_LIMITER'] is 'redis' but SENDWELL['REDIS_URL'] is not set",
                remedy="set REDIS_URL, e.g. redis://127.0.0.1:6379/0",
            )
        self.name = name
        if url not in _clients:  # one connection pool per URL and process
            _clients[url] = redis.Redis.from_url(url)
        self.client = _clients[url]
        self.script = self.client.register_script(_RESERVE)
        self.keys = [f"sendwell:{name}:next_free", f"sendwell:{name}:minutes"]
        # The learned rate (sendwell.ratecontrol) as JSON; no expiry: it outlives restarts.
        self.state_key = f"sendwell:{name}:learned"

    def reserve(self, recipients: int, limits: Limits, *, max_wait: float) -> Reservation:
        allowed, wait, retry_at, reason, minute = self.script(
            keys=self.keys,
            args=[
                recipients,
                limits.rate,
                -1 if limits.daily is None else limits.daily,
                max_wait,
                limits.sent_last_24_hours,
                int(limits.sent_counted_at // 60),
            ],
        )
        if int(allowed):
            return Reservation(
                allowed=True, wait=float(wait), minute=int(minute), start=float(retry_at)
            )
        return Reservation(
            allowed=False, wait=float(wait), retry_at=float(retry_at), reason=reason.decode()
        )

    def refund(self, recipients: int, reservation: Reservation) -> None:
        if reservation.minute is not None:
            self.client.hincrby(self.keys[1], str(reservation.minute), -recipients)

    def read_state(self) -> str:
        value = self.client.get(self.state_key)
        return value.decode() if value else ""

    def update_state(self, change: StateChange) -> str:
        """Compare-and-swap with WATCH: a concurrent change makes EXEC fail, and we retry."""
        with self.client.pipeline() as pipe:
            for _ in range(100):
                try:
                    pipe.watch(self.state_key)
                    current = pipe.get(self.state_key)
                    old = current.decode() if current else ""
                    new = change(old)
                    if new == old:
                        pipe.unwatch()
                        return new
                    pipe.multi()
                    pipe.set(self.state_key, new)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
        raise RuntimeError(f"rate limiter {self.name!r}: too much contention")  # pragma: no cover
