"""A stored message's MIME shown as text (the admin's detail page): headers, parts, and the
start of the plain-text body; bounded in size, never raises, never renders HTML."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage as MIMEMessage
from email.parser import BytesParser

from django.utils.text import Truncator


def short(text: str, length: int = 80) -> str:
    return Truncator(text).chars(length)


_MAX_HEADERS = 200
_MAX_HEADER_CHARS = 2000
_MAX_PREVIEW_CHARS = 10_000


def parse(raw: bytes, *, headers_only: bool) -> MIMEMessage:
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=headers_only)
    assert isinstance(parsed, MIMEMessage)
    return parsed


def mime_headers(raw: bytes) -> list[tuple[str, str]]:
    """The headers of ``raw`` as (name, decoded value) pairs, in order; never raises."""
    message = parse(raw, headers_only=True)
    headers = []
    for name, value in list(message.raw_items())[:_MAX_HEADERS]:
        try:
            text = str(email.policy.default.header_fetch_parse(name, value))
        except Exception:  # a malformed header: show it as it is
            text = str(value)
        headers.append((name, short(text, _MAX_HEADER_CHARS)))
    return headers


def mime_parts(message: MIMEMessage) -> list[tuple[str, str, int]]:
    """(content type, filename, decoded size) of each leaf part of ``message``."""
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        parts.append((part.get_content_type(), part.get_filename() or "", size))
    return parts


def text_preview(message: MIMEMessage) -> str | None:
    """The start of the plain-text body, if there is one (the HTML body is never shown)."""
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return None
    content = body.get_content()
    return short(content, _MAX_PREVIEW_CHARS) if isinstance(content, str) else None
