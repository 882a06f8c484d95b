"""The feedback loop: SNS deliveries as they arrived, the SES events in them, and the
suppression list every backend enforces."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from sendwell.events import EventType
from sendwell.models.outbox import Message, Recipient


class NotificationSource(models.TextChoices):
    SNS = "sns", _("SNS over HTTPS")
    SQS = "sqs", _("SQS")
    SIMULATED = "simulated", _("simulated (manage.py sendwell simulate)")


class Notification(models.Model):
    """One verified SNS message, stored before it is processed, once per SNS MessageId.

    Storing first lets the webhook answer SNS fast and makes a redelivery (SNS retries until it
    hears 2xx) a no-op: the unique message id says it was seen.
    """

    sns_message_id = models.CharField(max_length=100, unique=True)
    topic_arn = models.CharField(max_length=512)  # a 256-character topic name, and the rest
    type = models.CharField(max_length=32)  # Notification, SubscriptionConfirmation, ...
    source = models.CharField(
        max_length=10, choices=NotificationSource.choices, default=NotificationSource.SNS
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Why processing failed (the SES JSON inside could not be read): kept for an operator.
    error = models.TextField(blank=True)
    envelope = models.JSONField()  # the verified SNS envelope as received

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.sns_message_id}"


# The choices are the parser's types (sendwell.events.EventType): one list of SES event types.
EVENT_TYPE_CHOICES = [(t.value, t.value.replace("_", " ")) for t in EventType]


class Event(models.Model):
    """One SES event for one recipient (a bounce of three recipients is three events).

    Linked to its Message and Recipient by SES message id; an event that arrives before the
    send is recorded stays unlinked until the recorder links it.
    """

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="events", null=True, blank=True
    )
    type = models.CharField(max_length=20, choices=EVENT_TYPE_CHOICES)
    type_name = models.CharField(max_length=64, blank=True)  # as SES named it
    ses_message_id = models.CharField(max_length=100)
    address = models.CharField(max_length=320, blank=True)  # lower-cased addr-spec
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, related_name="events", null=True, blank=True
    )
    recipient = models.ForeignKey(
        Recipient, on_delete=models.SET_NULL, related_name="events", null=True, blank=True
    )
    # Each event once: SNS delivers at least once and SES gives events no id of their own, so
    # this is the parser's dedup_key (type, message id, recipient, time, feedback id, link).
    dedup_key = models.CharField(max_length=64, unique=True)
    detail = models.JSONField(default=dict, blank=True)  # the normalized fields
    raw = models.JSONField(default=dict, blank=True)  # the SES JSON

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["ses_message_id", "address"], name="sendwell_event_ses_id"),
            models.Index(fields=["received_at"], name="sendwell_event_received"),
            models.Index(fields=["address", "type", "occurred_at"], name="sendwell_event_address"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.address or self.ses_message_id}"


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", _("permanent bounce")
    TRANSIENT_BOUNCES = "transient_bounces", _("repeated transient bounces")
    COMPLAINT = "complaint", _("complaint")
    UNSUBSCRIBE = "unsubscribe", _("unsubscribed")
    MANUAL = "manual", _("added by an operator")
    SES = "ses", _("on the SES account's suppression list")


# The scope of a suppression that applies to every message.
EVERYTHING = ""


class Suppression(models.Model):
    """An address sendwell does not send to: for everything, or for one mailing list."""

    address = models.CharField(max_length=320)  # lower-cased addr-spec
    scope = models.CharField(max_length=100, blank=True, default=EVERYTHING)
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    event = models.ForeignKey(
        Event, on_delete=models.SET_NULL, related_name="suppressions", null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["address", "scope"], name="sendwell_suppressed_once")
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.address} ({self.reason}{', ' + self.scope if self.scope else ''})"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())
