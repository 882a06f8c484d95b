"""``manage.py sendwell sweep [--every N]``: keep the outbox moving.

Wakes a worker for anything overdue (a lost task, an expired claim) and prunes old rate
counters; ``--every N`` repeats it every N seconds (run it beside the workers, or from cron
without ``--every``).
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from sendwell import tasks

NAME = "sweep"
HELP = "re-enqueue overdue delivery, prune counters"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--every", type=float, default=None, help="repeat every N seconds")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    every: float | None = options["every"]
    while True:
        result = tasks.sweep()
        command.stdout.write(
            f"sweep: woke={result['woken']} pruned_counters={result['pruned_counters']}"
        )
        if every is None:
            return
        time.sleep(every)
