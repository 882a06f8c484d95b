"""Sending the newsletter: one message per subscriber, marked as this list's mail."""

from __future__ import annotations

from django.core.mail import EmailMessage, get_connection

from newsletter.models import Subscriber

LIST_NAME = "newsletter"


def send_issue(subject: str, body: str) -> int:
    """Send to every subscriber; the number of messages sent (suppressed ones are not)."""
    messages = [
        # X-Sendwell-List: an address unsubscribed from this list is suppressed for it only.
        EmailMessage(subject, body, to=[subscriber.email], headers={"X-Sendwell-List": LIST_NAME})
        for subscriber in Subscriber.objects.order_by("pk")
    ]
    with get_connection() as connection:
        return connection.send_messages(messages)
