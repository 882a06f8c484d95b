"""The pipeline's suppression step: suppressed recipients leave the envelope before pacing.

Every message takes it, synchronous or queued, SES or SMTP: when it is built, and again for a
queued message when it is sent (a bounce can arrive between queueing and a retry). One query per
message, whatever its number of recipients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sendwell import conf, suppression
from sendwell.exceptions import SuppressedError
from sendwell.mime import PreparedMessage


def split(prepared: PreparedMessage) -> tuple[PreparedMessage | None, tuple[str, ...]]:
    """``prepared`` without its suppressed recipients (None: nobody is left), and those."""
    left_out = suppression.suppressed(prepared.recipients, scope=prepared.list_name)
    if not left_out:
        return prepared, ()
    kept = tuple(address for address in prepared.recipients if address not in left_out)
    dropped = tuple(address for address in prepared.recipients if address in left_out)
    return (dataclasses.replace(prepared, recipients=kept) if kept else None), dropped


def pending_without_suppressed(
    pending: Sequence[tuple[int, str]], *, list_name: str
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """A queued message's pending (pk, address) split into those to send and the suppressed."""
    left_out = suppression.suppressed((address for _, address in pending), scope=list_name)
    kept = [row for row in pending if row[1] not in left_out]
    dropped = [row for row in pending if row[1] in left_out]
    return kept, dropped


def all_suppressed_error(addresses: Sequence[str], transport: str) -> SuppressedError | None:
    """The error to raise for a message whose recipients are all suppressed, if the settings say
    to raise (``RAISE_WHEN_ALL_SUPPRESSED``); None: it counts as not sent."""
    if not conf.setting("RAISE_WHEN_ALL_SUPPRESSED"):
        return None
    return SuppressedError(addresses, transport=transport)
