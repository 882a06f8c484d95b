"""Pacing: the one object per SES account (and process) that says when the next call may go.

Delivery asks a :class:`Pacer` for a :class:`Slot` before each SES call and tells it the outcome;
everything behind that is the pacer's business:

- the account's limits, as SES reports them or the settings set them (:mod:`sendwell.quota`);
- the schedule shared by every worker of the account, in the database or Redis
  (:mod:`sendwell.ratelimit`), which counts recipients as SES does;
- when SES's limits cannot be read, the send rate learned from SES's answers
  (:mod:`sendwell.ratecontrol`), kept beside the shared schedule so that every worker follows
  one rate and a restart does not start over;
- SES's "Daily message quota exceeded", which pauses the whole account for a while.

A process reads the shared learned state at most every :data:`STATE_TTL` seconds and reports to
it at most every :data:`REPORT_SECONDS` (a throttle that must cut the rate goes at once), so
pacing costs about one extra query per worker every fifth of a second, not one per message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError
from django.db import DEFAULT_DB_ALIAS

from sendwell import aws, conf, quota, ratecontrol
from sendwell.exceptions import DeliveryError, QuotaExceededError, ThrottledError
from sendwell.models import AccountQuota
from sendwell.options import SESOptions
from sendwell.ratecontrol import RateState
from sendwell.ratelimit import Limits, RateLimiter, Reservation, limiter_for

logger = logging.getLogger("sendwell.pacing")

# How late after its slot a send may still start. Later than that, it would reach SES bunched
# with the sends of the next slots (a thread woken late on a busy machine, a slow lock): it
# takes a new slot instead, so that no second ever holds more than the rate.
LATE_SLOT_TOLERANCE = 0.02
_SLOT_TRIES = 5
# How long a process trusts the learned state it read, and how often it reports to it.
STATE_TTL = 0.2
REPORT_SECONDS = 0.1
WAITING_REPORT_SECONDS = 0.25
# While the rate is learned, one process books slots at most about this far ahead: its other
# threads wait in the process, not in the shared schedule. Otherwise 32 threads booked at the
# first rate (14/s) would fill the schedule 2.3 s ahead, every change of rate would take that
# long to be felt, and the rate would overshoot SES's far before the first throttle came back.
BOOKING_SECONDS = 0.05


@dataclasses.dataclass
class Slot:
    """A reserved moment for one SES call of ``recipients`` (or the refusal, if not allowed)."""

    recipients: int
    reservation: Reservation
    limiter: RateLimiter
    # While the rate is learned: the controller's epoch the slot was taken in (None: known rate).
    epoch: int | None = None

    @property
    def allowed(self) -> bool:
        return self.reservation.allowed


class Pacer:
    """Pacing for one SES account in this process; get it with :func:`pacer_for`."""

    def __init__(self, options: SESOptions) -> None:
        self.options = options
        self.name = quota.bucket_name(options)
        self._lock = threading.Lock()
        self._state = RateState()
        self._state_read_at = float("-inf")
        # Outcomes not yet reported, by epoch: (accepted, refused) recipients.
        self._pending: dict[int, tuple[int, int]] = {}
        self._flow = 0  # recipients accepted since the last report (the achieved rate)
        self._reported_at = 0.0
        self._waiting_reported_at = 0.0
        # Threads of this process holding a future slot while the rate is learned.
        self._booking = threading.Condition()
        self._booked = 0

    def limits(self, using: str = DEFAULT_DB_ALIAS) -> quota.KnownLimits:
        return quota.current_limits(self.options, using)

    def limiter(self, using: str = DEFAULT_DB_ALIAS) -> RateLimiter:
        return limiter_for(self.name, using)

    def learned(self, using: str = DEFAULT_DB_ALIAS) -> RateState:
        """The account's learned-rate state (read at most every STATE_TTL seconds)."""
        now = time.monotonic()
        with self._lock:
            if now - self._state_read_at < STATE_TTL:
                return self._state
        state = RateState.from_json(self.limiter(using).read_state())
        with self._lock:
            # A read that raced with this process's own update must not take the cache back.
            if (state.epoch, state.changed_at) >= (self._state.epoch, self._state.changed_at):
                self._state = state
            self._state_read_at = now
            return self._state

    def acquire(self, recipients: int, *, max_wait: float, using: str = DEFAULT_DB_ALIAS) -> Slot:
        """Reserve a slot for a call of ``recipients`` and sleep until it, or say why not (a
        refusal with ``retry_at``) when it is further away than ``max_wait`` seconds."""
        # A process builds its boto3 client on first use, which takes 0.05-0.3 s: build it before
        # the slot, not between the slot and the send, which would then reach SES late, bunched
        # with the next slots. A client that cannot be built fails again in the send, saying why.
        with contextlib.suppress(BotoCoreError):
            aws.ses_client(self.options)
        known = self.limits(using)
        limiter = self.limiter(using)
        state = self.learned(using)
        now = time.time()
        if state.paused_until > now:
            # Capped: a host whose clock runs fast must not pause the account for longer.
            retry_at = min(state.paused_until, now + ratecontrol.QUOTA_PAUSE_SECONDS)
            refusal = Reservation(allowed=False, retry_at=retry_at, reason="quota")
            return Slot(recipients, refusal, limiter)
        learning = known.rate is None
        limits = Limits(
            rate=state.rate if known.rate is None else known.rate,
            daily=known.daily,
            sent_last_24_hours=known.sent_last_24_hours,
            sent_counted_at=known.sent_counted_at,
        )
        if not learning:
            reservation, _ = _wait_for_slot(limiter, limits, recipients, max_wait=max_wait)
            return Slot(recipients, reservation, limiter)
        deadline = time.monotonic() + max_wait
        capacity = max(1, math.ceil(limits.rate * BOOKING_SECONDS))
        with self._booking:
            while self._booked >= capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    retry_at = time.time() + capacity / limits.rate
                    refusal = Reservation(allowed=False, retry_at=retry_at, reason="rate")
                    return Slot(recipients, refusal, limiter)
                self._booking.wait(left)
            self._booked += 1
        try:
            left = max(0.0, deadline - time.monotonic())
            reservation, slept = _wait_for_slot(limiter, limits, recipients, max_wait=left)
        finally:
            with self._booking:
                self._booked -= 1
                # All: each waiter has its own idea of the capacity (its own rate reading).
                self._booking.notify_all()
        if slept:
            # The shared schedule had no slot free now: senders want more than the rate. (A
            # wait at this process's own gate says nothing: the schedule may be idle.)
            try:
                self._report_waiting(limiter, using)
            except Exception:  # a hint for the learned rate; the slot is taken and stands
                logger.warning("sendwell: could not report to the learned rate", exc_info=True)
        return Slot(recipients, reservation, limiter, state.epoch)

    def outcome(self, slot: Slot, *, sent: int, error: DeliveryError | None = None) -> None:
        """What became of the call in ``slot``: ``sent`` recipients accepted, then ``error``.

        Never raises: the send is over and recorded (or being recorded) by the caller, and a
        database or Redis hiccup here must not turn a delivered email into an error.
        """
        try:
            self._outcome(slot, sent=sent, error=error)
        except Exception:
            logger.warning(
                "sendwell: could not record a send's outcome for pacing; going on without it",
                exc_info=True,
            )

    def _outcome(self, slot: Slot, *, sent: int, error: DeliveryError | None) -> None:
        if error is not None and not error.in_doubt:
            # Certainly refused (a timeout may hide an accepted call): the quota count goes back;
            # the rate slot is spent.
            slot.limiter.refund(slot.recipients - sent, slot.reservation)
        if isinstance(error, QuotaExceededError):
            now = time.time()
            self._update(slot.limiter, lambda s: ratecontrol.on_quota_exceeded(s, now))
            return
        if slot.epoch is None:
            return
        refused = slot.recipients - sent if isinstance(error, ThrottledError) else 0
        self._report(slot, sent, refused)

    # --- reporting to the shared learned state ------------------------------------------------

    def _report(self, slot: Slot, accepted: int, refused: int) -> None:
        assert slot.epoch is not None
        now = time.monotonic()
        with self._lock:
            self._flow += accepted  # every acceptance counts towards the achieved rate
            state = self._state
            # Evidence: outcomes of the current epoch (earlier ones were sent at an earlier
            # rate: old news), and acceptances only while a window measures.
            evidence = slot.epoch >= state.epoch and (refused > 0 or state.phase == "measure")
            if evidence:
                done, seen = self._pending.get(slot.epoch, (0, 0))
                self._pending[slot.epoch] = (done + accepted, seen + refused)
            # A throttle that must cut the rate is reported at once; evidence in batches; the
            # achieved rate at least every WAITING_REPORT_SECONDS (so that it covers only that).
            urgent = evidence and refused > 0 and state.phase != "measure"
            every = REPORT_SECONDS if self._pending else WAITING_REPORT_SECONDS
            if not urgent and now - self._reported_at < every:
                return
            pending, flow = self._take_reports()
            self._reported_at = now
        self._update(slot.limiter, lambda s: _apply(s, pending, flow, time.time()))

    def _report_waiting(self, limiter: RateLimiter, using: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._waiting_reported_at < WAITING_REPORT_SECONDS:
                return
            self._waiting_reported_at = now
            pending, flow = self._take_reports()
        now_unix = time.time()
        self._update(
            limiter,
            lambda s: ratecontrol.on_waiting(_apply(s, pending, flow, now_unix), now_unix),
        )

    def _take_reports(self) -> tuple[dict[int, tuple[int, int]], int]:
        """The outcomes and acceptances not reported yet, and none left (caller holds the lock)."""
        pending, flow = self._pending, self._flow
        self._pending, self._flow = {}, 0
        return pending, flow

    def _update(self, limiter: RateLimiter, change: Callable[[RateState], RateState]) -> None:
        stored = limiter.update_state(lambda text: change(RateState.from_json(text)).to_json())
        with self._lock:
            self._state, self._state_read_at = RateState.from_json(stored), time.monotonic()


def _apply(
    state: RateState, pending: dict[int, tuple[int, int]], flow: int, now: float
) -> RateState:
    state = ratecontrol.on_flow(state, now, flow)
    for epoch, (accepted, refused) in sorted(pending.items()):
        state = ratecontrol.on_outcomes(state, now, epoch=epoch, accepted=accepted, refused=refused)
    return ratecontrol.settle(state, now)


def _wait_for_slot(
    limiter: RateLimiter, limits: Limits, recipients: int, *, max_wait: float
) -> tuple[Reservation, bool]:
    """Reserve a slot and sleep until it; re-reserve if we woke too late. Also says whether we
    waited (senders want more than the rate: what the learned rate grows on)."""
    waited = False
    deadline = time.monotonic() + max_wait
    reservation = Reservation(allowed=False, reason="rate")
    for attempt in range(1, _SLOT_TRIES + 1):
        left = max(0.0, deadline - time.monotonic())
        reservation = limiter.reserve(recipients, limits, max_wait=left)
        if not reservation.allowed:
            return reservation, True
        # Lateness is measured on this process's clock: the Redis limiter's slot times are
        # Redis's.
        slot = time.monotonic() + reservation.wait
        if reservation.wait > 0:
            waited = True
            time.sleep(reservation.wait)
        if time.monotonic() - slot <= LATE_SLOT_TOLERANCE or attempt == _SLOT_TRIES:
            return reservation, waited  # on time, or late too often: send late rather than not
        # The slot is spent (the schedule has moved on); its quota count is given back.
        limiter.refund(recipients, reservation)
    return reservation, waited


_pacers: dict[SESOptions, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(options: SESOptions) -> Pacer:
    """The pacer of ``options``' SES account in this process."""
    key = dataclasses.replace(options, configuration_set=None)
    pacer = _pacers.get(key)
    if pacer is None:
        with _pacers_lock:
            pacer = _pacers.setdefault(key, Pacer(key))
    return pacer


def clear_pacers() -> None:
    """Forget every pacer's cached state (tests)."""
    with _pacers_lock:
        _pacers.clear()


_SOURCE = {"ses": "SES", "settings": "settings", "unknown": "nowhere", "unlimited": "SES"}


@dataclasses.dataclass(frozen=True)
class AccountPacing:
    """What ``manage.py sendwell status`` shows for one account."""

    name: str
    limits: quota.KnownLimits
    learned: RateState | None  # None: nothing learned (the limits were readable)

    @property
    def rate_in_force(self) -> float | None:
        if self.limits.rate is not None:
            return self.limits.rate
        return None if self.learned is None else self.learned.rate

    def describe(self) -> str:
        limits, learned = self.limits, self.learned
        if limits.rate is not None:
            rate = f"rate {limits.rate:.3g}/s from {_SOURCE[limits.rate_source]}"
        elif learned is None:
            rate = f"rate not learned yet (starts at {ratecontrol.INITIAL_RATE:g}/s)"
        else:
            measured = f", SES measured at {learned.measured:.3g}/s" if learned.measured else ""
            rate = f"rate learned from SES: {learned.rate:.3g}/s ({learned.phase}{measured})"
        if limits.daily is not None:
            daily = f"{limits.daily:g} per 24 h from {_SOURCE[limits.daily_source]}"
        elif limits.daily_source == "unlimited":
            daily = "no 24-hour cap (SES: unlimited)"
        else:
            daily = "no 24-hour cap (unknown)"
        parts = [rate, daily]
        if limits.production_access is False:
            parts.append("sandbox (SES: ProductionAccessEnabled false)")
        if limits.error:
            parts.append(f"limits unreadable: {limits.error}")
        if learned is not None and learned.paused_until > time.time():
            until = time.strftime("%H:%M:%S", time.localtime(learned.paused_until))
            parts.append(f"paused by SES's daily quota until {until}")
        return f"{self.name}: " + "; ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "account": self.name,
            "rate_in_force": self.rate_in_force,
            "rate_source": "learned" if self.limits.rate is None else self.limits.rate_source,
            "daily": self.limits.daily,
            "daily_source": self.limits.daily_source,
            "production_access": self.limits.production_access,
            "error": self.limits.error,
            "learned_rate": None if self.learned is None else self.learned.rate,
            "learned_phase": None if self.learned is None else self.learned.phase,
            "measured_rate": None if self.learned is None else self.learned.measured,
        }


def account_pacing() -> list[AccountPacing]:
    """Every account sendwell has read limits for, with its learned rate (the status command)."""
    accounts = []
    fraction = float(conf.setting("RATE_FRACTION"))
    for row in AccountQuota.objects.order_by("name"):
        limits = quota.known_limits(
            row, conf.setting("MAX_SEND_RATE"), conf.setting("MAX_24_HOUR_SEND"), fraction
        )
        text = limiter_for(row.name).read_state()
        accounts.append(
            AccountPacing(row.name, limits, RateState.from_json(text) if text else None)
        )
    return accounts
