"""The failover circuit breaker: after repeated failures of a route's first transport, send
through the next one for a while without trying the first.

Kept in the database (:class:`~sendwell.models.CircuitState`), so every worker sees one state,
under the name of what failed: the SES account (its pacing name) or the transport.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from sendwell import conf
from sendwell.models import CircuitState
from sendwell.pacing import pacer_for
from sendwell.transports.base import Transport


def circuit_name(transport: Transport) -> str:
    options = transport.paced_by
    return pacer_for(options).name if options is not None else transport.name


def is_open(transport: Transport) -> bool:
    state = CircuitState.objects.filter(name=circuit_name(transport)).first()
    return state is not None and state.is_open()


def record_failure(transport: Transport) -> None:
    """One more failure in a row; opens the circuit at ``CIRCUIT_BREAKER_THRESHOLD``."""
    with transaction.atomic():
        state, _ = CircuitState.objects.select_for_update().get_or_create(
            name=circuit_name(transport)
        )
        state.consecutive_failures += 1
        if state.consecutive_failures >= int(conf.setting("CIRCUIT_BREAKER_THRESHOLD")):
            seconds = float(conf.setting("CIRCUIT_BREAKER_SECONDS"))
            state.open_until = timezone.now() + timedelta(seconds=seconds)
        state.save()


def record_success(transport: Transport) -> None:
    CircuitState.objects.filter(name=circuit_name(transport), consecutive_failures__gt=0).update(
        consecutive_failures=0, open_until=None
    )
