"""``manage.py sendwell <subcommand>``: sendwell's operations, one module per subcommand
(:mod:`sendwell.management.subcommands`); ``manage.py sendwell <subcommand> --help`` for each."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sendwell.management.subcommands import SUBCOMMANDS


class Command(BaseCommand):
    help = "sendwell operations: " + ", ".join(sub.NAME for sub in SUBCOMMANDS) + "."

    def add_arguments(self, parser: ArgumentParser) -> None:
        # CommandParser for the subparsers too: a usage error prints the subcommand's usage and
        # exits 2 (raises CommandError under call_command) instead of Django's traceback.
        commands = parser.add_subparsers(
            dest="subcommand", required=True, parser_class=CommandParser
        )
        for sub in SUBCOMMANDS:
            sub.add_arguments(commands.add_parser(sub.NAME, help=sub.HELP, description=sub.HELP))

    def handle(self, *args: Any, **options: Any) -> None:
        by_name = {sub.NAME: sub for sub in SUBCOMMANDS}
        by_name[options["subcommand"]].handle(self, options)
