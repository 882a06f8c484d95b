"""What every transport does: take one prepared message, hand it over, say what was accepted."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from sendwell.mime import PreparedMessage


@dataclasses.dataclass(frozen=True)
class AcceptedCall:
    """One hand-over that succeeded: its id (SES message id; empty for SMTP) and recipients."""

    message_id: str
    recipients: tuple[str, ...]


class Transport(Protocol):
    name: str
    # How many envelope recipients one hand-over may carry (SES: 50).
    max_recipients: int

    def send(self, prepared: PreparedMessage) -> list[AcceptedCall]:
        """Deliver ``prepared``; on failure raise a DeliveryError whose ``accepted`` lists the
        hand-overs that had already succeeded."""
        ...
