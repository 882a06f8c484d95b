"""What every transport does: take one prepared message, hand it over, say what was accepted."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

from sendwell.mime import PreparedMessage

if TYPE_CHECKING:
    from sendwell.options import SESOptions


@dataclasses.dataclass(frozen=True)
class AcceptedCall:
    """One hand-over that succeeded: its id (SES message id; empty for SMTP) and recipients."""

    message_id: str
    recipients: tuple[str, ...]


class Transport(Protocol):
    """One way out. Delivery knows transports only through this: what is specific to one (its
    pacing, its limits, its API) stays in its class."""

    name: str
    # How many envelope recipients one hand-over may carry (SES: 50).
    max_recipients: int

    @property
    def paced_by(self) -> SESOptions | None:
        """The SES account whose send rate paces this transport's hand-overs (None: unpaced)."""
        ...

    @property
    def configuration_set(self) -> str | None:
        """The configuration set a message gets unless its headers name one."""
        ...

    def check(self, prepared: PreparedMessage) -> None:
        """Raise the DeliveryError this transport would refuse ``prepared`` with (size), so a
        queued message is refused in the caller's request, not by a worker later."""
        ...

    def send(self, prepared: PreparedMessage) -> list[AcceptedCall]:
        """Deliver ``prepared``; on failure raise a DeliveryError whose ``accepted`` lists the
        hand-overs that had already succeeded."""
        ...
