"""``manage.py sendwell retry (ID ... | --failed) [--json]``: send failed or deferred messages
again, as the admin's action does (:func:`sendwell.operations.retry_messages`)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sendwell import operations
from sendwell.models import Message, MessageStatus

NAME = "retry"
HELP = "requeue failed/deferred messages (never a recipient already sent to)"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", type=int, help="message ids")
    parser.add_argument("--failed", action="store_true", help="every failed message")
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    ids: list[int] = list(options["ids"])
    if options["failed"]:
        failed = Message.objects.filter(status=MessageStatus.FAILED)
        ids += list(failed.values_list("pk", flat=True))
    if not ids:
        raise CommandError("name the messages to retry (their ids), or pass --failed")
    report(command, operations.retry_messages(ids), "requeued", as_json=options["json"])


def report(
    command: BaseCommand, result: operations.ActionResult, verb: str, *, as_json: bool
) -> None:
    """Print what an operation changed and what it left alone (shared with ``cancel``)."""
    if as_json:
        data = {verb: result.changed, "skipped": dict(result.skipped)}
        command.stdout.write(json.dumps(data, sort_keys=True))
        return
    skipped = ", ".join(f"{n} {status}" for status, n in sorted(result.skipped.items()))
    command.stdout.write(
        f"{verb} {result.changed}" + (f"; left alone: {skipped}" if skipped else "")
    )
