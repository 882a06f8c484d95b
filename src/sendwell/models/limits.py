"""What delivery shares across workers: the send schedule, counters, limits, the circuit breaker
and the outbox's wake-up."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class RateBucket(models.Model):
    """The shared send schedule: the earliest time the next recipient may be sent.

    ``next_free`` moves with one atomic UPDATE per reservation. ``learned`` is the send rate
    learned from SES's answers when the account's limits cannot be read
    (:class:`sendwell.ratecontrol.RateState` as JSON), changed by compare-and-swap on
    ``learned_version``: it outlives restarts, and every worker of the account shares it.
    """

    name = models.CharField(max_length=100, primary_key=True)
    next_free = models.FloatField(default=0.0)  # a Unix timestamp
    version = models.BigIntegerField(default=0)
    learned = models.TextField(blank=True, default="")
    learned_version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class SendCounter(models.Model):
    """Recipients sent per minute, for the rolling 24-hour quota."""

    bucket = models.CharField(max_length=100)
    minute = models.BigIntegerField()  # Unix time // 60
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "minute"], name="sendwell_counter_minute")
        ]

    def __str__(self) -> str:
        return f"{self.bucket}@{self.minute}: {self.recipients}"


class AccountQuota(models.Model):
    """The SES account's limits as last read from SES (GetAccount / GetSendQuota).

    SES's numbers as given (``max_24_hour_send`` -1: unlimited); both NULL when they could not be
    read, with the cause in ``error``.
    """

    name = models.CharField(max_length=100, primary_key=True)
    max_send_rate = models.FloatField(null=True, blank=True)
    max_24_hour_send = models.FloatField(null=True, blank=True)
    sent_last_24_hours = models.FloatField(default=0)
    production_access = models.BooleanField(null=True)
    fetched_at = models.DateTimeField()
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        if self.max_send_rate is None:
            return f"{self.name}: unknown ({self.error})"
        return f"{self.name}: {self.max_send_rate:g}/s, {self.max_24_hour_send:g}/24h"


class CircuitState(models.Model):
    """Consecutive retryable SES failures, shared by every worker, for failover to SMTP."""

    name = models.CharField(max_length=100, primary_key=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    open_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.consecutive_failures} failures"

    def is_open(self, now: Any = None) -> bool:
        return self.open_until is not None and self.open_until > (now or timezone.now())


class Wakeup(models.Model):
    """The one future delivery task the outbox has scheduled, so that every drain does not add
    its own (which would multiply tasks for each deferred message)."""

    name = models.CharField(max_length=100, primary_key=True)
    run_after = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.run_after}"
