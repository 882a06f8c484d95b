"""System checks: `manage.py check` reports configuration mistakes with ids and hints."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tests.mailers import SES, SMTP, mailer_settings

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def sendwell_messages() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if str(m.id).startswith("sendwell.")]


def ids() -> list[str]:
    return sorted(str(m.id) for m in sendwell_messages())


def test_valid_ses_configuration_has_no_messages() -> None:
    with mailer_settings(SES, region_name="eu-west-1"):
        assert sendwell_messages() == []


def test_missing_region() -> None:
    with mailer_settings(SES, configuration_set="tracking"):
        [message] = sendwell_messages()
    assert message.id == "sendwell.E001"
    assert "is not set" in message.msg
    assert "eu-west-1" in str(message.hint)


def test_one_key_only_never_shows_the_secret() -> None:
    with mailer_settings(SES, region_name="eu-west-1", secret_access_key=SECRET):
        messages = sendwell_messages()
    assert [m.id for m in messages] == ["sendwell.E002"]
    assert SECRET not in messages[0].msg + str(messages[0].hint)


def test_bad_configuration_set_and_endpoint() -> None:
    with mailer_settings(
        SES, region_name="eu-west-1", configuration_set="has space", endpoint_url="localhost:5"
    ):
        assert ids() == ["sendwell.E003", "sendwell.E008"]


def test_smtp_tls_and_ssl_both_on_and_bad_port(tmp_path: Path) -> None:
    with mailer_settings(
        SMTP,
        host="smtp.example.com",
        port=70000,
        use_tls=True,
        use_ssl=True,
        ssl_cafile=str(tmp_path / "missing.pem"),
    ):
        assert ids() == ["sendwell.E004", "sendwell.E005", "sendwell.E006"]


def test_localhost_sender_warning_for_ses() -> None:
    with (
        mailer_settings(SES, region_name="eu-west-1"),
        override_settings(DEFAULT_FROM_EMAIL="webmaster@localhost"),
    ):
        [message] = sendwell_messages()
    assert message.id == "sendwell.W001"
    assert message.level == checks.WARNING


def test_manage_py_check_fails_with_the_hint() -> None:
    with mailer_settings(SES), pytest.raises(SystemCheckError) as excinfo:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "sendwell.E001" in str(excinfo.value)
    assert "HINT" in str(excinfo.value)


def test_outbox_options_are_checked() -> None:
    from tests.mailers import HAS_MAILERS  # noqa: PLC0415

    if HAS_MAILERS:
        outbox = {
            "BACKEND": "sendwell.backends.OutboxBackend",
            "OPTIONS": {"ses": {"configuration_set": "x"}, "smtp": None, "failover": True},
        }
        with override_settings(MAILERS={"default": outbox}):
            assert ids() == ["sendwell.E001", "sendwell.E011"]
    else:  # RemovedInSendwellDjango52
        with override_settings(
            EMAIL_BACKEND="sendwell.backends.OutboxBackend", SENDWELL_TRANSPORT="fax"
        ):
            assert ids() == ["sendwell.E011"]
