"""What every outbox page shares: read-only bases, status badges, links between rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from sendwell.models import Attempt, Message, Recipient

if TYPE_CHECKING:
    MessageAdminBase = admin.ModelAdmin[Message]
    RecipientAdminBase = admin.ModelAdmin[Recipient]
    AttemptAdminBase = admin.ModelAdmin[Attempt]
    RecipientInlineBase = admin.TabularInline[Recipient, Message]
    AttemptInlineBase = admin.TabularInline[Attempt, Message]
else:  # ModelAdmin is not subscriptable at run time (without django-stubs-ext).
    MessageAdminBase = RecipientAdminBase = AttemptAdminBase = admin.ModelAdmin
    RecipientInlineBase = AttemptInlineBase = admin.TabularInline


# What an attempt's detail shows after its times, on the message page and the attempt page.
ATTEMPT_OUTCOME_FIELDS = (
    "transport",
    "outcome_badge",
    "recipients",
    "ses_message_ids",
    "error_code",
    "error",
    "worker",
)

_COLORS = {
    # message and recipient statuses
    "queued": "#417690",
    "sending": "#205067",
    "sent": "#2e7d32",
    "delivered": "#1b5e20",
    "deferred": "#a05a00",
    "retry": "#a05a00",
    "failed": "#ba2121",
    "bounced": "#ba2121",
    "complained": "#8b1a1a",
    "suppressed": "#6f42c1",
    "cancelled": "#666666",
    "failed_over": "#205067",
}
_BADGE = (
    '<span class="sendwell-badge sendwell-{}" style="display:inline-block;padding:1px 8px;'
    "border-radius:9px;color:#fff;background:{};font-size:11px;font-weight:600;"
    'white-space:nowrap">{}</span>'
)


def badge(value: str, label: Any) -> SafeString:
    """A colored label for a status or outcome; every part escaped."""
    return format_html(_BADGE, value, _COLORS.get(value, "#666666"), label)


def admin_link(model: type[models.Model], pk: int, text: str) -> SafeString:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, text)


# --- inlines --------------------------------------------------------------------------------


class ReadOnlyInline:
    extra = 0
    max_num: int | None = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyDetail:
    """The change page only shows; actions (which need "change") stay on the list."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            # Never save a form over a row a worker may be updating.
            return False
        return bool(super().has_change_permission(request, obj))  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The outbox is the record of what was sent; it is not edited by hand.
        return False
