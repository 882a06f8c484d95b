"""A mailer's way out: its transports in order of preference, whether to fail over, and what
paces each."""

from __future__ import annotations

import dataclasses

from sendwell.models import Transport as TransportName
from sendwell.pacing import Pacer, pacer_for
from sendwell.transports.base import Transport


@dataclasses.dataclass(frozen=True)
class Route:
    """The transports a mailer may use for a message, first choice first.

    With ``failover``, a message goes to the next transport when the first has failed it
    ``FAILOVER_AFTER_ATTEMPTS`` times or its circuit breaker is open (see
    :mod:`sendwell.delivery.circuit`); without, only the first is ever used.
    """

    transports: tuple[Transport, ...]
    failover: bool = False

    def __post_init__(self) -> None:
        if not self.transports:
            raise ValueError("a route needs at least one transport")

    @classmethod
    def of(cls, *transports: Transport | None, failover: bool = False) -> Route:
        """A route over the given transports, leaving out the ones not configured (None)."""
        chosen = tuple(t for t in transports if t is not None)
        return cls(chosen, failover=failover and len(chosen) > 1)

    @property
    def first(self) -> Transport:
        return self.transports[0]

    @property
    def name(self) -> str:
        """What the outbox records as the message's transport (``ses``, ``smtp``, ``failover``)."""
        return TransportName.FAILOVER if self.failover else self.first.name

    def after(self, transport: Transport) -> Transport | None:
        """The transport a message fails over to from ``transport`` (None: no further one)."""
        if not self.failover:
            return None
        index = self.transports.index(transport)
        return self.transports[index + 1] if index + 1 < len(self.transports) else None


def pacer_of(transport: Transport) -> Pacer | None:
    """The pacer of the SES account ``transport`` sends to (None: the transport is unpaced)."""
    options = transport.paced_by
    return pacer_for(options) if options is not None else None
