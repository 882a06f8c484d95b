"""``manage.py sendwell <subcommand>``: operations on the outbox.

- ``sweep``: wake a worker for anything overdue (a lost task, an expired claim) and prune old
  rate counters; ``--every N`` repeats it every N seconds (run it beside the workers, or from
  cron without ``--every``).
- ``drain``: deliver due messages in this process, without a task worker (scripts, debugging).
- ``status``: counts of messages by status, and for each SES account where its limits come from
  (SES, settings, learned, unknown), the rate in force and the learned rate; ``--json`` for
  scripts.
"""

from __future__ import annotations

import json
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from sendwell import pacing, tasks, worker
from sendwell.models import Message


class Command(BaseCommand):
    help = "sendwell outbox operations: sweep, drain, status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True)
        sweep = commands.add_parser("sweep", help="re-enqueue overdue delivery, prune counters")
        sweep.add_argument("--every", type=float, default=None, help="repeat every N seconds")
        drain = commands.add_parser("drain", help="deliver due messages in this process")
        drain.add_argument("--time-budget", type=float, default=None)
        drain.add_argument("--concurrency", type=int, default=None)
        status = commands.add_parser("status", help="messages by status, and the limits in force")
        status.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand = options["subcommand"]
        if subcommand == "sweep":
            self._sweep(options["every"])
        elif subcommand == "drain":
            results = worker.drain(
                time_budget=options["time_budget"], concurrency=options["concurrency"]
            )
            self.stdout.write(" ".join(f"{k}={v}" for k, v in sorted(results.items())))
        elif subcommand == "status":
            self._status(as_json=options["json"])
        else:  # pragma: no cover - argparse refuses unknown subcommands
            raise CommandError(f"unknown subcommand {subcommand!r}")

    def _sweep(self, every: float | None) -> None:
        while True:
            result = tasks.sweep()
            self.stdout.write(
                f"sweep: woke={result['woken']} pruned_counters={result['pruned_counters']}"
            )
            if every is None:
                return
            time.sleep(every)

    def _status(self, *, as_json: bool) -> None:
        counts = dict(
            Message.objects.order_by()
            .values_list("status")
            .annotate(count=Count("pk"))
            .values_list("status", "count")
        )
        accounts = pacing.account_pacing()
        if as_json:
            data = {"messages": counts, "accounts": [account.to_json() for account in accounts]}
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True))
            return
        for status, count in sorted(counts.items()):
            self.stdout.write(f"{status:>10}: {count}")
        for account in accounts:
            self.stdout.write(account.describe())
