"""The feedback loop's pages: SES events as they came, and the suppression list.

Events are read-only (they are what SES said). The suppression list is the one table an operator
edits: add an address (reason "manual"), remove one to send to it again, search and filter.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.core.validators import validate_email
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from sendwell import suppression
from sendwell.admin.common import ReadOnlyDetail, admin_link, badge
from sendwell.mime import LIST_NAME
from sendwell.models import Event, Message, Recipient, Suppression, SuppressionReason

if TYPE_CHECKING:
    EventAdminBase = admin.ModelAdmin[Event]
    SuppressionAdminBase = admin.ModelAdmin[Suppression]
    SuppressionFormBase = forms.ModelForm[Suppression]
else:  # not subscriptable at run time (without django-stubs-ext)
    EventAdminBase = SuppressionAdminBase = admin.ModelAdmin
    SuppressionFormBase = forms.ModelForm


@admin.register(Event)
class EventAdmin(ReadOnlyDetail, EventAdminBase):
    list_display = ("occurred_at", "type_badge", "address", "message_link", "summary")
    list_filter = ("type", "occurred_at")
    search_fields = ("address", "ses_message_id")
    date_hierarchy = "occurred_at"
    ordering = ("-occurred_at", "-id")
    show_full_result_count = False
    list_select_related = ("message",)
    fields = (
        "type_badge",
        "type_name",
        "address",
        "occurred_at",
        "received_at",
        "ses_message_id",
        "message_link",
        "recipient_link",
        "detail_json",
        "raw_json",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("message__raw")

    @admin.display(description=_("type"), ordering="type")
    def type_badge(self, obj: Event) -> SafeString:
        return badge(obj.type, obj.get_type_display())

    @admin.display(description=_("message"))
    def message_link(self, obj: Event) -> SafeString | str:
        if obj.message_id is None:
            return "-"
        return admin_link(Message, obj.message_id, f"#{obj.message_id}")

    @admin.display(description=_("recipient"))
    def recipient_link(self, obj: Event) -> SafeString | str:
        if obj.recipient_id is None:
            return "-"
        return admin_link(Recipient, obj.recipient_id, obj.address or f"#{obj.recipient_id}")

    @admin.display(description=_("what happened"))
    def summary(self, obj: Event) -> str:
        detail = obj.detail
        parts = [
            detail.get(key, "")
            for key in ("bounce_type", "bounce_subtype", "complaint_type", "delay_type")
        ]
        parts.append(detail.get("diagnostic_code", "") or detail.get("link", ""))
        return " ".join(part for part in parts if part)[:120]

    @admin.display(description=_("normalized fields"))
    def detail_json(self, obj: Event) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.detail, indent=2, sort_keys=True))

    @admin.display(description=_("as SES sent it"))
    def raw_json(self, obj: Event) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.raw, indent=2, sort_keys=True))


class SuppressionForm(SuppressionFormBase):
    """Normalizes the address before Django checks that it is not on the list already."""

    class Meta:
        model = Suppression
        fields = ("address", "scope", "reason", "expires_at", "note")

    def clean_address(self) -> str:
        address = suppression.normalize(str(self.cleaned_data["address"]))
        validate_email(address)
        return address

    def clean_scope(self) -> str:
        scope = str(self.cleaned_data.get("scope") or "")
        if scope and not LIST_NAME.fullmatch(scope):
            raise forms.ValidationError(_("a list name: ASCII letters, digits, '_', '.' and '-'"))
        return scope


@admin.register(Suppression)
class SuppressionAdmin(SuppressionAdminBase):
    form = SuppressionForm
    list_display = ("address", "reason_badge", "scope", "created_at", "expires_at", "event_link")
    list_select_related = ("event",)
    list_filter = ("reason", "scope", "created_at")
    search_fields = ("address", "note")
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    fields = ("address", "scope", "reason", "expires_at", "note", "created_at", "event_link")
    readonly_fields = ("created_at", "event_link")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # An entry is identified by its address and scope: change those by removing it.
        if obj is not None:
            return (*self.readonly_fields, "address", "scope")
        return self.readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"reason": SuppressionReason.MANUAL}

    @admin.display(description=_("reason"), ordering="reason")
    def reason_badge(self, obj: Suppression) -> SafeString:
        return badge("suppressed", obj.get_reason_display())

    @admin.display(description=_("because of"))
    def event_link(self, obj: Suppression) -> SafeString | str:
        event = obj.event
        if event is None:
            return "-"
        return admin_link(Event, event.pk, f"{event.type} #{event.pk}")
