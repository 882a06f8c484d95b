"""The outbox: every message sendwell handles, each recipient's fate, and every attempt.

The outbox is the truth. A task queue may lose or repeat a job; a worker may die mid-send. A
message is only ever sent by the worker that holds its claim (``status=sending`` with a lease), and
one indexed query finds everything that is due, including expired leases.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class MessageStatus(models.TextChoices):
    QUEUED = "queued", _("queued")  # waiting for its first attempt
    SENDING = "sending", _("sending")  # claimed by a worker until next_attempt_at (the lease)
    SENT = "sent", _("sent")  # every recipient was accepted (or suppressed)
    DEFERRED = "deferred", _("deferred")  # waiting for a retry, or for room in the daily quota
    FAILED = "failed", _("failed")  # permanent error, or retries exhausted
    SUPPRESSED = "suppressed", _("suppressed")  # every recipient is on the suppression list
    CANCELLED = "cancelled", _("cancelled")  # cancelled by an operator before it was sent


class RecipientStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    SENDING = "sending", _("sending")
    SENT = "sent", _("sent")  # accepted by SES or the SMTP server
    FAILED = "failed", _("failed")
    DEFERRED = "deferred", _("deferred")
    SUPPRESSED = "suppressed", _("suppressed")  # on the suppression list: not sent
    # Set later by SES event notifications (the feedback loop), only ever forward: see
    # sendwell.feedback.STATUS_RANK for the order.
    DELIVERED = "delivered", _("delivered")
    REJECTED = "rejected", _("rejected")  # SES took the call, then refused the email (a virus)
    BOUNCED = "bounced", _("bounced")  # a permanent bounce
    COMPLAINED = "complained", _("complained")


PENDING_RECIPIENT_STATUSES = (
    RecipientStatus.QUEUED,
    RecipientStatus.SENDING,
    RecipientStatus.DEFERRED,
)


class Transport(models.TextChoices):
    SES = "ses", "SES"
    SMTP = "smtp", "SMTP"
    FAILOVER = "failover", _("SES, failing over to SMTP")


class Message(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The MAILERS alias (or "default") whose options deliver it; the worker looks them up there.
    mailer = models.CharField(max_length=100, default="default")
    transport = models.CharField(max_length=10, choices=Transport.choices)
    from_email = models.CharField(_("envelope sender"), max_length=320)
    subject = models.TextField(blank=True)
    # The MIME exactly as it will be delivered (control headers removed, Bcc not in it).
    raw = models.BinaryField()
    configuration_set = models.CharField(max_length=64, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    # The mailing list it was sent for (the X-Sendwell-List header): an address unsubscribed from
    # that list is suppressed for it, not for everything.
    list_name = models.CharField(max_length=100, blank=True)

    status = models.CharField(
        max_length=10, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    attempt_count = models.PositiveIntegerField(default=0)
    # When the message is due: first attempt, retry time, quota room, or (SENDING) lease expiry.
    # A worker picks the message up once this has passed; for SENDING it is the end of the lease
    # (a worker that died mid-send leaves its claim to expire, then it is reclaimed).
    # Set exactly while the status is queued, deferred or sending, NULL once it is done: the
    # partial index below holds only the work still to do.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_by = models.CharField(max_length=10, choices=Transport.choices, blank=True)
    ses_message_ids = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [
            # The one query that picks work: next_attempt_at <= now, oldest first. Partial, so it
            # stays small however many sent messages the table holds. The condition is on the
            # column itself rather than on status: SQLite can only use a partial index when the
            # query implies its condition, and "next_attempt_at <= ?" implies "IS NOT NULL",
            # while Django's "status IN (?, ?, ?)" is never matched to a literal list.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(next_attempt_at__isnull=False),
                name="sendwell_message_due",
            ),
            models.Index(fields=["status", "created_at"], name="sendwell_message_status"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} [{self.status}]"

    @property
    def size(self) -> int:
        return len(self.raw)


class Recipient(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients")
    address = models.CharField(max_length=320)
    status = models.CharField(
        max_length=10, choices=RecipientStatus.choices, default=RecipientStatus.QUEUED
    )
    transport = models.CharField(max_length=10, choices=Transport.choices, blank=True)
    # The SES id of the call that carried this recipient: SES events (bounce, complaint,
    # delivery) name it, so the feedback loop finds the recipient by it.
    ses_message_id = models.CharField(max_length=100, blank=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "address"], name="sendwell_recipient_once")
        ]
        indexes = [models.Index(fields=["address"], name="sendwell_recipient_address")]

    def __str__(self) -> str:
        return f"{self.address} [{self.status}]"


class AttemptOutcome(models.TextChoices):
    SENT = "sent", _("sent")
    RETRY = "retry", _("will retry")
    DEFERRED = "deferred", _("deferred (quota)")
    FAILED = "failed", _("failed")
    FAILED_OVER = "failed_over", _("failed over to SMTP")


class Attempt(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    transport = models.CharField(max_length=10, choices=Transport.choices)
    outcome = models.CharField(max_length=12, choices=AttemptOutcome.choices)
    recipients = models.PositiveIntegerField(default=0)
    ses_message_ids = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["started_at"]

    def __str__(self) -> str:
        return f"{self.transport} {self.outcome} at {self.started_at:%Y-%m-%d %H:%M:%S}"
