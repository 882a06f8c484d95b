"""The newsletter app: drops an address from the list when sendwell suppresses it."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class NewsletterConfig(AppConfig):
    name = "newsletter"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sendwell import signals  # noqa: PLC0415 - the app registry must be ready

        signals.address_suppressed.connect(drop_suppressed, dispatch_uid="newsletter-drop")


def drop_suppressed(sender: Any, suppression: Any, **kwargs: Any) -> None:
    """sendwell stopped sending to an address (a bounce, a complaint, an unsubscribe): so does
    the list. sendwell would refuse the address anyway; this keeps the list honest."""
    from newsletter.models import Subscriber  # noqa: PLC0415

    if suppression.scope in ("", "newsletter"):
        Subscriber.objects.filter(email__iexact=suppression.address).delete()
