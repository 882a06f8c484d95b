"""Where sendwell's backends find their options in Django settings.

On Django 6.1 options come from ``MAILERS[alias]["OPTIONS"]`` and Django passes them to the
backend itself; this module only serves the classic Django 5.2 path (``EMAIL_BACKEND`` plus
settings) and the system checks, which look at every configured mailer. Settings are read on
each call, never cached, so ``override_settings`` works.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings

from sendwell import settings_table

# RemovedInSendwellDjango52: the settings the SES backend reads when it has no MAILERS alias.
CLASSIC_SES_SETTINGS = {
    "region_name": "AWS_SES_REGION_NAME",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
    "configuration_set": "AWS_SES_CONFIGURATION_SET",
    "use_ses_v2": "USE_SES_V2",
    "endpoint_url": "AWS_SES_ENDPOINT_URL",
    "connect_timeout": "AWS_SES_CONNECT_TIMEOUT",
    "read_timeout": "AWS_SES_READ_TIMEOUT",
}
# The same for the SMTP backend (Django's own EMAIL_* settings, plus sendwell's EMAIL_SSL_CAFILE).
CLASSIC_SMTP_SETTINGS = {
    "host": "EMAIL_HOST",
    "port": "EMAIL_PORT",
    "username": "EMAIL_HOST_USER",
    "password": "EMAIL_HOST_PASSWORD",
    "use_tls": "EMAIL_USE_TLS",
    "use_ssl": "EMAIL_USE_SSL",
    "timeout": "EMAIL_TIMEOUT",
    "ssl_cafile": "EMAIL_SSL_CAFILE",
    "ssl_certfile": "EMAIL_SSL_CERTFILE",
    "ssl_keyfile": "EMAIL_SSL_KEYFILE",
}


def classic_ses_options() -> dict[str, Any]:
    """SES options from classic settings; unset or ``None`` settings are left to the defaults."""
    options = {}
    for option, setting in CLASSIC_SES_SETTINGS.items():
        value = getattr(settings, setting, None)
        if value is not None:
            options[option] = value
    return options


def uses_mailers() -> bool:
    """True where Django has MAILERS (6.1+) and the project defines it."""
    return hasattr(settings, "MAILERS")


def configured_backends() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(where, backend path, options)`` for every configured email backend.

    ``where`` names the place a person would edit, e.g. ``MAILERS["default"]`` or
    ``EMAIL_BACKEND``. Classic options are not included: the backends read them themselves.
    """
    if uses_mailers():
        mailers: dict[str, dict[str, Any]] = settings.MAILERS
        for alias, config in mailers.items():
            options: dict[str, Any] = dict(config.get("OPTIONS", {}))
            backend = config.get("BACKEND", "django.core.mail.backends.smtp.EmailBackend")
            yield (f"MAILERS[{alias!r}]", str(backend), options)
    else:  # RemovedInSendwellDjango52
        yield ("EMAIL_BACKEND", settings.EMAIL_BACKEND, {})


# sendwell's own settings: ``SENDWELL = {...}``, defined once in sendwell.settings_table.
DEFAULTS: dict[str, Any] = settings_table.DEFAULTS


def setting(name: str) -> Any:
    """``settings.SENDWELL[name]`` or its default (read on every call: override_settings works)."""
    configured = getattr(settings, "SENDWELL", None) or {}
    if name in configured:
        return configured[name]
    return DEFAULTS[name]
