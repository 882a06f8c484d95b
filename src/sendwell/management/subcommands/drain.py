"""``manage.py sendwell drain``: deliver due messages in this process, without a task worker
(scripts, debugging)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from sendwell import worker

NAME = "drain"
HELP = "deliver due messages in this process"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--time-budget", type=float, default=None, help="seconds at most")
    parser.add_argument("--concurrency", type=int, default=None, help="sending threads")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    results = worker.drain(time_budget=options["time_budget"], concurrency=options["concurrency"])
    command.stdout.write(" ".join(f"{k}={v}" for k, v in sorted(results.items())))
