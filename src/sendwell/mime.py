"""Turn a Django ``EmailMessage`` into exactly what a transport hands over: envelope + MIME bytes.

Preparation never mutates the caller's message or its ``extra_headers``: sendwell's control headers
(the configuration set, the message tags) are read from, and removed from, the freshly generated
MIME object only.
"""

from __future__ import annotations

import dataclasses
import email.policy
import re
from collections.abc import Mapping
from email.headerregistry import Address, AddressHeader
from email.message import Message
from typing import Any

import django
from django.core.mail import EmailMessage
from django.utils.encoding import force_str, punycode

from sendwell.exceptions import InvalidAddressError, InvalidMessageError
from sendwell.options import is_configuration_set_name

CONFIGURATION_SET_HEADER = "X-SES-CONFIGURATION-SET"
# A bare ASCII addr-spec with a dot-atom local part and domain: nothing to decode or quote.
_PLAIN_ADDRESS_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\Z"
)
# SES's own header for message tags, "name1=value1, name2=value2" (it honours it over SMTP too).
TAGS_HEADER = "X-SES-MESSAGE-TAGS"
# "Tag names and values can contain only ASCII letters, numbers, underscores, or dashes" (and, for
# values, also periods, @ and a few more since 2021); both must be shorter than 256 characters.
_TAG_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9_.@-]{0,255}$")
# sendwell's own control header: the mailing list a message is sent for, so that an address
# unsubscribed from that list is suppressed for it (and only for it). Removed before sending.
LIST_HEADER = "X-Sendwell-List"
LIST_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclasses.dataclass(frozen=True)
class PreparedMessage:
    """One message as a transport sends it."""

    envelope_from: str
    recipients: tuple[str, ...]  # envelope recipients, Bcc included, duplicates removed
    raw: bytes  # the MIME message with CRLF line endings, Bcc and control headers removed
    configuration_set: str | None
    tags: tuple[tuple[str, str], ...]
    list_name: str = ""  # the X-Sendwell-List it was sent for ("" for none)


def envelope_address(address: Any) -> str:
    """The ASCII addr-spec of ``address`` (IDNA-encoded domain), for an SMTP/SES envelope.

    Raises :class:`InvalidAddressError` (a ``ValueError``) for anything that is not exactly one
    valid address, including CR/LF injection and non-ASCII local parts, which SES refuses.
    """
    text = force_str(address)
    if _PLAIN_ADDRESS_RE.match(text):
        # The common case, a bare ASCII address: the full RFC 5322 parser costs far more.
        return text
    try:
        parsed = AddressHeader.value_parser(text)
    except Exception as exc:  # the parser raises several private error types
        raise InvalidAddressError(f"Invalid address {text!r}: {exc}") from exc
    defects = {str(defect) for defect in parsed.all_defects}
    # Django allows local mailboxes like "webmaster" (#15042); so do we.
    defects.discard("addr-spec local part with no domain")
    if defects or len(parsed.all_mailboxes) != 1 or "\n" in text or "\r" in text:
        detail = "; ".join(sorted(defects)) or "must be a single address"
        raise InvalidAddressError(f"Invalid address {text!r}: {detail}")
    mailbox = parsed.all_mailboxes[0]
    if not mailbox.local_part.isascii():
        raise InvalidAddressError(
            f"Invalid address {text!r}: the part before @ must be ASCII",
            remedy="SES does not accept internationalized local parts (SMTPUTF8); use an ASCII "
            "address. Internationalized domain names are fine",
        )
    if mailbox.domain and not mailbox.domain.isascii():
        return str(Address(username=mailbox.local_part, domain=punycode(mailbox.domain)))
    return str(mailbox.addr_spec)


def envelope_recipients(addresses: list[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    result = []
    for address in addresses:
        prepared = envelope_address(address)
        # SES counts (and bills) every envelope recipient: a duplicate is sent, and paid, twice.
        if prepared.lower() not in seen:
            seen.add(prepared.lower())
            result.append(prepared)
    return tuple(result)


def mime_message(message: EmailMessage) -> Message:
    """Django's own MIME rendering of ``message``, exactly as its SMTP backend would send it."""
    if django.VERSION >= (6, 0):
        return message.message(policy=email.policy.SMTP)  # type: ignore[call-arg,no-any-return,unused-ignore]
    return message.message()  # RemovedInSendwellDjango52


def mime_bytes(mime: Message) -> bytes:
    if django.VERSION >= (6, 0):
        raw = mime.as_bytes()
    else:
        # RemovedInSendwellDjango52: 5.2's SafeMIME objects use the compat32 policy (LF endings).
        raw = mime.as_bytes(linesep="\r\n")  # type: ignore[call-arg,unused-ignore]
    # smtplib ends DATA with CRLF when the message does not; do the same so that SES delivers
    # byte for byte what Django's SMTP backend would.
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def parse_tags(header_values: list[str], attribute: Mapping[str, str] | None) -> dict[str, str]:
    """Tags from the X-SES-MESSAGE-TAGS header(s) and the ``ses_tags`` attribute (which wins)."""
    tags: dict[str, str] = {}
    for value in header_values:
        for item in str(value).split(","):
            if not item.strip():
                continue
            name, separator, tag_value = item.partition("=")
            if not separator:
                raise InvalidMessageError(
                    f"{TAGS_HEADER} item {item.strip()!r} is not name=value",
                    remedy="write the header as 'name1=value1, name2=value2'",
                )
            tags[name.strip()] = tag_value.strip()
    tags.update(attribute or {})
    for name, tag_value in tags.items():
        if not _TAG_NAME_RE.match(str(name)) or not _TAG_VALUE_RE.match(str(tag_value)):
            raise InvalidMessageError(
                f"message tag {name!r}={tag_value!r} is not valid for SES",
                remedy="tag names may contain ASCII letters, digits, '_' and '-'; values also "
                "'.' and '@'; both at most 255 characters",
            )
    return {str(name): str(tag_value) for name, tag_value in tags.items()}


def prepare(message: EmailMessage, *, configuration_set: str | None) -> PreparedMessage | None:
    """Prepare ``message`` for a transport; ``None`` when it has no recipients (nothing to send).

    ``configuration_set`` is the backend's default; an ``X-SES-CONFIGURATION-SET`` header on the
    message overrides it (an empty header means "none" for this message).
    """
    addresses = message.recipients()
    if not addresses:
        return None
    recipients = envelope_recipients(addresses)
    envelope_from = envelope_address(message.from_email)
    mime = mime_message(message)
    header_sets = mime.get_all(CONFIGURATION_SET_HEADER) or []
    if header_sets:
        configuration_set = str(header_sets[-1]).strip() or None
        del mime[CONFIGURATION_SET_HEADER]
        if configuration_set is not None and not is_configuration_set_name(configuration_set):
            raise InvalidMessageError(
                f"{CONFIGURATION_SET_HEADER}: {configuration_set!r} is not a configuration "
                "set name",
                remedy="use the name shown in the SES console (letters, digits, '_' and '-', at "
                "most 64), or an empty header for none",
            )
    tags = parse_tags(list(mime.get_all(TAGS_HEADER) or []), getattr(message, "ses_tags", None))
    del mime[TAGS_HEADER]
    list_name = str((mime.get_all(LIST_HEADER) or [""])[-1]).strip()
    del mime[LIST_HEADER]
    if list_name and not LIST_NAME.fullmatch(list_name):
        raise InvalidMessageError(
            f"{LIST_HEADER}: {list_name[:100]!r} is not a list name",
            remedy="use at most 100 ASCII letters, digits, '_', '.' and '-'",
        )
    return PreparedMessage(
        envelope_from=envelope_from,
        recipients=recipients,
        raw=mime_bytes(mime),
        configuration_set=configuration_set,
        tags=tuple(tags.items()),
        list_name=list_name,
    )
