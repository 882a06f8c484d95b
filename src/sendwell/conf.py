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


# sendwell's own settings: ``SENDWELL = {...}`` in settings, each with its default here.
DEFAULTS: dict[str, Any] = {
    # Account limits. None: read them from SES (GetAccount / GetSendQuota) and refresh them;
    # when SES cannot be asked, the rate is learned from SES's answers and no 24-hour cap is
    # kept (SES's own "Daily message quota exceeded" defers). Set them to send slower on purpose.
    "MAX_SEND_RATE": None,  # recipients per second
    "MAX_24_HOUR_SEND": None,  # recipients per rolling 24 hours
    "QUOTA_REFRESH_SECONDS": 300,
    # Send at this fraction of the account's rate, so that jitter in when sends reach SES never
    # makes SES see one second over its limit. Sends start evenly spaced at fraction x rate; one
    # second then holds at most the rate while they arrive within (1/fraction - 1) s of their
    # slots: 31 ms at 0.97. A send that wakes more than 20 ms after its slot takes a new one
    # (delivery.LATE_SLOT_TOLERANCE), which keeps the rest of that budget for the network; on a
    # machine too busy for that, lower this (0.9 allows 110 ms).
    "RATE_FRACTION": 0.97,
    # "database" (default, no extra service) or "redis" (REDIS_URL) for the shared limiter.
    "RATE_LIMITER": "database",
    "REDIS_URL": None,
    # How long one synchronous send_mail() may wait in all (seconds): for its send slot, and for
    # SES to stop throttling it. Past it ThrottledError (retryable) is raised. 10 s lets a loop
    # of sends through on a 1/s sandbox account; requests that must never wait use the outbox.
    "SYNC_MAX_WAIT": 10.0,
    # SES calls one synchronous send_messages() keeps in flight: the next message is rendered
    # and given its slot while earlier calls wait for SES. 1 = one after another.
    "SYNC_CONCURRENCY": 4,
    # Retries: exponential backoff with jitter, base * 2**(attempt-1) capped, then between
    # half and all of it.
    "MAX_ATTEMPTS": 8,
    "MAX_AGE_SECONDS": 24 * 3600,
    "BACKOFF_BASE_SECONDS": 10.0,
    "BACKOFF_MAX_SECONDS": 3600.0,
    # A worker's claim on a message; past it another worker may take the message over.
    "LEASE_SECONDS": 120,
    # Worker side: messages claimed at once by one delivery task, and threads sending them.
    "BATCH_SIZE": 50,
    "CONCURRENCY": 8,
    # How long one delivery task drains the outbox before handing over to a fresh task.
    "TASK_TIME_BUDGET_SECONDS": 60.0,
    # django.tasks backend alias and queue for delivery tasks.
    "TASK_BACKEND": "default",
    "TASK_QUEUE": "default",
    # Failover: SES retryable failures before one message goes out over SMTP instead, and the
    # circuit breaker that sends everything over SMTP for a while after consecutive failures.
    "FAILOVER_AFTER_ATTEMPTS": 2,
    "CIRCUIT_BREAKER_THRESHOLD": 5,
    "CIRCUIT_BREAKER_SECONDS": 60.0,
}


def setting(name: str) -> Any:
    """``settings.SENDWELL[name]`` or its default (read on every call: override_settings works)."""
    configured = getattr(settings, "SENDWELL", None) or {}
    if name in configured:
        return configured[name]
    return DEFAULTS[name]
