"""``manage.py sendwell``: one module per subcommand, each with its own arguments and help."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sendwell.management.commands.sendwell import Command
from sendwell.management.subcommands import SUBCOMMANDS


def test_every_registered_subcommand_is_offered_with_its_help() -> None:
    parser = Command().create_parser("manage.py", "sendwell")
    usage = parser.format_help()
    for sub in SUBCOMMANDS:
        assert sub.NAME in usage
        assert sub.HELP in usage
    assert {sub.NAME for sub in SUBCOMMANDS} >= {"sweep", "drain", "status"}


def test_an_unknown_subcommand_is_a_usage_error() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'bogus'"):
        call_command("sendwell", "bogus")


def test_a_subcommand_rejects_an_option_it_does_not_have() -> None:
    with pytest.raises(CommandError, match="unrecognized arguments: --every"):
        call_command("sendwell", "status", "--every", "5")
