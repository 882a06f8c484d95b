"""The subcommands of ``manage.py sendwell``, one module each, registered here in one place.

A subcommand module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``handle(command, options)``; ``command`` is the running Django ``BaseCommand`` (for its
``stdout``/``stderr`` and styles). To add one: write the module, add it to ``SUBCOMMANDS``.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any, Protocol

from django.core.management.base import BaseCommand

from sendwell.management.subcommands import (
    cancel,
    drain,
    prune,
    retry,
    simulate,
    status,
    suppression,
    sweep,
)


class Subcommand(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: ArgumentParser) -> None: ...

    def handle(self, command: BaseCommand, options: dict[str, Any]) -> None: ...


SUBCOMMANDS: tuple[Subcommand, ...] = (
    status,
    drain,
    sweep,
    retry,
    cancel,
    suppression,
    simulate,
    prune,
)
