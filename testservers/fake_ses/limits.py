"""FakeSES's enforced sending limits: recipients per rolling second or per SES-style token budget,
and per 24 hours, counted in recipients as SES counts them (see :class:`FakeSES`)."""

from __future__ import annotations

import collections


class SendingLimits:
    """What was recorded in the last second and the last 24 hours, and the "ses" mode's budget.

    Not thread-safe: :class:`~testservers.fake_ses.FakeSES` calls it holding its lock. Wall-clock
    times (``now``, ``time.time()``) date recorded sends; the budget runs on the caller's
    monotonic clock (``at``), which tests may freeze.
    """

    def __init__(self) -> None:
        # (time, recipients) of recorded sends, pruned to 1 s and 24 h: O(1) limit checks.
        self._second: collections.deque[tuple[float, int]] = collections.deque()
        self._day: collections.deque[tuple[float, int]] = collections.deque()
        self._second_total = self._day_total = 0
        # The "ses" mode's budget: recipients that may still start a call, as of _budget_at.
        self._budget = self._budget_at = 0.0

    def clear(self, rate: float, at: float) -> None:
        """Forget every recorded send and fill the budget."""
        self._second.clear()
        self._day.clear()
        self._second_total = self._day_total = 0
        self.fill(rate, at)

    def fill(self, rate: float, at: float) -> None:
        """A full budget: one second's worth at ``rate``."""
        self._budget, self._budget_at = max(float(rate), 0.0), at

    def budget(self, rate: float, at: float) -> float:
        """The "ses" budget at ``at``: refilled at ``rate``/s, at most ``rate``."""
        capacity = max(float(rate), 0.0)  # given each time: the rate may have been changed
        self._budget = min(capacity, self._budget + max(at - self._budget_at, 0.0) * capacity)
        self._budget_at = at
        return self._budget

    def day_total(self, now: float) -> int:
        """Recipients recorded in the 24 hours before ``now``."""
        self._prune(now)
        return self._day_total

    def refusal(
        self, mode: str, recipients: int, *, rate: float, quota: int, now: float, at: float
    ) -> str | None:
        """``"quota"`` or ``"rate"`` if a call with ``recipients`` is over a limit in ``mode``
        ("off", "rolling" or "ses"), else None. ``quota`` -1 means unlimited, as in SES."""
        self._prune(now)
        if mode == "off":
            return None
        over_day = self._day_total + recipients > quota >= 0
        if mode == "ses":  # anything left lets the whole call through
            over_rate = self.budget(rate, at) <= 0
        else:
            over_rate = self._second_total + recipients > rate
        return "quota" if over_day else "rate" if over_rate else None

    def record(self, mode: str, recipients: int, now: float) -> None:
        """Count an accepted call; in "ses" mode it spends from the budget, maybe into debt."""
        self._second.append((now, recipients))
        self._day.append((now, recipients))
        self._second_total += recipients
        self._day_total += recipients
        if mode == "ses":
            self._budget -= recipients  # may go below 0: debt

    def _prune(self, now: float) -> None:
        while self._second and self._second[0][0] <= now - 1.0:
            self._second_total -= self._second.popleft()[1]
        while self._day and self._day[0][0] <= now - 86_400.0:
            self._day_total -= self._day.popleft()[1]
