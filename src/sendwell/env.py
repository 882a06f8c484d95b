"""Turn a production ``.env`` (and the process environment) into Django email settings.

Use it in a settings module::

    from sendwell.env import email_settings
    globals().update(email_settings(env_file=BASE_DIR / ".env"))

Real environment variables win over the ``.env`` file, so a platform (ECS task definition,
systemd unit, CI) can override what the file says. Every mistake found is reported at once, each
naming its variable and what to write instead, in one :class:`EnvironmentConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import django
from dotenv import dotenv_values

from sendwell.conf import CLASSIC_SES_SETTINGS, CLASSIC_SMTP_SETTINGS
from sendwell.exceptions import ConfigurationError
from sendwell.options import Problem, SecretStr, SESOptions, smtp_problems

SES_BACKEND = "sendwell.backends.SESBackend"
SMTP_BACKEND = "sendwell.backends.SMTPBackend"
OUTBOX_BACKEND = "sendwell.backends.OutboxBackend"

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# How SESOptions fields are spelled in the environment, for error messages: as the classic
# settings, except the endpoint, which comes from boto3's own variables.
_SES_VARIABLES = {
    **CLASSIC_SES_SETTINGS,
    "endpoint_url": "AWS_ENDPOINT_URL_SESV2 / AWS_ENDPOINT_URL_SES / AWS_ENDPOINT_URL",
}
_SECRET_VARIABLES = frozenset({"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "EMAIL_HOST_PASSWORD"})


class EnvironmentConfigError(ConfigurationError):
    """One or more email variables in the environment cannot be used."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"sendwell could not configure email from the environment:\n{lines}", remedy=""
        )


class _Reader:
    """Reads typed values from the merged variables, collecting problems instead of raising."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[Problem] = []

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def secret(self, name: str) -> SecretStr | None:
        value = self.text(name)
        return SecretStr(value) if value is not None else None

    def boolean(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.problems.append(
            Problem(
                "sendwell.E007",
                f"{name}={self._show(name, value)} is not a boolean",
                f"Write {name}=True or {name}=False (also accepted, in any case: 1/0, yes/no).",
            )
        )
        return default

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            self.problems.append(
                Problem(
                    "sendwell.E005",
                    f"{name}={self._show(name, value)} is not a whole number",
                    f"Write digits only, e.g. {name}=587.",
                )
            )
            return None

    def number(self, name: str) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            self.problems.append(
                Problem(
                    "sendwell.E005",
                    f"{name}={self._show(name, value)} is not a number",
                    f"Write a number of seconds, e.g. {name}=10.",
                )
            )
            return None

    @staticmethod
    def _show(name: str, value: str) -> str:
        return "'********'" if name in _SECRET_VARIABLES else repr(value)


def read_environment(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """The variables sendwell sees: the ``.env`` file's, overridden by ``environ``'s.

    A missing ``env_file`` is not an error: on ECS, Lambda or Kubernetes the variables usually come
    from the platform, and the same settings module must work there.
    """
    merged: dict[str, str] = {}
    if env_file is not None:
        path = Path(env_file)
        if path.exists():
            if not path.is_file():
                raise EnvironmentConfigError(
                    [
                        Problem(
                            "sendwell.E009",
                            f"env_file {str(path)!r} is not a file",
                            "Pass the path of a .env file, or None.",
                        )
                    ]
                )
            merged.update(
                {key: value for key, value in dotenv_values(path).items() if value is not None}
            )
    merged.update(os.environ if environ is None else environ)
    return merged


def email_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Django settings for email, from ``environ`` (default ``os.environ``) and ``env_file``.

    On Django 6.1 and later this returns ``MAILERS`` (the default mailer is SES or SMTP according
    to ``USE_SES``; with ``USE_SES=True`` and ``EMAIL_HOST`` set, an ``"smtp"`` mailer too). On
    Django 5.2 it returns ``EMAIL_BACKEND`` and the classic ``EMAIL_*`` / ``AWS_*`` settings that
    sendwell's backends read there. ``DEFAULT_FROM_EMAIL`` and ``SERVER_EMAIL`` pass through.
    """
    reader = _Reader(read_environment(environ, env_file))
    use_ses = reader.boolean("USE_SES", default=False)
    queue = reader.boolean("EMAIL_QUEUE", default=False)
    failover = reader.boolean("EMAIL_FAILOVER", default=False)
    ses = _ses_options(reader) if use_ses else None
    smtp = _smtp_options(reader)
    smtp_configured = reader.text("EMAIL_HOST") is not None
    if failover and not (use_ses and smtp_configured and queue):
        reader.problems.append(
            Problem(
                "sendwell.E011",
                "EMAIL_FAILOVER=True needs USE_SES=True, EMAIL_HOST and EMAIL_QUEUE=True",
                "Failover sends through SES and, when SES cannot take a message, through the "
                "SMTP server in EMAIL_HOST; it is done by the outbox worker, so set all three, "
                "or EMAIL_FAILOVER=False.",
            )
        )
    if reader.problems:
        raise EnvironmentConfigError(reader.problems)

    result: dict[str, Any] = {}
    for name in ("DEFAULT_FROM_EMAIL", "SERVER_EMAIL"):
        value = reader.text(name)
        if value is not None:
            result[name] = value
    if django.VERSION >= (6, 1):
        result["MAILERS"] = _mailers(ses, smtp, smtp_configured=smtp_configured)
        if queue:
            result["MAILERS"]["default"] = _outbox_mailer(ses, smtp, failover=failover)
    else:  # RemovedInSendwellDjango52: the classic settings path.
        result.update(_classic_settings(ses, smtp))
        if queue:
            result["EMAIL_BACKEND"] = OUTBOX_BACKEND
            result["SENDWELL_TRANSPORT"] = (
                "failover" if failover else "ses" if ses is not None else "smtp"
            )
    return result


def _ses_options(reader: _Reader) -> SESOptions:
    use_ses_v2 = reader.boolean("USE_SES_V2", default=True)
    specific = "AWS_ENDPOINT_URL_SESV2" if use_ses_v2 else "AWS_ENDPOINT_URL_SES"
    # Unset timeouts keep SESOptions' defaults (5 s to connect, 30 s to read).
    defaults = SESOptions()
    connect_timeout = reader.number("AWS_SES_CONNECT_TIMEOUT")
    read_timeout = reader.number("AWS_SES_READ_TIMEOUT")
    options = SESOptions(
        region_name=reader.text("AWS_SES_REGION_NAME"),
        access_key_id=reader.text("AWS_ACCESS_KEY_ID"),
        secret_access_key=reader.secret("AWS_SECRET_ACCESS_KEY"),
        session_token=reader.secret("AWS_SESSION_TOKEN"),
        configuration_set=reader.text("AWS_SES_CONFIGURATION_SET"),
        use_ses_v2=use_ses_v2,
        endpoint_url=reader.text(specific) or reader.text("AWS_ENDPOINT_URL"),
        connect_timeout=defaults.connect_timeout if connect_timeout is None else connect_timeout,
        read_timeout=defaults.read_timeout if read_timeout is None else read_timeout,
    )
    reader.problems.extend(options.problems(_SES_VARIABLES))
    return options


def _smtp_options(reader: _Reader) -> dict[str, Any]:
    options: dict[str, Any] = {
        "host": reader.text("EMAIL_HOST") or "localhost",
        "port": reader.integer("EMAIL_PORT"),
        "username": reader.text("EMAIL_HOST_USER"),
        "password": reader.secret("EMAIL_HOST_PASSWORD"),
        "use_tls": reader.boolean("EMAIL_USE_TLS", default=False),
        "use_ssl": reader.boolean("EMAIL_USE_SSL", default=False),
        "timeout": reader.number("EMAIL_TIMEOUT"),
        "ssl_cafile": reader.text("EMAIL_SSL_CAFILE"),
    }
    reader.problems.extend(
        smtp_problems(
            port=options["port"],
            use_tls=options["use_tls"],
            use_ssl=options["use_ssl"],
            ssl_cafile=options["ssl_cafile"],
            timeout=options["timeout"],
            names=CLASSIC_SMTP_SETTINGS,
        )
    )
    return options


def _ses_mailer_options(ses: SESOptions) -> dict[str, Any]:
    defaults = SESOptions()
    return {
        field: getattr(ses, field)
        for field in SESOptions.field_names()
        if getattr(ses, field) != getattr(defaults, field)
    }


def _outbox_mailer(
    ses: SESOptions | None, smtp: dict[str, Any], *, failover: bool
) -> dict[str, Any]:
    smtp_options = {key: value for key, value in smtp.items() if value is not None}
    return {
        "BACKEND": OUTBOX_BACKEND,
        "OPTIONS": {
            "ses": _ses_mailer_options(ses) if ses is not None else None,
            "smtp": smtp_options if ses is None or failover else None,
            "failover": failover,
        },
    }


def _mailers(
    ses: SESOptions | None, smtp: dict[str, Any], *, smtp_configured: bool
) -> dict[str, Any]:
    smtp_mailer = {
        "BACKEND": SMTP_BACKEND,
        "OPTIONS": {key: value for key, value in smtp.items() if value is not None},
    }
    if ses is None:
        return {"default": smtp_mailer}
    mailers: dict[str, Any] = {
        "default": {"BACKEND": SES_BACKEND, "OPTIONS": _ses_mailer_options(ses)}
    }
    if smtp_configured:
        mailers["smtp"] = smtp_mailer
    return mailers


# RemovedInSendwellDjango52: Django 5.2 has no MAILERS; backends read these settings instead.
def _classic_settings(ses: SESOptions | None, smtp: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "EMAIL_BACKEND": SES_BACKEND if ses is not None else SMTP_BACKEND,
        "EMAIL_HOST": smtp["host"],
        "EMAIL_USE_TLS": smtp["use_tls"],
        "EMAIL_USE_SSL": smtp["use_ssl"],
        "EMAIL_HOST_USER": smtp["username"] or "",
        "EMAIL_HOST_PASSWORD": smtp["password"] or "",
        "EMAIL_TIMEOUT": smtp["timeout"],
    }
    if smtp["port"] is not None:
        result["EMAIL_PORT"] = smtp["port"]
    if smtp["ssl_cafile"] is not None:
        result["EMAIL_SSL_CAFILE"] = smtp["ssl_cafile"]
    if ses is not None:
        result.update(
            {setting: getattr(ses, option) for option, setting in CLASSIC_SES_SETTINGS.items()}
        )
    return result
