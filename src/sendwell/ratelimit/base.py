"""What every rate limiter shares: the limits it enforces, a reservation, the protocol, and the
schedule's arithmetic (pure: no database, no Redis)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

MINUTES_PER_DAY = 24 * 60


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
