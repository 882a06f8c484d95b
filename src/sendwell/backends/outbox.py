"""The outbox backend: write messages to the database now, deliver them from a worker.

``send_messages()`` renders and checks every message, stores it inside the caller's transaction
and asks for delivery once that transaction commits, so it returns in milliseconds, a rollback
sends nothing, and a message that cannot be sent as it is (bad address, header, tag, size) is
refused here, in the caller's code, not discovered by a worker later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction

from sendwell import conf
from sendwell.delivery import Route, build_record, save_queued, suppress
from sendwell.delivery.records import Queued
from sendwell.exceptions import ConfigurationError, DeliveryError
from sendwell.options import ses_options
from sendwell.transports.ses import SESTransport
from sendwell.transports.smtp import SMTPTransport


class OutboxBackend(BaseEmailBackend):
    """Queue messages for delivery through SES, SMTP, or SES with SMTP failover.

    Options (``MAILERS[alias]["OPTIONS"]``): ``ses`` (a dict of SES options, or None), ``smtp``
    (a dict of SMTP options, or None) and ``failover`` (bool: SES first, SMTP when SES cannot take
    a message). On Django 5.2: ``SENDWELL_TRANSPORT`` ("ses", "smtp" or "failover") with the
    classic SES and ``EMAIL_*`` settings. After ``send_messages()``, each message's outbox row id
    is ``message.sendwell_id``.
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        alias: str | None = None,
        _ignore_unknown_kwargs: set[str] | None = None,
        ses: dict[str, Any] | None = None,
        smtp: dict[str, Any] | None = None,
        failover: bool = False,
        **unknown: Any,
    ) -> None:
        for ignored in {*(_ignore_unknown_kwargs or ()), "username", "password"}:
            unknown.pop(ignored, None)
        if unknown:
            raise ConfigurationError(
                f"OutboxBackend({alias or 'EMAIL_BACKEND'}): unknown option(s) "
                f"{', '.join(sorted(unknown))}",
                remedy="known options: ses, smtp, failover",
            )
        if alias is None:  # RemovedInSendwellDjango52: classic settings.
            ses, smtp, failover = _classic_options()
        super().__init__(alias=alias)
        self.alias = alias
        self.fail_silently = fail_silently
        where = f"OutboxBackend({alias or 'EMAIL_BACKEND'})"
        if ses is None and smtp is None:
            raise ConfigurationError(
                f"{where}: neither 'ses' nor 'smtp' options are set",
                remedy="set USE_SES=True with AWS_SES_REGION_NAME, or the EMAIL_* SMTP variables",
            )
        if failover and (ses is None or smtp is None):
            raise ConfigurationError(
                f"{where}: failover needs both SES and SMTP settings",
                remedy="set USE_SES=True and EMAIL_HOST (with its EMAIL_* variables), or "
                "EMAIL_FAILOVER=False",
            )
        ses_transport = None
        if ses is not None:
            # The outbox retries on its own schedule; botocore retrying inside a call would
            # only add duplicates after timeouts and hide errors from the circuit breaker.
            ses_transport = SESTransport(ses_options({"max_attempts": 1, **ses}, where=where))
        self.route = Route.of(
            ses_transport,
            SMTPTransport(smtp, alias=alias) if smtp is not None else None,
            failover=failover,
        )

    def __repr__(self) -> str:
        return f"<OutboxBackend alias={self.alias!r} transport={self.route.name}>"

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue the messages; the number queued (one whose recipients are all suppressed is
        recorded as suppressed and not counted)."""
        queued: list[Queued] = []
        emails: list[EmailMessage] = []
        refusal: DeliveryError | None = None
        for email in email_messages or ():
            try:
                record = build_record(email, self.route, mailer=self.alias or "default")
            except DeliveryError:
                if self.fail_silently:
                    continue
                raise
            if record is None:
                continue
            message, everyone = record
            prepared, suppressed = suppress.split(everyone)
            queued.append(Queued(message, prepared.recipients if prepared else (), suppressed))
            emails.append(email)
            if prepared is None and not self.fail_silently:
                refusal = suppress.all_suppressed_error(suppressed, self.route.first.name)
                if refusal is not None:
                    break  # as a synchronous backend stops at its first error
        if queued:
            with transaction.atomic():
                save_queued(queued)
                # After the caller's transaction commits (at once if there is none): a
                # rolled-back request sends nothing, and the worker never looks for rows it
                # cannot see yet.
                if any(item.recipients for item in queued):
                    transaction.on_commit(_wake_worker)
            for email, item in zip(emails, queued, strict=True):
                email.sendwell_id = item.message.pk  # type: ignore[attr-defined]
        if refusal is not None:
            raise refusal
        return sum(1 for item in queued if item.recipients)


def _wake_worker() -> None:
    from sendwell.tasks import enqueue_drain  # noqa: PLC0415 - tasks import this module's peers

    enqueue_drain()


# RemovedInSendwellDjango52
def _classic_options() -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    transport = getattr(settings, "SENDWELL_TRANSPORT", "ses")
    ses = conf.classic_ses_options() if transport in ("ses", "failover") else None
    smtp: dict[str, Any] | None = {} if transport in ("smtp", "failover") else None
    return ses, smtp, transport == "failover"
