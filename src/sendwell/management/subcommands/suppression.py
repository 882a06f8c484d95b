"""``manage.py sendwell suppression list|add|remove|import|export``: the suppression list.

``import`` and ``export`` speak CSV with the header ``address,reason,scope,expires_at,note``
(``export`` writes what ``import`` reads); ``import`` takes a file from another system too, with
only an ``address`` column, or SES's own list exported from the console (``EmailAddress``,
``Reason``). Long work shows its progress on a terminal.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from argparse import ArgumentParser
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sendwell import suppression
from sendwell.mime import LIST_NAME
from sendwell.models import EVERYTHING, Suppression, SuppressionReason

NAME = "suppression"
HELP = "list, add, remove, import or export suppressed addresses"
COLUMNS = ("address", "reason", "scope", "expires_at", "note")
# SES's console export names its columns so; its reasons are BOUNCE and COMPLAINT.
SES_REASONS = {"BOUNCE": SuppressionReason.HARD_BOUNCE, "COMPLAINT": SuppressionReason.COMPLAINT}


def add_arguments(parser: ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    listing = actions.add_parser("list", help="the suppressed addresses, newest first")
    listing.add_argument("--search", help="only addresses containing this")
    listing.add_argument("--reason", choices=SuppressionReason.values)
    listing.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    listing.add_argument("--json", action="store_true", help="JSON lines, for scripts")
    add = actions.add_parser("add", help="suppress addresses (reason: manual)")
    add.add_argument("addresses", nargs="+")
    add.add_argument("--scope", default=EVERYTHING, help="only for this mailing list")
    add.add_argument("--note", default="")
    remove = actions.add_parser("remove", help="send to addresses again")
    remove.add_argument("addresses", nargs="+")
    remove.add_argument("--scope", help="only this list's suppression (default: every one)")
    importing = actions.add_parser("import", help="suppress the addresses of a CSV file")
    importing.add_argument("file", help="a CSV file, or - for standard input")
    importing.add_argument(
        "--reason", default=SuppressionReason.MANUAL, choices=SuppressionReason.values
    )
    exporting = actions.add_parser("export", help="write the list as CSV")
    exporting.add_argument("file", nargs="?", default="-", help="a file, or - (the default)")


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    action = options["action"]
    if action == "list":
        _list(command, options)
    elif action == "add":
        for address in options["addresses"]:
            _check_address(address)
            suppression.suppress(
                address,
                reason=SuppressionReason.MANUAL,
                scope=options["scope"],
                note=options["note"],
            )
        command.stdout.write(f"suppressed {len(options['addresses'])}")
    elif action == "remove":
        removed = sum(
            suppression.unsuppress(a, scope=options["scope"]) for a in options["addresses"]
        )
        command.stdout.write(f"removed {removed}")
    elif action == "import":
        _import(command, options)
    else:
        _export(command, options["file"])


def _check_address(address: str) -> str:
    normal = suppression.normalize(address)
    if "@" not in normal or " " in normal or len(normal) > 320:
        raise CommandError(f"{address[:100]!r} is not an email address")
    return normal


def _list(command: BaseCommand, options: dict[str, Any]) -> None:
    rows = Suppression.objects.order_by("-created_at")
    if options["search"]:
        rows = rows.filter(address__icontains=options["search"])
    if options["reason"]:
        rows = rows.filter(reason=options["reason"])
    for row in rows[: max(0, options["limit"])]:
        if options["json"]:
            command.stdout.write(json.dumps(_as_dict(row), sort_keys=True))
        else:
            scope = f" [{row.scope}]" if row.scope else ""
            until = f" until {row.expires_at:%Y-%m-%d}" if row.expires_at else ""
            command.stdout.write(f"{row.address}{scope} {row.reason}{until}")


def _as_dict(row: Suppression) -> dict[str, str]:
    return {
        "address": row.address,
        "reason": row.reason,
        "scope": row.scope,
        "expires_at": row.expires_at.isoformat() if row.expires_at else "",
        "note": row.note,
    }


def _import(command: BaseCommand, options: dict[str, Any]) -> None:
    with _open(options["file"], "r") as stream:
        reader = csv.DictReader(stream)
        if not reader.fieldnames:
            raise CommandError(f"{options['file']}: empty, or not CSV with a header row")
        fields = {name.strip().lower(): name for name in reader.fieldnames}
        column = fields.get("address") or fields.get("emailaddress") or fields.get("email")
        if column is None:
            raise CommandError(
                f"{options['file']}: no address column (the header should name 'address'; "
                f"it has {', '.join(reader.fieldnames)[:200]})"
            )
        done = 0
        with _Progress(command, "imported") as progress:
            for line, record in enumerate(reader, start=2):
                address = (record.get(column) or "").strip()
                if not address:
                    continue
                try:
                    _check_address(address)
                except CommandError as error:
                    raise CommandError(f"{options['file']}, line {line}: {error}") from error
                scope = (record.get(fields.get("scope", "")) or "").strip()
                if scope and not LIST_NAME.fullmatch(scope):
                    raise CommandError(
                        f"{options['file']}, line {line}: scope {scope[:100]!r} is not a list name "
                        "(at most 100 ASCII letters, digits, '_', '.' and '-')"
                    )
                suppression.suppress(
                    address,
                    reason=_reason(record, fields, default=options["reason"]),
                    scope=scope,
                    expires_at=_expiry(record.get(fields.get("expires_at", "")), line),
                    note=(record.get(fields.get("note", "")) or "").strip(),
                )
                done += 1
                progress.tick(done)
    command.stdout.write(f"imported {done}")


def _reason(record: dict[str, Any], fields: dict[str, str], *, default: str) -> str:
    given = (record.get(fields.get("reason", "")) or "").strip()
    if given in SuppressionReason.values:
        return given
    if given.upper() in SES_REASONS:
        return SES_REASONS[given.upper()]
    return default


def _expiry(value: str | None, line: int) -> datetime | None:
    if not value or not value.strip():
        return None
    moment = parse_datetime(value.strip())
    if moment is None:
        raise CommandError(f"line {line}: expires_at {value[:40]!r} is not an ISO 8601 time")
    # A time without an offset is in the site's time zone, as the admin shows times.
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def _export(command: BaseCommand, path: str) -> None:
    with _open(path, "w") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        done = 0
        with _Progress(command, "exported") as progress:
            for row in Suppression.objects.order_by("address", "scope").iterator(chunk_size=2000):
                writer.writerow(_as_dict(row))
                done += 1
                progress.tick(done)
    if path != "-":
        command.stdout.write(f"exported {done} to {path}")


@contextlib.contextmanager
def _open(path: str, mode: str) -> Iterator[IO[str]]:
    """A file by name, or standard input/output for "-" (left open)."""
    if path == "-":
        yield sys.stdin if mode == "r" else sys.stdout
        return
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name.
        encoding = "utf-8-sig" if mode == "r" else "utf-8"
        stream = open(path, mode, newline="", encoding=encoding)  # noqa: SIM115 - closed below
    except OSError as error:
        raise CommandError(f"cannot open {path}: {error.strerror}") from error
    with stream:
        yield stream


class _Progress:
    """ "imported 12,000" on one line of stderr, on a terminal only, every 1,000 rows."""

    def __init__(self, command: BaseCommand, verb: str) -> None:
        self.stream = command.stderr
        self.verb = verb
        self.shown = False
        self.enabled = self.stream.isatty()

    def __enter__(self) -> _Progress:
        return self

    def tick(self, done: int) -> None:
        if self.enabled and done % 1000 == 0:
            self.stream.write(f"\r{self.verb} {done:,}", ending="")
            self.stream.flush()
            self.shown = True

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            self.stream.write("")
