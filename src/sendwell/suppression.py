"""The suppression list: who sendwell does not send to, and the one query every send asks.

Addresses are kept as lower-cased addr-specs, so ``"Ann <ANN@Example.com>"`` and
``ann@example.com`` are one address. A suppression applies to everything (scope ``""``) or to one
mailing list (a message names its list with the ``X-Sendwell-List`` header); it may expire.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connections, router, transaction
from django.utils import timezone

from sendwell import signals
from sendwell.events.fields import address as event_address
from sendwell.models import EVERYTHING, Event, Suppression, SuppressionReason


def normalize(address: str) -> str:
    """The lower-cased addr-spec of ``address`` (display names and case never break matching).

    The same rule as the SES event parser's, so that an event's recipient and a sent recipient
    match however either was spelled.
    """
    return event_address(address)


def suppressed(addresses: Iterable[str], *, scope: str = EVERYTHING) -> set[str]:
    """Which of ``addresses`` are suppressed for a message of list ``scope``: one query.

    Returned as the caller spelled them. Every message asks this before it is sent, so it is one
    plain SQL statement: building the same query with the ORM cost 230 µs per message, more than
    the query (13 µs on SQLite) and a sixth of a whole synchronous send.
    """
    by_normal: dict[str, list[str]] = {}
    for address in addresses:
        by_normal.setdefault(normalize(address), []).append(address)
    if not by_normal:
        return set()
    # Where suppressions are written, not a replica that may not have the latest one yet.
    connection = connections[router.db_for_write(Suppression)]
    quote = connection.ops.quote_name
    table = quote(Suppression._meta.db_table)
    addresses_in = ", ".join(["%s"] * len(by_normal))
    # The identifiers are the model's own and every value is a parameter.
    sql = (
        f"SELECT {quote('address')} FROM {table} WHERE {quote('address')} IN ({addresses_in}) "  # noqa: S608
        f"AND {quote('scope')} IN (%s, %s) "
        f"AND ({quote('expires_at')} IS NULL OR {quote('expires_at')} > %s)"
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [*by_normal, EVERYTHING, scope, now])
        found = [row[0] for row in cursor.fetchall()]
    return {spelled for normal in found for spelled in by_normal[normal]}


def suppress(
    address: str,
    *,
    reason: str,
    scope: str = EVERYTHING,
    event: Event | None = None,
    expires_at: datetime | None = None,
    note: str = "",
) -> Suppression:
    """Put ``address`` on the list (or make its entry at least as strong: a permanent entry is
    never turned into an expiring one); sends :data:`signals.address_suppressed`."""
    normal = normalize(address)
    with transaction.atomic():
        row, created = Suppression.objects.select_for_update().get_or_create(
            address=normal,
            scope=scope,
            defaults={"reason": reason, "event": event, "expires_at": expires_at, "note": note},
        )
        if not created:
            if _stronger(row, expires_at):
                return row  # already suppressed as long or longer: a weaker reason changes nothing
            row.reason, row.event, row.expires_at = reason, event or row.event, expires_at
            row.note = note or row.note
            row.save(update_fields=["reason", "event", "expires_at", "note"])
        signals.address_suppressed.send(sender=Suppression, suppression=row, created=created)
    return row


def _stronger(row: Suppression, expires_at: datetime | None) -> bool:
    """Whether ``row`` already suppresses at least until ``expires_at`` (None: for good)."""
    if row.is_expired():
        return False
    if row.expires_at is None:
        return True
    return expires_at is not None and row.expires_at >= expires_at


def unsuppress(address: str, *, scope: str | None = None) -> int:
    """Remove ``address`` from the list (every scope, or one); the number of entries removed."""
    rows = Suppression.objects.filter(address=normalize(address))
    if scope is not None:
        rows = rows.filter(scope=scope)
    deleted, _ = rows.delete()
    return deleted


__all__ = [
    "SuppressionReason",
    "normalize",
    "suppress",
    "suppressed",
    "unsuppress",
]
