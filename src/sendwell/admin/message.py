"""The outbox's messages: list, search, the MIME shown as text, the retry and cancel actions."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage as MIMEMessage

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from sendwell.admin.common import (
    ATTEMPT_OUTCOME_FIELDS,
    AttemptInlineBase,
    MessageAdminBase,
    ReadOnlyDetail,
    ReadOnlyInline,
    RecipientInlineBase,
    badge,
)
from sendwell.mime_display import mime_headers, mime_parts, parse, short, text_preview
from sendwell.models import Attempt, Message, MessageStatus, Recipient
from sendwell.operations import (
    CANCELLABLE_STATUSES,
    RETRYABLE_STATUSES,
    ActionResult,
    cancel_messages,
    retry_messages,
)


class RecipientInline(ReadOnlyInline, RecipientInlineBase):
    model = Recipient
    fields = ("address", "status_badge", "transport", "ses_message_id", "sent_at", "error")
    readonly_fields = fields
    ordering = ("pk",)

    @admin.display(description=_("status"))
    def status_badge(self, obj: Recipient) -> SafeString:
        return badge(obj.status, obj.get_status_display())


class AttemptInline(ReadOnlyInline, AttemptInlineBase):
    model = Attempt
    fields = ("started_at", "finished_at", *ATTEMPT_OUTCOME_FIELDS)
    readonly_fields = fields
    ordering = ("started_at", "pk")

    @admin.display(description=_("outcome"))
    def outcome_badge(self, obj: Attempt) -> SafeString:
        return badge(obj.outcome, obj.get_outcome_display())


# --- messages -------------------------------------------------------------------------------


_MESSAGE_FIELDS = (
    "id",
    "created_at",
    "updated_at",
    "mailer",
    "transport",
    "from_email",
    "subject",
    "configuration_set",
    "tags",
    "recipients_link",
)
_DELIVERY_FIELDS = (
    "status_badge",
    "attempt_count",
    "next_attempt_at",
    "claimed_by",
    "sent_at",
    "delivered_by",
    "ses_message_ids",
    "last_error",
    "last_error_code",
)
_CONTENT_FIELDS = ("raw_size", "headers_table", "parts_table", "body_preview")


@admin.register(Message)
class MessageAdmin(ReadOnlyDetail, MessageAdminBase):
    list_display = (
        "id",
        "created_at",
        "subject_text",
        "from_email",
        "recipient_count",
        "status_badge",
        "transport",
        "delivered_by",
        "attempt_count",
        "next_attempt_at",
        "sent_at",
    )
    list_display_links = ("id", "subject_text")
    list_filter = ("status", "transport", "delivered_by", "created_at", "mailer")
    search_fields = (
        "subject",
        "from_email",
        "recipients__address",
        "ses_message_ids",
        "recipients__ses_message_id",
        "last_error",
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    # A full COUNT(*) of a large outbox on every filtered page is not worth its cost.
    show_full_result_count = False
    actions = ("retry_selected", "cancel_selected")
    inlines = (RecipientInline, AttemptInline)
    fieldsets = (
        (None, {"fields": _MESSAGE_FIELDS}),
        (_("Delivery"), {"fields": _DELIVERY_FIELDS}),
        (_("Content (MIME, shown as text)"), {"fields": _CONTENT_FIELDS}),
    )
    readonly_fields = (*_MESSAGE_FIELDS, *_DELIVERY_FIELDS, *_CONTENT_FIELDS)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        recipients = (
            Recipient.objects.filter(message=OuterRef("pk"))
            .order_by()
            .values("message")
            .annotate(n=Count("pk"))
            .values("n")
        )
        # The MIME can be megabytes: only the detail page loads it (one row, on access).
        return (
            super()
            .get_queryset(request)
            .defer("raw")
            .annotate(
                recipient_total=Coalesce(Subquery(recipients, output_field=IntegerField()), 0)
            )
        )

    # --- columns

    @admin.display(description=_("subject"), ordering="subject")
    def subject_text(self, obj: Message) -> str:
        return short(obj.subject) if obj.subject else "(no subject)"

    @admin.display(description=_("recipients"), ordering="recipient_total")
    def recipient_count(self, obj: Message) -> int:
        return int(getattr(obj, "recipient_total", 0))

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Message) -> SafeString:
        return badge(obj.status, obj.get_status_display())

    # --- detail

    @admin.display(description=_("recipients"))
    def recipients_link(self, obj: Message) -> SafeString:
        url = reverse("admin:sendwell_recipient_changelist")
        count = int(getattr(obj, "recipient_total", 0))
        return format_html(
            '<a href="{}?message__id__exact={}">{}</a>',
            url,
            obj.pk,
            ngettext("%(count)d recipient", "%(count)d recipients", count) % {"count": count},
        )

    def _mime(self, obj: Message) -> MIMEMessage:
        """``obj.raw`` parsed once per page (it can be megabytes)."""
        parsed: MIMEMessage | None = getattr(obj, "_sendwell_mime", None)
        if parsed is None:
            parsed = parse(bytes(obj.raw), headers_only=False)
            obj._sendwell_mime = parsed  # type: ignore[attr-defined]
        return parsed

    @admin.display(description=_("MIME size"))
    def raw_size(self, obj: Message) -> str:
        size = len(obj.raw)
        exact = f"{size:,} bytes"
        return exact if size < 1024 else f"{filesizeformat(size)} ({exact})"

    @admin.display(description=_("headers"))
    def headers_table(self, obj: Message) -> SafeString:
        headers = mime_headers(bytes(obj.raw))
        rows = format_html_join(
            "", "<tr><th>{}</th><td><code>{}</code></td></tr>", ((n, v) for n, v in headers)
        )
        return format_html('<table class="sendwell-headers">{}</table>', rows)

    @admin.display(description=_("parts"))
    def parts_table(self, obj: Message) -> SafeString:
        parts = mime_parts(self._mime(obj))
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((kind, name, filesizeformat(size)) for kind, name, size in parts),
        )
        return format_html('<table class="sendwell-parts">{}</table>', rows)

    @admin.display(description=_("text body"))
    def body_preview(self, obj: Message) -> SafeString | str:
        try:
            preview = text_preview(self._mime(obj))
        except Exception:  # e.g. an unknown charset: the page must still show
            return "(the text body could not be decoded)"
        if preview is None:
            return "(no text/plain part; the HTML body is not shown)"
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', preview)

    # --- actions

    @admin.action(description=_("Retry selected failed/deferred messages"), permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        result = retry_messages(queryset.order_by().values_list("pk", flat=True))
        text = ngettext(
            "Queued %(count)d message for another attempt.",
            "Queued %(count)d messages for another attempt.",
            result.changed,
        ) % {"count": result.changed}
        self._report(request, text, result, eligible=RETRYABLE_STATUSES)

    @admin.action(description=_("Cancel selected queued/deferred messages"), permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        result = cancel_messages(
            queryset.order_by().values_list("pk", flat=True), by=request.user.get_username()
        )
        text = ngettext(
            "Cancelled %(count)d message.", "Cancelled %(count)d messages.", result.changed
        ) % {"count": result.changed}
        self._report(request, text, result, eligible=CANCELLABLE_STATUSES)

    def _report(
        self, request: HttpRequest, text: str, result: ActionResult, *, eligible: Sequence[str]
    ) -> None:
        if result.skipped:
            details = []
            for status, count in sorted(result.skipped.items()):
                label = str(MessageStatus(status).label) if status in MessageStatus else status
                if status in eligible:
                    label = f"{label}, nothing left to send"
                details.append(f"{count} {label}")
            total = sum(result.skipped.values())
            text += " " + ngettext(
                "Skipped %(count)d: %(details)s.", "Skipped %(count)d: %(details)s.", total
            ) % {"count": total, "details": ", ".join(details)}
        level = messages.SUCCESS if result.changed else messages.WARNING
        self.message_user(request, text, level)


# --- recipients and attempts ----------------------------------------------------------------
