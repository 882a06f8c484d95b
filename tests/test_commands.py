"""``manage.py sendwell``: one module per subcommand, each with its own arguments and help."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from sendwell.management.commands.sendwell import Command
from sendwell.management.subcommands import SUBCOMMANDS


def test_every_registered_subcommand_is_offered_with_its_help() -> None:
    parser = Command().create_parser("manage.py", "sendwell")
    usage = " ".join(parser.format_help().split())  # argparse wraps long lines
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


# --- retry and cancel: the admin's operations from the command line ----------------------------


def test_retry_and_cancel_act_like_the_admin_actions() -> None:
    import json  # noqa: PLC0415
    from io import StringIO  # noqa: PLC0415

    from sendwell.models import Message, MessageStatus  # noqa: PLC0415
    from tests.test_admin import DUMMY_TASKS, make_message  # noqa: PLC0415

    failed = make_message(MessageStatus.FAILED, {"a@example.net": "failed"}, next_attempt_at=None)
    sent = make_message(MessageStatus.SENT, {"b@example.net": "sent"}, next_attempt_at=None)
    queued = make_message(MessageStatus.QUEUED)
    with override_settings(TASKS={"default": {"BACKEND": DUMMY_TASKS}}):
        out = StringIO()
        call_command("sendwell", "retry", "--failed", str(sent.pk), "--json", stdout=out)
        assert json.loads(out.getvalue()) == {"requeued": 1, "skipped": {"sent": 1}}
        out = StringIO()
        call_command("sendwell", "cancel", str(queued.pk), str(sent.pk), stdout=out)
    assert out.getvalue().strip() == "cancelled 1; left alone: 1 sent"
    assert Message.objects.get(pk=failed.pk).status == MessageStatus.QUEUED
    assert Message.objects.get(pk=queued.pk).status == MessageStatus.CANCELLED
    assert Message.objects.get(pk=sent.pk).status == MessageStatus.SENT


def test_retry_needs_something_to_retry() -> None:
    with pytest.raises(CommandError, match="pass --failed"):
        call_command("sendwell", "retry")
