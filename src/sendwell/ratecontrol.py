"""Learning an SES account's send rate from SES's own answers, when it cannot be read.

Credentials with only ``ses:SendEmail``/``ses:SendRawEmail`` (the least-privilege policy the
guide recommends) cannot call ``GetAccount``: the account's maximum send rate is then unknown.
Guessing it wrong either way costs: too low and email waits for no reason, too high and SES
throttles. So the rate is learned from what SES answers, by a small controller shared by every
worker of the account (its state lives with the shared limiter: :mod:`sendwell.pacing`):

- **start**: from :data:`INITIAL_RATE` (14/s, what a new production account gets), the rate grows
  by :data:`START_GROWTH` per second while senders are waiting for it (never while idle: a rate
  nobody used teaches nothing), and never more than :data:`GROWTH_HEADROOM` times ahead of what
  SES really accepted, until SES first throttles.
- **cut and measure**: on a throttle the rate is cut (by half after the start, by a fifth after
  a probe, by 5 % while holding a measure) and a measuring window opens. SES keeps a budget of
  about one second of its rate, refilled at that rate: by the time it throttles, the budget is
  spent, and from then on it accepts exactly its rate. So the share of the window's recipients
  SES accepts, times the window's rate, *is* SES's rate; the controller holds :data:`SAFETY` of
  it. The window lasts at least a second and until SES accepted :data:`MIN_ACCEPTED` recipients
  in it (the measure is off by about one call) or refused :data:`MAX_REFUSED`, at most
  :data:`MAX_WINDOW_SECONDS`. A window
  without refusals means the cut went below SES's rate: after the start it probes upwards again;
  after a probe or a hold it holds the cut rate.
- **hold, then probe**: a measured rate is held for :data:`HOLD_SECONDS`, then probed gently
  (:data:`PROBE_GROWTH` per second), so a quota AWS raised is found within minutes. A rough
  measure (a slow account accepts a call or two per window) is probed at once instead.
- **pause**: SES's "Daily message quota exceeded" pauses the whole account for
  :data:`QUOTA_PAUSE_SECONDS` (retrying soon only collects more refusals).

Each change of course starts a new epoch, and a send reports the epoch its slot was taken in:
calls already in flight at an old rate come back throttled for a while and say nothing new.
Right after a measure, throttles are ignored for a moment (:attr:`RateState.grace_until`) while
SES's budget, spent by the window, fills up again.

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
# Growth per second of waiting senders (exponential): up to x2.7/s before the first throttle,
# +5 %/s when probing for a raised quota; never more than GROWTH_HEADROOM times the rate SES
# really accepted over the last FLOW_SECONDS (slots handed out are not all used at once, and a
# rate far ahead of the sends would overshoot SES's by as much when the first throttle comes).
START_GROWTH = 1.0
PROBE_GROWTH = 0.05
GROWTH_HEADROOM = 2.0
FLOW_SECONDS = 1.0
# At most this much growth time is counted per report (a first report after an idle hour must
# not multiply the rate by e**1800).
MAX_GROWTH_STEP = 1.0
# The cut on a throttle: the start overshoots by up to about 2x (GROWTH_HEADROOM; SES's
# one-second budget absorbs the excess for a while), probing by about 1.3x.
CUT_AFTER_START = 0.5
CUT = 0.8
# A throttle while holding a measured rate: usually the measure was a call or two high, or
# another sender joined; a small cut, then the window measures again.
CUT_FROM_HOLD = 0.95
WINDOW_SECONDS = 1.0
# A window closes after WINDOW_SECONDS once it has seen this many outcomes, or at the latest
# after MAX_WINDOW_SECONDS (a slow account sends few calls in a second).
MIN_EVIDENCE = 10
# A window goes on (up to MAX_WINDOW_SECONDS) until SES accepted this many calls' recipients in
# it: the measure is off by about one call either way, so 40 make it good to a few percent.
MIN_ACCEPTED = 40
# ...or until it refused this many (a slow account would refuse many before accepting 40).
MAX_REFUSED = 20
# Fewer than this and the measure is rough (a slow account): keep probing rather than hold it.
CONFIDENT_ACCEPTED = 5
MAX_WINDOW_SECONDS = 5.0
# Of the measured rate, this much is used (the measure's own error is a few percent).
SAFETY = 0.95
HOLD_SECONDS = 120.0
HOLD_GROWTH = 0.002
HOLD_CEILING = 0.98
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
    # Recipients SES accepted (all workers) since flow_since, and the rate that made over the
    # last full FLOW_SECONDS: growth never runs ahead of what is really sent.
    flow: int = 0
    flow_since: float = 0.0
    achieved: float = 0.0

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
    enough = seen >= MIN_EVIDENCE and (
        state.refused == 0
        or state.accepted >= MIN_ACCEPTED
        or (state.refused >= MAX_REFUSED and state.accepted >= CONFIDENT_ACCEPTED)
    )
    if elapsed < WINDOW_SECONDS or (not enough and elapsed < MAX_WINDOW_SECONDS):
        return state
    if state.refused and (state.accepted == 0 or seen < MIN_EVIDENCE):
        # Too little to measure from (the sending stopped, or SES accepted nothing at all):
        # give the window up and probe from the cut rate; the next throttle measures again.
        return dataclasses.replace(state, phase="probe", epoch=state.epoch + 1, changed_at=now)
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
    confident = state.accepted >= CONFIDENT_ACCEPTED
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
        if now >= state.hold_until:
            return dataclasses.replace(state, phase="probe", changed_at=now)
        if state.measured is None:
            return state
        # Creep from SAFETY towards HOLD_CEILING of the measure: the measure is good to a few
        # percent, and a held rate that is a little high only throttles after a long while.
        ceiling = max(state.rate, state.measured * HOLD_CEILING)
        rate = min(ceiling, state.rate * math.exp(HOLD_GROWTH * step))
        return dataclasses.replace(state, rate=_clamp(rate), changed_at=now)
    growth = START_GROWTH if state.phase == "start" else PROBE_GROWTH
    # The slots the workers are given may not all be used (threads waking late, the database),
    # and SES only answers what is sent: the rate may lead what is really sent by
    # GROWTH_HEADROOM at most, or it would run far past SES's before the first throttle.
    ceiling = max(state.rate, INITIAL_RATE, GROWTH_HEADROOM * state.achieved)
    rate = min(ceiling, state.rate * math.exp(growth * step))
    return dataclasses.replace(state, rate=_clamp(rate), changed_at=now)


def on_flow(state: RateState, now: float, accepted: int) -> RateState:
    """SES accepted ``accepted`` more recipients (any epoch): the achieved rate, per second."""
    if not state.flow_since or now < state.flow_since:
        return dataclasses.replace(state, flow=accepted, flow_since=now)
    flow, elapsed = state.flow + accepted, now - state.flow_since
    if elapsed < FLOW_SECONDS:
        return dataclasses.replace(state, flow=flow)
    return dataclasses.replace(state, flow=0, flow_since=now, achieved=flow / elapsed)


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
    cut = {"start": CUT_AFTER_START, "hold": CUT_FROM_HOLD}.get(state.phase, CUT)
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
