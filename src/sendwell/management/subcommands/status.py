"""``manage.py sendwell status [--json]``: messages by status, and for each SES account where its
limits come from (SES, settings, learned, unknown), the rate in force and the learned rate."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Count

from sendwell import pacing
from sendwell.models import Message

NAME = "status"
HELP = "messages by status, and the limits in force"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    counts = dict(
        Message.objects.order_by()
        .values_list("status")
        .annotate(count=Count("pk"))
        .values_list("status", "count")
    )
    accounts = pacing.account_pacing()
    if options["json"]:
        data = {"messages": counts, "accounts": [account.to_json() for account in accounts]}
        command.stdout.write(json.dumps(data, indent=2, sort_keys=True))
        return
    for status, count in sorted(counts.items()):
        command.stdout.write(f"{status:>10}: {count}")
    for account in accounts:
        command.stdout.write(account.describe())
