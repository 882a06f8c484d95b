"""``manage.py sendwell prune [--days N] [--json]``: delete SES events and SNS notifications older
than ``EVENT_RETENTION_DAYS``, so the feedback tables stay bounded (run it daily)."""

from __future__ import annotations

import json
import math
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sendwell import conf
from sendwell.models import Event, Notification

NAME = "prune"
HELP = "delete SES events and SNS notifications older than EVENT_RETENTION_DAYS"
# Deleted in slices, so a large backlog never holds a long lock or one huge transaction.
SLICE = 5000


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--days", type=int, help="keep this many days (default: the setting)")
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    days = options["days"] if options["days"] is not None else conf.setting("EVENT_RETENTION_DAYS")
    window_days = float(conf.setting("TRANSIENT_BOUNCE_WINDOW")) / 86400
    if days < max(1.0, window_days):
        raise CommandError(
            f"--days must be at least {max(1, math.ceil(window_days))}: transient bounces are "
            f"counted over TRANSIENT_BOUNCE_WINDOW ({window_days:g} days), from these events"
        )
    before = timezone.now() - timedelta(days=days)
    # Events keep the suppressions they caused: Suppression.event is SET_NULL.
    counts = {
        "events": _delete(Event.objects.filter(received_at__lt=before)),
        "notifications": _delete(Notification.objects.filter(received_at__lt=before)),
    }
    if options["json"]:
        command.stdout.write(json.dumps({"days": days, **counts}, sort_keys=True))
    else:
        command.stdout.write(
            f"deleted {counts['events']} events and {counts['notifications']} notifications "
            f"older than {days} days"
        )


def _delete(rows: Any) -> int:
    total = 0
    while ids := list(rows.values_list("pk", flat=True)[:SLICE]):
        rows.model.objects.filter(pk__in=ids).delete()
        total += len(ids)
    return total
