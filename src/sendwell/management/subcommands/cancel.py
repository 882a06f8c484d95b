"""``manage.py sendwell cancel ID ... [--json]``: stop queued or deferred messages, as the
admin's action does (:func:`sendwell.operations.cancel_messages`); never one a worker holds."""

from __future__ import annotations

import getpass
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from sendwell import operations
from sendwell.management.subcommands.retry import report

NAME = "cancel"
HELP = "cancel queued/deferred messages (never one being sent)"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("ids", nargs="+", type=int, help="message ids")
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    by = f"{getpass.getuser()} (manage.py sendwell cancel)"
    result = operations.cancel_messages(options["ids"], by=by)
    report(command, result, "cancelled", as_json=options["json"])
