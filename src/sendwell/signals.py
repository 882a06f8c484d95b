"""sendwell's Django signals: what the feedback loop found out, for the application to act on.

Connect receivers as usual::

    from sendwell import signals

    @receiver(signals.address_suppressed)
    def drop_from_newsletter(sender, suppression, **kwargs):
        Subscriber.objects.filter(email=suppression.address).delete()

The feedback loop's signals (``address_suppressed`` and the event signals) are sent inside the
transaction that saves what they describe: a receiver that raises rolls it back, and SNS's
notification is processed again when it is delivered again. ``recipients_suppressed`` is sent
once a message's rows are saved (queued ones: when the caller's transaction commits), robustly:
a receiver that raises is logged, and the send stands.
"""

from __future__ import annotations

from django.dispatch import Signal

# An address was added to the suppression list. Arguments: suppression (the Suppression row),
# created (False when an existing row was extended or its reason changed).
address_suppressed = Signal()

# A message left suppressed recipients out of its envelope. Arguments: message (the Message
# row), addresses (the suppressed addresses), all_suppressed (nobody was left to send to).
recipients_suppressed = Signal()

# One signal per SES event type; each is sent with event (the normalized event:
# sendwell.events.SESEvent), record (the saved sendwell.models.Event) and raw (the SES JSON).
send = Signal()
reject = Signal()
bounce = Signal()
complaint = Signal()
delivery = Signal()
open = Signal()  # SES's name; shadows the builtin only inside this module
click = Signal()
rendering_failure = Signal()
delivery_delay = Signal()
subscription = Signal()
unknown_event = Signal()

# By sendwell.models.EventType value.
BY_EVENT_TYPE: dict[str, Signal] = {
    "send": send,
    "reject": reject,
    "bounce": bounce,
    "complaint": complaint,
    "delivery": delivery,
    "open": open,
    "click": click,
    "rendering_failure": rendering_failure,
    "delivery_delay": delivery_delay,
    "subscription": subscription,
    "unknown": unknown_event,
}
