"""Recipients and attempts: who each message went to, and every try to send it."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from sendwell.admin.common import (
    ATTEMPT_OUTCOME_FIELDS,
    AttemptAdminBase,
    ReadOnlyDetail,
    RecipientAdminBase,
    admin_link,
    badge,
)
from sendwell.mime_display import short
from sendwell.models import Attempt, Message, Recipient


@admin.register(Recipient)
class RecipientAdmin(ReadOnlyDetail, RecipientAdminBase):
    list_display = (
        "address",
        "status_badge",
        "message_link",
        "transport",
        "ses_message_id",
        "sent_at",
        "updated_at",
        "error_text",
    )
    list_filter = ("status", "transport")
    search_fields = ("address", "ses_message_id")
    list_select_related = ("message",)
    ordering = ("-id",)
    show_full_result_count = False
    fields = (
        "message_link",
        "address",
        "status_badge",
        "transport",
        "ses_message_id",
        "sent_at",
        "updated_at",
        "error",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Recipient]:
        return super().get_queryset(request).select_related("message").defer("message__raw")

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Recipient) -> SafeString:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description=_("message"), ordering="message")
    def message_link(self, obj: Recipient) -> SafeString:
        return admin_link(
            Message, obj.message_id, f"#{obj.message_id} {short(obj.message.subject, 50)}"
        )

    @admin.display(description=_("error"))
    def error_text(self, obj: Recipient) -> str:
        return short(obj.error)


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyDetail, AttemptAdminBase):
    list_display = (
        "started_at",
        "message_link",
        "transport",
        "outcome_badge",
        "recipients",
        "duration",
        "error_code",
        "error_text",
        "worker",
    )
    list_filter = ("outcome", "transport", "started_at")
    search_fields = ("error_code", "error", "worker")
    date_hierarchy = "started_at"
    ordering = ("-started_at", "-id")
    show_full_result_count = False
    fields = ("message_link", "started_at", "finished_at", "duration", *ATTEMPT_OUTCOME_FIELDS)
    readonly_fields = fields

    @admin.display(description=_("message"), ordering="message")
    def message_link(self, obj: Attempt) -> SafeString:
        # By id only: loading the message would cost a query per row.
        return admin_link(Message, obj.message_id, f"#{obj.message_id}")

    @admin.display(description=_("outcome"), ordering="outcome")
    def outcome_badge(self, obj: Attempt) -> SafeString:
        return badge(obj.outcome, obj.get_outcome_display())

    @admin.display(description=_("duration"))
    def duration(self, obj: Attempt) -> str:
        return f"{(obj.finished_at - obj.started_at).total_seconds():.2f} s"

    @admin.display(description=_("error"))
    def error_text(self, obj: Attempt) -> str:
        return short(obj.error)
