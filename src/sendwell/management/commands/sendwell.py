"""``manage.py sendwell <subcommand>``: operations on the outbox.

- ``sweep``: wake a worker for anything overdue (a lost task, an expired claim) and prune old
  rate counters; ``--every N`` repeats it every N seconds (run it beside the workers, or from
  cron without ``--every``).
- ``drain``: deliver due messages in this process, without a task worker (scripts, debugging).
- ``status``: counts of messages by status, and the account limits in force.
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from sendwell import tasks, worker
from sendwell.models import AccountQuota, Message


class Command(BaseCommand):
    help = "sendwell outbox operations: sweep, drain, status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True)
        sweep = commands.add_parser("sweep", help="re-enqueue overdue delivery, prune counters")
        sweep.add_argument("--every", type=float, default=None, help="repeat every N seconds")
        drain = commands.add_parser("drain", help="deliver due messages in this process")
        drain.add_argument("--time-budget", type=float, default=None)
        drain.add_argument("--concurrency", type=int, default=None)
        commands.add_parser("status", help="messages by status, and the limits in force")

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
            self._status()
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

    def _status(self) -> None:
        counts = dict(
            Message.objects.order_by()
            .values_list("status")
            .annotate(count=Count("pk"))
            .values_list("status", "count")
        )
        for status, count in sorted(counts.items()):
            self.stdout.write(f"{status:>10}: {count}")
        for quota in AccountQuota.objects.all():
            note = f" (fallback: {quota.error})" if quota.error else ""
            self.stdout.write(
                f"{quota.name}: {quota.max_send_rate:g}/s, {quota.max_24_hour_send:g} per 24 h, "
                f"read {quota.fetched_at:%Y-%m-%d %H:%M:%S}{note}"
            )
