"""The learned-rate controller (pure: no database, no SES), and a token-bucket SES it learns."""

from __future__ import annotations

import dataclasses
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from sendwell import ratecontrol
from sendwell.ratecontrol import RateState

T0 = 1_800_000_000.0


def test_a_fresh_account_starts_at_the_production_minimum_and_grows_only_while_senders_wait() -> (
    None
):
    state = RateState()
    assert state.rate == ratecontrol.INITIAL_RATE == 14.0
    state = ratecontrol.on_waiting(state, T0)  # the first report starts the clock, no jump
    assert state.rate == 14.0
    state = ratecontrol.on_flow(state, T0, 0)
    state = ratecontrol.on_flow(state, T0 + 1.0, 100)  # SES accepted 100/s (other senders)
    assert state.achieved == 100.0
    state = ratecontrol.on_waiting(state, T0 + 1.0)
    assert state.rate == 14.0 * math.exp(ratecontrol.START_GROWTH)
    # An idle hour counts as at most one step of growth...
    grown = ratecontrol.on_waiting(state, T0 + 3601.0)
    assert grown.rate == state.rate * math.exp(ratecontrol.START_GROWTH)
    # ...and the rate never leads what is really sent by more than GROWTH_HEADROOM.
    slow = dataclasses.replace(grown, achieved=30.0)
    assert ratecontrol.on_waiting(slow, T0 + 3602.0).rate == grown.rate  # 103/s > 2 x 30
    assert ratecontrol.on_waiting(grown, T0 + 3602.0).rate == ratecontrol.GROWTH_HEADROOM * 100


def test_the_achieved_rate_is_counted_over_whole_seconds() -> None:
    state = ratecontrol.on_flow(RateState(), T0, 5)
    state = ratecontrol.on_flow(state, T0 + 0.5, 10)
    assert (state.flow, state.achieved) == (15, 0.0)
    state = ratecontrol.on_flow(state, T0 + 1.25, 10)
    assert (state.flow, state.achieved) == (0, 20.0)


def test_a_throttle_cuts_then_the_window_measures_what_ses_accepts() -> None:
    state = dataclasses.replace(RateState(), rate=120.0, changed_at=T0)
    state = ratecontrol.on_outcomes(state, T0, epoch=0, refused=1)
    assert (state.phase, state.rate, state.epoch) == ("measure", 60.0, 1)
    # Calls sent at the old rate (epoch 0) come back throttled: old news.
    state = ratecontrol.on_outcomes(state, T0 + 0.1, epoch=0, refused=20)
    assert state.refused == 0
    # In the window SES accepts 50 of every 60 recipients: its rate is 50/s.
    state = ratecontrol.on_outcomes(state, T0 + 0.5, epoch=1, accepted=25, refused=5)
    assert state.phase == "measure"  # the window is not over
    state = ratecontrol.on_outcomes(state, T0 + 1.0, epoch=1, accepted=25, refused=5)
    assert state.phase == "hold"
    assert state.measured == 50.0
    assert state.rate == 50.0 * ratecontrol.SAFETY
    assert state.epoch == 2  # what was sent at 60/s is now old news
    assert ratecontrol.on_outcomes(state, T0 + 1.1, epoch=1, refused=3).rate == state.rate


def test_a_window_without_refusals_probes_upwards_again() -> None:
    state = dataclasses.replace(RateState(), rate=40.0, changed_at=T0)
    state = ratecontrol.on_outcomes(state, T0, epoch=0, refused=1)
    state = ratecontrol.on_outcomes(state, T0 + 1.2, epoch=1, accepted=24)
    assert (state.phase, state.rate) == ("probe", 20.0)
    state = dataclasses.replace(state, achieved=20.0)
    state = ratecontrol.on_waiting(state, T0 + 2.2)
    assert state.rate == 20.0 * math.exp(ratecontrol.PROBE_GROWTH)


def test_a_held_rate_is_probed_after_the_hold() -> None:
    state = dataclasses.replace(
        RateState(), rate=48.5, phase="hold", hold_until=T0 + 10, changed_at=T0
    )
    assert ratecontrol.on_waiting(state, T0 + 5) == state
    probing = ratecontrol.on_waiting(state, T0 + 11)
    assert probing.phase == "probe"
    # A throttle while probing cuts by a fifth (probing overshoots less than the start).
    cut = ratecontrol.on_outcomes(probing, T0 + 12, epoch=probing.epoch, refused=1)
    assert cut.rate == 48.5 * ratecontrol.CUT


def test_a_slow_account_window_waits_for_enough_evidence() -> None:
    state = dataclasses.replace(RateState(), rate=2.0, changed_at=T0)
    state = ratecontrol.on_outcomes(state, T0, epoch=0, refused=1)
    state = ratecontrol.on_outcomes(state, T0 + 1.5, epoch=1, accepted=2, refused=6)
    assert state.phase == "measure"  # 8 outcomes are not enough yet...
    state = ratecontrol.on_outcomes(state, T0 + 4.0, epoch=1, accepted=1, refused=3)
    assert state.phase == "measure"  # 12, but only 3 accepted and 9 refused...
    state = ratecontrol.on_waiting(state, T0 + 5.0)
    # ...until the longest window has passed: a rough measure, so it goes on probing.
    assert state.phase == "probe"
    assert state.measured == 0.25


def test_a_window_with_too_little_evidence_is_given_up_not_measured() -> None:
    """One refused call and a silence (the sending stopped): nothing to measure from. The rate
    must not collapse to the minimum; it probes from the cut rate."""
    state = dataclasses.replace(RateState(), rate=40.0, changed_at=T0)
    state = ratecontrol.on_outcomes(state, T0, epoch=0, refused=1)
    state = ratecontrol.on_outcomes(state, T0 + 0.5, epoch=1, refused=1)
    state = ratecontrol.on_waiting(state, T0 + 3600)
    assert (state.phase, state.rate, state.measured) == ("probe", 20.0, None)
    assert state.epoch == 2


def test_daily_quota_exceeded_pauses_the_account() -> None:
    state = ratecontrol.on_quota_exceeded(RateState(), T0)
    assert state.paused_until == T0 + ratecontrol.QUOTA_PAUSE_SECONDS


def _ses_learning(true_rate: float, seconds: float, senders: int = 8, latency: float = 0.05):
    """Senders always waiting for the learned rate, against SES's budget of one second of its
    rate (accepted while > 0, one unit per recipient). Returns (accepted, refused, state)."""
    state = RateState()
    budget, budget_at = true_rate, 0.0
    now, next_free = 0.0, 0.0
    in_flight: list[tuple[float, int, bool]] = []  # (answer time, epoch, accepted)
    accepted = refused = 0
    last_report = -1.0
    while now < seconds:
        start = max(now, next_free)
        while in_flight and in_flight[0][0] <= start:
            answer, epoch, ok = in_flight.pop(0)
            accepted += ok
            refused += not ok
            state = ratecontrol.on_flow(state, answer, int(ok))
            state = ratecontrol.on_outcomes(
                state, answer, epoch=epoch, accepted=int(ok), refused=int(not ok)
            )
        if start - last_report >= 0.25:
            state = ratecontrol.on_waiting(state, start)
            last_report = start
        next_free = start + 1 / state.rate
        arrival = start + latency / 2
        budget = min(true_rate, budget + (arrival - budget_at) * true_rate)
        budget_at = arrival
        ok = budget > 0
        budget -= ok
        in_flight.append((start + latency, state.epoch, ok))
        if len(in_flight) >= senders:
            now = in_flight[0][0]
        else:
            now = start
    return accepted, refused, state


@given(st.floats(min_value=5.0, max_value=400.0))
@settings(max_examples=40, deadline=None)
def test_against_ses_accounting_the_rate_converges_below_the_truth(true_rate: float) -> None:
    accepted, refused, state = _ses_learning(true_rate, seconds=30.0, senders=32)
    # Measured, or held at a cut that SES did not throttle.
    assert 0.8 * true_rate <= state.rate <= 1.02 * true_rate
    # Refusals: the start's overshoot and one measuring window, a few percent of what went out.
    assert refused <= 0.05 * (accepted + refused) + 10


@given(st.floats(min_value=0.5, max_value=5.0))
@settings(max_examples=20, deadline=None)
def test_a_slow_account_is_measured_roughly_and_throttles_rarely(true_rate: float) -> None:
    """A call or two per window is a rough measure: the rate stays near the truth (probing
    again rather than holding a rough measure), and SES refuses a few calls a minute."""
    accepted, refused, state = _ses_learning(true_rate, seconds=60.0, senders=4)
    assert state.measured is not None
    assert 0.5 * true_rate <= state.rate <= 1.5 * true_rate
    assert accepted >= 0.6 * true_rate * 60
    assert refused <= 40


@given(st.text() | st.binary() | st.dictionaries(st.text(), st.integers() | st.text() | st.none()))
def test_any_stored_state_reads_as_a_valid_state(value: object) -> None:
    text = value if isinstance(value, str | bytes) else json.dumps(value)
    state = RateState.from_json(text)
    assert ratecontrol.MIN_RATE <= state.rate <= ratecontrol.MAX_RATE
    assert state.phase in ("start", "measure", "hold", "probe")
    assert RateState.from_json(state.to_json()) == state


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["waiting", "accepted", "refused", "quota"]),
            st.floats(min_value=0, max_value=5),
            st.integers(min_value=0, max_value=3),
            st.integers(min_value=1, max_value=50),
        ),
        max_size=60,
    )
)
def test_any_sequence_of_events_keeps_the_rate_in_bounds(
    events: list[tuple[str, float, int, int]],
) -> None:
    state, now = RateState(), T0
    for kind, step, epoch_back, recipients in events:
        now += step
        epoch = max(0, state.epoch - epoch_back)
        if kind == "waiting":
            state = ratecontrol.on_waiting(state, now)
        elif kind == "quota":
            state = ratecontrol.on_quota_exceeded(state, now)
        else:
            state = ratecontrol.on_outcomes(
                state,
                now,
                epoch=epoch,
                accepted=recipients if kind == "accepted" else 0,
                refused=recipients if kind == "refused" else 0,
            )
        assert ratecontrol.MIN_RATE <= state.rate <= ratecontrol.MAX_RATE
        assert math.isfinite(state.rate)
        assert RateState.from_json(state.to_json()) == state
