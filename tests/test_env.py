"""email_settings(): the guide's environment variables -> Django settings, and every mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sendwell.env import SES_BACKEND, SMTP_BACKEND, EnvironmentConfigError, email_settings
from sendwell.options import SecretStr
from tests.mailers import HAS_MAILERS

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def ses_settings(result: dict[str, Any]) -> dict[str, Any]:
    """The SES options, read from MAILERS (6.1) or the classic settings (5.2)."""
    if HAS_MAILERS:
        assert result["MAILERS"]["default"]["BACKEND"] == SES_BACKEND
        return dict(result["MAILERS"]["default"]["OPTIONS"])
    assert result["EMAIL_BACKEND"] == SES_BACKEND
    return {
        "region_name": result["AWS_SES_REGION_NAME"],
        "access_key_id": result["AWS_ACCESS_KEY_ID"],
        "secret_access_key": result["AWS_SECRET_ACCESS_KEY"],
        "configuration_set": result["AWS_SES_CONFIGURATION_SET"],
        "use_ses_v2": result["USE_SES_V2"],
        "endpoint_url": result["AWS_SES_ENDPOINT_URL"],
    }


def problems(environ: dict[str, str]) -> str:
    with pytest.raises(EnvironmentConfigError) as excinfo:
        email_settings(environ=environ)
    return str(excinfo.value)


def test_iam_role_variant_needs_only_two_variables() -> None:
    result = email_settings(environ={"USE_SES": "True", "AWS_SES_REGION_NAME": "eu-west-1"})
    options = ses_settings(result)
    assert options["region_name"] == "eu-west-1"
    assert options.get("access_key_id") is None
    assert options.get("secret_access_key") is None
    assert options.get("use_ses_v2", True) is True
    assert options.get("configuration_set") is None


def test_iam_user_variant_with_keys_and_configuration_set() -> None:
    result = email_settings(
        environ={
            "USE_SES": "true",
            "AWS_SES_REGION_NAME": "us-east-1",
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SES_CONFIGURATION_SET": "production-tracking",
            "USE_SES_V2": "False",
            "DEFAULT_FROM_EMAIL": "Example <noreply@example.com>",
        }
    )
    options = ses_settings(result)
    assert options["access_key_id"] == "AKIAIOSFODNN7EXAMPLE"
    assert options["secret_access_key"] == SECRET
    assert isinstance(options["secret_access_key"], SecretStr)
    assert options["configuration_set"] == "production-tracking"
    assert options["use_ses_v2"] is False
    assert result["DEFAULT_FROM_EMAIL"] == "Example <noreply@example.com>"
    assert SECRET not in repr(result)


def test_empty_configuration_set_means_none() -> None:
    result = email_settings(
        environ={
            "USE_SES": "1",
            "AWS_SES_REGION_NAME": "eu-west-1",
            "AWS_SES_CONFIGURATION_SET": "",
        }
    )
    assert ses_settings(result).get("configuration_set") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("True", True), ("yes", True), ("1", True), ("YES", True), ("false", False), ("No", False)],
)
def test_booleans_in_any_case(value: str, expected: bool) -> None:
    result = email_settings(
        environ={"USE_SES": "1", "AWS_SES_REGION_NAME": "eu-west-1", "USE_SES_V2": value}
    )
    assert ses_settings(result).get("use_ses_v2", True) is expected


def test_endpoint_url_variables_point_at_a_local_endpoint() -> None:
    base = {"USE_SES": "1", "AWS_SES_REGION_NAME": "us-east-1"}
    generic = email_settings(environ={**base, "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert ses_settings(generic)["endpoint_url"] == "http://127.0.0.1:5000"
    specific = email_settings(
        environ={
            **base,
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "AWS_ENDPOINT_URL_SESV2": "http://127.0.0.1:5002",
            "AWS_ENDPOINT_URL_SES": "http://127.0.0.1:5001",
        }
    )
    assert ses_settings(specific)["endpoint_url"] == "http://127.0.0.1:5002"
    v1 = email_settings(
        environ={**base, "USE_SES_V2": "no", "AWS_ENDPOINT_URL_SES": "http://127.0.0.1:5001"}
    )
    assert ses_settings(v1)["endpoint_url"] == "http://127.0.0.1:5001"


def test_smtp_variant() -> None:
    result = email_settings(
        environ={
            "USE_SES": "False",
            "EMAIL_HOST": "email-smtp.eu-west-1.amazonaws.com",
            "EMAIL_PORT": "587",
            "EMAIL_USE_TLS": "True",
            "EMAIL_HOST_USER": "AKIAIOSFODNN7EXAMPLE",
            "EMAIL_HOST_PASSWORD": SECRET,
            "EMAIL_TIMEOUT": "10",
        }
    )
    if HAS_MAILERS:
        mailer = result["MAILERS"]["default"]
        assert mailer["BACKEND"] == SMTP_BACKEND
        assert mailer["OPTIONS"] == {
            "host": "email-smtp.eu-west-1.amazonaws.com",
            "port": 587,
            "use_tls": True,
            "use_ssl": False,
            "username": "AKIAIOSFODNN7EXAMPLE",
            "password": SECRET,
            "timeout": 10.0,
        }
    else:
        assert result["EMAIL_BACKEND"] == SMTP_BACKEND
        assert result["EMAIL_HOST"] == "email-smtp.eu-west-1.amazonaws.com"
        assert result["EMAIL_PORT"] == 587
        assert result["EMAIL_USE_TLS"] is True
        assert result["EMAIL_HOST_PASSWORD"] == SECRET
    assert SECRET not in repr(result)


def test_ses_with_smtp_settings_keeps_the_smtp_settings_for_failover() -> None:
    result = email_settings(
        environ={"USE_SES": "True", "AWS_SES_REGION_NAME": "eu-west-1", "EMAIL_HOST": "smtp.x.org"}
    )
    if HAS_MAILERS:
        assert result["MAILERS"]["smtp"]["BACKEND"] == SMTP_BACKEND
        assert result["MAILERS"]["smtp"]["OPTIONS"]["host"] == "smtp.x.org"
    else:
        assert result["EMAIL_BACKEND"] == SES_BACKEND
        assert result["EMAIL_HOST"] == "smtp.x.org"


def test_unset_use_ses_means_smtp_with_djangos_defaults() -> None:
    result = email_settings(environ={})
    if HAS_MAILERS:
        assert result["MAILERS"]["default"]["OPTIONS"]["host"] == "localhost"
    else:
        assert result["EMAIL_BACKEND"] == SMTP_BACKEND


def test_invalid_boolean_names_the_variable() -> None:
    text = problems({"USE_SES": "maybe"})
    assert "USE_SES='maybe' is not a boolean" in text
    assert "Write USE_SES=True or USE_SES=False" in text


def test_missing_region_names_the_variable() -> None:
    text = problems({"USE_SES": "True"})
    assert "[sendwell.E001] AWS_SES_REGION_NAME is not set" in text


def test_malformed_region() -> None:
    assert "is not an AWS region name" in problems(
        {"USE_SES": "1", "AWS_SES_REGION_NAME": "eu-west1"}
    )


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
    ],
)
def test_only_one_key_is_an_error_that_never_shows_the_secret(given: str, missing: str) -> None:
    text = problems({"USE_SES": "1", "AWS_SES_REGION_NAME": "eu-west-1", given: SECRET})
    assert f"{given} is set but {missing} is not" in text
    assert "remove both so boto3 uses the IAM role" in text
    assert SECRET not in text


def test_non_integer_port() -> None:
    text = problems({"EMAIL_PORT": "five-eight-seven"})
    assert "EMAIL_PORT='five-eight-seven' is not a whole number" in text


def test_tls_and_ssl_both_on() -> None:
    text = problems({"EMAIL_USE_TLS": "True", "EMAIL_USE_SSL": "True"})
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL are both on" in text
    assert "Choose one" in text


def test_every_problem_is_reported_at_once() -> None:
    text = problems({"USE_SES": "True", "USE_SES_V2": "perhaps", "EMAIL_PORT": "x"})
    assert "AWS_SES_REGION_NAME" in text
    assert "USE_SES_V2" in text
    assert "EMAIL_PORT" in text


def test_bad_password_boolean_never_echoes_a_secret() -> None:
    text = problems({"EMAIL_PORT": "x", "EMAIL_HOST_PASSWORD": SECRET})
    assert SECRET not in text


def test_error_is_improperly_configured_and_value_error() -> None:
    from django.core.exceptions import ImproperlyConfigured  # noqa: PLC0415

    with pytest.raises(ImproperlyConfigured):
        email_settings(environ={"USE_SES": "maybe"})
    with pytest.raises(ValueError):
        email_settings(environ={"USE_SES": "maybe"})


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# production\nUSE_SES=True\nAWS_SES_REGION_NAME=eu-west-1\n"
        'AWS_SES_CONFIGURATION_SET="from-file"\n'
    )
    from_file = email_settings(environ={}, env_file=env_file)
    assert ses_settings(from_file)["configuration_set"] == "from-file"
    overridden = email_settings(environ={"AWS_SES_REGION_NAME": "us-west-2"}, env_file=env_file)
    assert ses_settings(overridden)["region_name"] == "us-west-2"


def test_missing_env_file_is_not_an_error(tmp_path: Path) -> None:
    result = email_settings(environ={"USE_SES": "0"}, env_file=tmp_path / "absent.env")
    assert result


def test_environ_mapping_is_used_instead_of_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USE_SES", "True")
    monkeypatch.setenv("AWS_SES_REGION_NAME", "eu-west-1")
    result = email_settings(environ={"USE_SES": "False"})
    backend = result["MAILERS"]["default"]["BACKEND"] if HAS_MAILERS else result["EMAIL_BACKEND"]
    assert backend == SMTP_BACKEND
    # ...and os.environ is the default.
    assert ses_settings(email_settings())["region_name"] == "eu-west-1"


def test_settings_from_email_settings_work_in_django(monkeypatch: pytest.MonkeyPatch) -> None:
    """The returned dict is accepted by Django as settings and yields the right mailer."""
    from django.test import override_settings  # noqa: PLC0415

    from sendwell.backends import SESBackend  # noqa: PLC0415
    from tests.mailers import get_mailer  # noqa: PLC0415

    result = email_settings(environ={"USE_SES": "True", "AWS_SES_REGION_NAME": "eu-west-1"})
    with override_settings(**result):
        mailer = get_mailer()
    assert isinstance(mailer, SESBackend)
    assert mailer.options.region_name == "eu-west-1"


def test_email_queue_makes_the_outbox_the_default_mailer() -> None:
    from sendwell.env import OUTBOX_BACKEND  # noqa: PLC0415

    result = email_settings(
        environ={"USE_SES": "True", "AWS_SES_REGION_NAME": "eu-west-1", "EMAIL_QUEUE": "yes"}
    )
    if HAS_MAILERS:
        mailer = result["MAILERS"]["default"]
        assert mailer["BACKEND"] == OUTBOX_BACKEND
        assert mailer["OPTIONS"]["ses"]["region_name"] == "eu-west-1"
        assert mailer["OPTIONS"]["smtp"] is None
        assert mailer["OPTIONS"]["failover"] is False
    else:
        assert result["EMAIL_BACKEND"] == OUTBOX_BACKEND
        assert result["SENDWELL_TRANSPORT"] == "ses"


def test_email_failover_needs_ses_smtp_and_the_queue() -> None:
    text = problems({"USE_SES": "True", "AWS_SES_REGION_NAME": "eu-west-1", "EMAIL_FAILOVER": "1"})
    assert (
        "[sendwell.E011] EMAIL_FAILOVER=True needs USE_SES=True, EMAIL_HOST and EMAIL_QUEUE" in text
    )
    result = email_settings(
        environ={
            "USE_SES": "True",
            "AWS_SES_REGION_NAME": "eu-west-1",
            "EMAIL_QUEUE": "True",
            "EMAIL_FAILOVER": "True",
            "EMAIL_HOST": "smtp.example.com",
            "EMAIL_PORT": "587",
            "EMAIL_USE_TLS": "True",
        }
    )
    if HAS_MAILERS:
        options = result["MAILERS"]["default"]["OPTIONS"]
        assert options["failover"] is True
        assert options["smtp"]["host"] == "smtp.example.com"
        assert options["smtp"]["port"] == 587
    else:
        assert result["SENDWELL_TRANSPORT"] == "failover"


def test_ses_timeouts_from_the_environment_reach_the_client() -> None:
    from django.test import override_settings  # noqa: PLC0415

    from sendwell import aws  # noqa: PLC0415
    from tests.mailers import get_mailer  # noqa: PLC0415

    result = email_settings(
        environ={
            "USE_SES": "True",
            "AWS_SES_REGION_NAME": "eu-west-1",
            "AWS_SES_CONNECT_TIMEOUT": "2",
            "AWS_SES_READ_TIMEOUT": "10.5",
        }
    )
    with override_settings(**result):
        options = get_mailer().options
    assert (options.connect_timeout, options.read_timeout) == (2.0, 10.5)
    config = aws.ses_client(options).meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 10.5)


def test_unset_ses_timeouts_keep_the_defaults() -> None:
    from django.test import override_settings  # noqa: PLC0415

    from tests.mailers import get_mailer  # noqa: PLC0415

    result = email_settings(environ={"USE_SES": "True", "AWS_SES_REGION_NAME": "eu-west-1"})
    with override_settings(**result):
        options = get_mailer().options
    assert (options.connect_timeout, options.read_timeout) == (5.0, 30.0)


def test_bad_ses_timeouts_name_the_variable() -> None:
    text = problems(
        {
            "USE_SES": "True",
            "AWS_SES_REGION_NAME": "eu-west-1",
            "AWS_SES_CONNECT_TIMEOUT": "0",
            "AWS_SES_READ_TIMEOUT": "soon",
        }
    )
    assert "AWS_SES_CONNECT_TIMEOUT=0.0 is not a positive number of seconds" in text
    assert "AWS_SES_READ_TIMEOUT='soon' is not a number" in text
