"""Reading one field of SES's JSON: the type checked, the value normalized, the path named.

A missing field and JSON ``null`` read as absent (SES writes ``"complaintSubType": null``); a
field of another type is an :class:`EventParseError` that names the field (``bounce.
bouncedRecipients[2].emailAddress``) and the type it had, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parseaddr
from types import MappingProxyType
from typing import Any

from sendwell.events.types import EMPTY_TAGS, EventParseError

# The start SES's timestamps all have ("2016-01-27T14:59:38.237Z"; the docs also show
# "2018-10-08T14:05:45 +0000"). Checked first because fromisoformat() also takes a bare date,
# which SES never sends for a moment in time.
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.ASCII)
# A bare addr-spec of atoms (no display name, comment, quotes or spaces): what every envelope
# address is. parseaddr() returns such an address unchanged, so it can be skipped.
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+", re.ASCII)


def kind(value: object) -> str:
    """What a value is, in JSON's words, for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def string(data: Mapping[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventParseError(f"{where(path, key)} is {kind(value)}, not a string")
    return value


def obj(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise EventParseError(f"{where(path, key)} is {kind(value)}, not an object")
    return value


def array(data: Mapping[str, Any], key: str, path: str) -> list[Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise EventParseError(f"{where(path, key)} is {kind(value)}, not an array")
    return list(value)


def strings(data: Mapping[str, Any], key: str, path: str) -> list[str] | None:
    values = array(data, key, path)
    if values is None:
        return None
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise EventParseError(f"{where(path, key)}[{index}] is {kind(value)}, not a string")
    return values


def tags(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, tuple[str, ...]]:
    """SES's tags (``mail.tags``, ``click.linkTags``): each name to a list of values."""
    value = obj(data, key, path)
    if not value:
        return EMPTY_TAGS
    result: dict[str, tuple[str, ...]] = {}
    for name in value:
        if not isinstance(name, str):
            raise EventParseError(f"{where(path, key)} has a name that is {kind(name)}")
        result[name] = tuple(strings(value, name, where(path, key)) or ())
    return MappingProxyType(result)


def time(data: Mapping[str, Any], key: str, path: str) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime; one without an offset is taken as UTC
    (SES writes every time in UTC)."""
    value = data.get(key)
    if value is None:
        return None
    name = where(path, key)
    if not isinstance(value, str):
        raise EventParseError(f"{name} is {kind(value)}, not a timestamp")
    if not _ISO_DATETIME.match(value):
        raise EventParseError(f"{name} is not an ISO 8601 date and time")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # OverflowError: year 1 at +01:00 is before datetime.min in UTC.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise EventParseError(f"{name} is not an ISO 8601 date and time") from None


def address(value: str) -> str:
    """A recipient as sendwell stores it: the bare address, lower-cased.

    SES lists ``"Jane Doe <Jane@Example.com>"`` as well as bare addresses. What parseaddr()
    cannot read (it gives "") is kept as it was, lower-cased, rather than lost.
    """
    if _BARE_ADDRESS.fullmatch(value):
        return value.lower()
    bare = parseaddr(value)[1]
    return (bare or value).strip().lower()
