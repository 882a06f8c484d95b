"""``manage.py sendwell simulate bounce|complaint|delivery|delay --message ID [--recipient A]``:
feed SES's feedback for a recorded message through the feedback loop (a development aid)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sendwell.simulate import KINDS, SimulationError, simulate

NAME = "simulate"
HELP = "process a made-up SES bounce, complaint, delivery or delay for a sent message"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="the SES event to simulate")
    parser.add_argument("--message", type=int, required=True, help="the message's id")
    parser.add_argument("--recipient", help="one of its recipients (default: all of one call)")
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    try:
        notification = simulate(options["kind"], options["message"], options["recipient"])
    except SimulationError as error:
        raise CommandError(str(error)) from error
    events = list(notification.events.order_by("pk"))
    if options["json"]:
        data = {
            "notification": notification.sns_message_id,
            "events": [{"type": e.type, "address": e.address, "id": e.pk} for e in events],
            "suppressed": sorted({e.address for e in events if e.suppressions.exists()}),
        }
        command.stdout.write(json.dumps(data, sort_keys=True))
        return
    for event in events:
        suppressed = " -> suppressed" if event.suppressions.exists() else ""
        command.stdout.write(f"{event.type} {event.address}{suppressed}")
