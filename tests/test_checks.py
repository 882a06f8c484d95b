"""System checks: `manage.py check` reports configuration mistakes with ids and hints."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tests.mailers import HAS_MAILERS, SES, SMTP, mailer_settings

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


def test_sendwell_settings_as_documented_have_no_messages() -> None:
    from sendwell.conf import DEFAULTS  # noqa: PLC0415

    settings = {**DEFAULTS, "MAX_SEND_RATE": 14, "MAX_24_HOUR_SEND": 50_000}
    with mailer_settings(SES, region_name="eu-west-1"), override_settings(SENDWELL=settings):
        assert sendwell_messages() == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"SYNC_CONCURENCY": 4}, "'SYNC_CONCURENCY'] is not a sendwell setting"),
        ({"SYNC_CONCURRENCY": 0}, "'SYNC_CONCURRENCY'] = 0 is not a whole number >= 1"),
        ({"MAX_ATTEMPTS": "eight"}, "'MAX_ATTEMPTS'] = 'eight' is not a whole number >= 1"),
        ({"CONCURRENCY": True}, "'CONCURRENCY'] = True is not a whole number >= 1"),
        ({"RATE_FRACTION": 1.5}, "'RATE_FRACTION'] = 1.5 is not a number above 0 and at most 1"),
        ({"MAX_SEND_RATE": -1}, "'MAX_SEND_RATE'] = -1 is not None (read it from SES)"),
        ({"SYNC_MAX_WAIT": float("nan")}, "'SYNC_MAX_WAIT'] = nan is not a number of seconds"),
        ({"RATE_LIMITER": "memcached"}, "'RATE_LIMITER'] = 'memcached' is not one of 'database'"),
        ({"RATE_LIMITER": "redis"}, "'RATE_LIMITER'] is 'redis' but SENDWELL['REDIS_URL'] is not"),
    ],
)
def test_bad_sendwell_settings_are_errors_with_a_hint(
    settings: dict[str, object], expected: str
) -> None:
    with mailer_settings(SES, region_name="eu-west-1"), override_settings(SENDWELL=settings):
        [message] = sendwell_messages()
    assert message.id == "sendwell.E012"
    assert expected in message.msg
    assert message.hint


def test_a_bad_redis_url_is_not_echoed() -> None:
    url = {"url": f"redis://:{SECRET}@127.0.0.1:6379/0"}  # a dict by mistake, password inside
    with (
        mailer_settings(SES, region_name="eu-west-1"),
        override_settings(SENDWELL={"RATE_LIMITER": "redis", "REDIS_URL": url}),
    ):
        [message] = sendwell_messages()
    assert "REDIS_URL'] = a dict is not a string or None" in message.msg
    assert SECRET not in message.msg + str(message.hint)


def test_bad_ses_timeout_setting_is_named() -> None:
    with mailer_settings(SES, region_name="eu-west-1", read_timeout="soon"):
        [message] = sendwell_messages()
    assert message.id == "sendwell.E014"  # was E007 with booleans and unknown options (issue 8)
    expected = "OPTIONS['read_timeout']" if HAS_MAILERS else "AWS_SES_READ_TIMEOUT"
    assert f"{expected}='soon' is not a positive number of seconds" in message.msg


def outbox_with_ses(**ses: object) -> override_settings:
    """The outbox as the default mailer, delivering through SES with these options."""
    ses = {"region_name": "eu-west-1", **ses}
    if HAS_MAILERS:
        outbox = {
            "BACKEND": "sendwell.backends.OutboxBackend",
            "OPTIONS": {"ses": ses, "smtp": None, "failover": False},
        }
        return override_settings(MAILERS={"default": outbox})
    from sendwell.conf import CLASSIC_SES_SETTINGS  # noqa: PLC0415  RemovedInSendwellDjango52

    return override_settings(
        EMAIL_BACKEND="sendwell.backends.OutboxBackend",
        SENDWELL_TRANSPORT="ses",
        **{CLASSIC_SES_SETTINGS[key]: value for key, value in ses.items()},
    )


def test_lease_shorter_than_one_ses_call_is_a_warning() -> None:
    with outbox_with_ses(), override_settings(SENDWELL={"LEASE_SECONDS": 30}):
        [message] = sendwell_messages()
    assert message.id == "sendwell.W002"
    assert "LEASE_SECONDS']=30 is not longer than one SES call" in message.msg
    assert "(5 s to connect + 30 s to read) = 35 s" in message.msg
    assert "above 35" in str(message.hint)
    # Lower timeouts fit the same lease; so does the default lease (120 s) the default timeouts.
    with outbox_with_ses(read_timeout=10), override_settings(SENDWELL={"LEASE_SECONDS": 30}):
        assert sendwell_messages() == []
    with outbox_with_ses():
        assert sendwell_messages() == []


def test_the_settings_reference_in_the_docs_is_the_settings_table() -> None:
    """docs/settings.md is generated from sendwell.settings_table: every setting is documented,
    with its real default, and nothing else."""
    from pathlib import Path  # noqa: PLC0415

    from sendwell import conf, settings_table  # noqa: PLC0415

    docs = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    start = docs.index("<!-- settings table: start -->\n") + len("<!-- settings table: start -->\n")
    table = docs[start : docs.index("<!-- settings table: end -->")]
    assert table == settings_table.markdown(), "run: python -m sendwell.settings_table"
    assert {s.name: s.default for s in settings_table.SETTINGS} == conf.DEFAULTS


def test_every_check_id_has_one_meaning_in_the_registry_and_the_docs() -> None:
    """sendwell.check_ids lists every id the code reports (one meaning each), and the table in
    docs/configuration.md is that registry."""
    import re  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from sendwell import check_ids  # noqa: PLC0415

    root = Path(__file__).resolve().parent.parent
    used = {
        match
        for path in (root / "src" / "sendwell").rglob("*.py")
        if path.name != "check_ids.py"
        for match in re.findall(r"sendwell\.[EW]\d{3}", path.read_text())
    }
    assert used <= set(check_ids.CHECK_IDS), (
        f"not in the registry: {used - set(check_ids.CHECK_IDS)}"
    )
    docs = (root / "docs" / "configuration.md").read_text()
    start = docs.index("<!-- check ids: start -->\n") + len("<!-- check ids: start -->\n")
    assert docs[start : docs.index("<!-- check ids: end -->")] == check_ids.markdown()
