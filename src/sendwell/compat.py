"""Django version differences, each marked for removal with Django 5.2 support."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import django

if TYPE_CHECKING or django.VERSION >= (6, 0):
    from django.tasks import task, task_backends
else:  # RemovedInSendwellDjango52: the django-tasks backport of Django 6.0's tasks framework.
    from django_tasks import task, task_backends


def mailer(alias: str) -> Any:
    """The configured email backend instance for ``alias``."""
    if django.VERSION >= (6, 1):
        from django.core.mail import mailers  # noqa: PLC0415

        return mailers[alias]
    # RemovedInSendwellDjango52: one backend, from EMAIL_BACKEND.
    from django.core.mail import get_connection  # noqa: PLC0415

    return get_connection()


__all__ = ["mailer", "task", "task_backends"]
