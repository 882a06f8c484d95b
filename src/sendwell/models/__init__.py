"""sendwell's tables: the outbox, what delivery shares between workers, and the feedback loop."""

from sendwell.events import EventType
from sendwell.models.feedback import (
    EVERYTHING,
    Event,
    Notification,
    NotificationSource,
    Suppression,
    SuppressionReason,
)
from sendwell.models.limits import AccountQuota, CircuitState, RateBucket, SendCounter, Wakeup
from sendwell.models.outbox import (
    PENDING_RECIPIENT_STATUSES,
    Attempt,
    AttemptOutcome,
    Message,
    MessageStatus,
    Recipient,
    RecipientStatus,
    Transport,
)

__all__ = [
    "EVERYTHING",
    "PENDING_RECIPIENT_STATUSES",
    "AccountQuota",
    "Attempt",
    "AttemptOutcome",
    "CircuitState",
    "Event",
    "EventType",
    "Message",
    "MessageStatus",
    "Notification",
    "NotificationSource",
    "RateBucket",
    "Recipient",
    "RecipientStatus",
    "SendCounter",
    "Suppression",
    "SuppressionReason",
    "Transport",
    "Wakeup",
]
