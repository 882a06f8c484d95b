"""Configure a sendwell backend as each Django version does (MAILERS on 6.1, settings on 5.2)."""

from __future__ import annotations

from typing import Any

import django
from django.test import override_settings

from sendwell.conf import CLASSIC_SES_SETTINGS, CLASSIC_SMTP_SETTINGS

SES = "sendwell.backends.SESBackend"
SMTP = "sendwell.backends.SMTPBackend"
DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"
HAS_MAILERS = django.VERSION >= (6, 1)


def ses_options(ses: Any, **options: Any) -> dict[str, Any]:
    """SES options pointing at a local endpoint (moto or FakeSES) with dummy keys."""
    return {
        "region_name": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing-secret",
        "endpoint_url": ses.endpoint_url,
        **options,
    }


def mailer_settings(backend: str, **options: Any) -> override_settings:
    """``override_settings`` that makes ``backend`` with ``options`` the default mailer."""
    if HAS_MAILERS:
        return override_settings(MAILERS={"default": {"BACKEND": backend, "OPTIONS": options}})
    # RemovedInSendwellDjango52: classic settings.
    names = CLASSIC_SES_SETTINGS if backend == SES else CLASSIC_SMTP_SETTINGS
    classic = {names[key]: value for key, value in options.items()}
    return override_settings(EMAIL_BACKEND=backend, **classic)


def get_mailer() -> Any:
    """The default mailer instance, created the way ``send_mail()`` creates it."""
    if HAS_MAILERS:
        from django.core.mail import mailers  # noqa: PLC0415

        return mailers.default
    from django.core.mail import get_connection  # noqa: PLC0415

    return get_connection()
