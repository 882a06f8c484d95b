"""Learning an SES account's send rate from SES's own answers, when it cannot be read.

Credentials with only ``ses:SendEmail``/``ses:SendRawEmail`` (the least-privilege policy the
guide recommends) cannot call ``GetAccount``: the account's maximum send rate is then unknown.
Guessing it wrong either way costs: too low and email waits for no reason, too high and SES
throttles. So the rate is learned from what SES answers, by a small controller shared by every
worker of the account (its state lives with the shared limiter: :mod:`sendwell.pacing`):

- **start**: from :data:`INITIAL_RATE` (14/s, what a new production account gets), the rate grows
  by :data:`START_GROWTH` per second while senders are waiting for it (never while idle: a rate
  nobody used teaches nothing) until SES first throttles.
- **cut and measure**: on a throttle the rate is cut (by half after the start, by a fifth later)
  and a one-second measuring window opens. SES keeps a budget of about one second of its rate,
  refilled at that rate: by the time it first throttles, the budget is spent, and every call
  it refuses in the window is a call the cut rate still sends too many. So
  ``rate - refused / window`` *is* SES's rate; the controller holds :data:`SAFETY` of it.
  A window without refusals means the cut went below SES's rate: it probes upwards again.
- **hold, then probe**: a measured rate is held for :data:`HOLD_SECONDS`, then probed gently
  (:data:`PROBE_GROWTH` per second), so a quota AWS raised is found within minutes.
- **pause**: SES's "Daily message quota exceeded" pauses the whole account for
  :data:`QUOTA_PAUSE_SECONDS` (retrying soon only collects more refusals).

Only throttles of calls whose slot began after the last change of course count as evidence:
calls already in flight at the old rate come back throttled for a while and say nothing new.

Everything here is pure (state in, state out; times are Unix seconds passed in), so it is
tested without a database or SES, and the same code serves the database and Redis limiters.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Literal

Phase = Literal["start", "measure", "hold", "probe"]

# Where learning starts: SES gives a new production account 14 recipients per second. A sandbox
# account (1/s) is throttled at once and measured within a second or two.
INITIAL_RATE = 14.0
MIN_RATE = 0.1
MAX_RATE = 5000.0
# Growth per second of waiting senders (exponential): x1.65/s before the first throttle, +5 %/s
# when probing for a raised quota.
START_GROWTH = 0.5
PROBE_GROWTH = 0.05
# At most this much growth time is counted per report (a first report after an idle hour must
# not multiply the rate by e**1800).
MAX_GROWTH_STEP = 1.0
# The cut on a throttle: the start overshoots by about 2.4x at START_GROWTH (SES's one-second
# budget absorbs the excess for a while), probing by about 1.3x.
CUT_AFTER_START = 0.5
CUT = 0.8
WINDOW_SECONDS = 1.0
# A window closes after WINDOW_SECONDS once it has seen this many outcomes, or at the latest
# after MAX_WINDOW_SECONDS (a slow account sends few calls in a second).
MIN_EVIDENCE = 10
MIN_ACCEPTED = 5
MAX_WINDOW_SECONDS = 5.0
SAFETY = 0.97
HOLD_SECONDS = 120.0
QUOTA_PAUSE_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class RateState:
    """The learned rate of one account, and where the controller is."""

    rate: float = INITIAL_RATE
    phase: Phase = "start"
    # Each change of course starts a new epoch; a send reports the epoch its slot was taken in,
    # and only outcomes of the current epoch are evidence about the rate in force.
    epoch: int = 0
    changed_at: float = 0.0  # the last growth step, or when the window opened
    window_rate: float = 0.0  # the rate in force during the measuring window
    window_after: Phase = "start"  # the phase the window's cut came from
    # Throttles before this moment are not evidence against a measured rate: SES's budget,
    # spent by the window, is still filling up again.
    grace_until: float = 0.0
    accepted: int = 0  # recipients SES accepted in the window
    refused: int = 0  # recipients SES throttled in the window
    hold_until: float = 0.0
    paused_until: float = 0.0
    throttles: int = 0  # throttles reported (for status and benchmarks)
    measured: float | None = None  # SES's rate as last measured

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> RateState:
        """The stored state; a missing or unreadable one starts afresh (it is only a hint)."""
        if not text:
            return cls()
        try:
            data: Any = json.loads(text)
            fields = {field.name: field.type for field in dataclasses.fields(cls)}
            state = cls(**{key: value for key, value in data.items() if key in fields})
            rate = float(state.rate)
            int(state.epoch), float(state.changed_at), float(state.paused_until)
        except (ValueError, TypeError, AttributeError):
            return cls()
        if state.phase not in ("start", "measure", "hold", "probe") or not math.isfinite(rate):
            return cls()
        return dataclasses.replace(state, rate=_clamp(rate))


def _clamp(rate: float) -> float:
    return min(MAX_RATE, max(MIN_RATE, rate))


def settle(state: RateState, now: float) -> RateState:
    """Close a measuring window that has seen enough; otherwise ``state`` as it is."""
    if state.phase != "measure":
        return state
    elapsed = now - state.changed_at
    seen = state.accepted + state.refused
    if elapsed < WINDOW_SECONDS or (seen < MIN_EVIDENCE and elapsed < MAX_WINDOW_SECONDS):
        return state
    if state.refused == 0:
        if state.window_after == "start":
            # The start's cut went below SES's rate: look upwards again, from there.
            return dataclasses.replace(state, phase="probe", changed_at=now)
        # A probe (or a held rate) was throttled and the cut rate was not: hold it. (Slightly
        # over SES's rate, SES's budget may take longer than the window to run out: holding
        # means the next throttle cuts again, and the rate settles below SES's.)
        return dataclasses.replace(
            state, phase="hold", hold_until=now + HOLD_SECONDS, changed_at=now
        )
    # SES's budget is spent while it throttles: what it accepts of the window's sends is its
    # rate (the window's senders were waiting for slots, so they sent at the window's rate).
    measured = max(MIN_RATE, state.window_rate * state.accepted / seen)
    # A slow account accepts only a call or two in a window: a rough measure, so keep probing
    # (each throttle measures again) instead of holding it for minutes.
    confident = state.accepted >= MIN_ACCEPTED
    return dataclasses.replace(
        state,
        rate=_clamp(measured * SAFETY),
        phase="hold" if confident else "probe",
        epoch=state.epoch + 1,  # sends at the window's rate are still coming back throttled
        hold_until=now + HOLD_SECONDS,
        changed_at=now,
        measured=measured,
        grace_until=now + max(WINDOW_SECONDS, 2 / measured),
    )


def on_waiting(state: RateState, now: float) -> RateState:
    """Senders waited for the rate (demand is above it): grow it, as the phase allows."""
    state = settle(state, now)
    # A state never changed (changed_at 0) grows from this first report on.
    step = min(MAX_GROWTH_STEP, max(0.0, now - state.changed_at)) if state.changed_at else 0.0
    if state.phase == "measure":
        return state
    if state.phase == "hold":
        if now < state.hold_until:
            return state
        return dataclasses.replace(state, phase="probe", changed_at=now)
    growth = START_GROWTH if state.phase == "start" else PROBE_GROWTH
    return dataclasses.replace(
        state, rate=_clamp(state.rate * math.exp(growth * step)), changed_at=now
    )


def on_outcomes(
    state: RateState, now: float, *, epoch: int, accepted: int = 0, refused: int = 0
) -> RateState:
    """SES accepted ``accepted`` and throttled ``refused`` recipients of calls whose slots were
    taken in ``epoch``."""
    if refused:
        state = dataclasses.replace(state, throttles=state.throttles + 1)
    state = settle(state, now)
    if epoch != state.epoch:
        return state  # sent at an earlier rate: old news
    if state.phase == "measure":
        state = dataclasses.replace(
            state, accepted=state.accepted + accepted, refused=state.refused + refused
        )
        return settle(state, now)
    if not refused or now < state.grace_until:
        return state
    cut = CUT_AFTER_START if state.phase == "start" else CUT
    rate = _clamp(state.rate * cut)
    return dataclasses.replace(
        state,
        rate=rate,
        phase="measure",
        epoch=state.epoch + 1,
        window_rate=rate,
        window_after=state.phase,
        accepted=0,
        refused=0,
        changed_at=now,
    )


def on_quota_exceeded(state: RateState, now: float) -> RateState:
    """SES said "Daily message quota exceeded": nobody on the account sends for a while."""
    return dataclasses.replace(
        state, paused_until=max(state.paused_until, now + QUOTA_PAUSE_SECONDS)
    )
