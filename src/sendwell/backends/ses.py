"""The Django email backend for Amazon SES (v2 ``SendEmail`` by default, v1 ``SendRawEmail``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from sendwell import conf
from sendwell.delivery import Route, SyncRecords, send_now
from sendwell.exceptions import DeliveryError
from sendwell.options import ses_options
from sendwell.transports.ses import SESTransport


class SESBackend(BaseEmailBackend):
    """Send each message as raw MIME through Amazon SES.

    Options (``MAILERS[alias]["OPTIONS"]`` on Django 6.1, classic settings on 5.2): see
    :class:`sendwell.options.SESOptions`. After a successful send, ``message.ses_message_ids``
    holds the SES message id of each API call (one per 50 recipients) and ``message.ses_message_id``
    the first of them.
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        alias: str | None = None,
        _ignore_unknown_kwargs: set[str] | None = None,
        **options: Any,
    ) -> None:
        # Django 6.1 passes get_connection()'s legacy arguments (e.g. send_mail(auth_user=...))
        # here to be ignored; they mean nothing to SES.
        # Django 5.2 passes send_mail()'s auth_user/auth_password as username/password.
        for ignored in {*(_ignore_unknown_kwargs or ()), "username", "password"}:
            options.pop(ignored, None)
        if alias is None:  # RemovedInSendwellDjango52: no MAILERS, read classic settings.
            options = {**conf.classic_ses_options(), **options}
        super().__init__(alias=alias)
        self.alias = alias  # RemovedInSendwellDjango52: 5.2's base class does not keep it.
        # Our own attribute: BaseEmailBackend.fail_silently is deprecated on Django 6.1.
        self.fail_silently = fail_silently
        self.options = ses_options(options, where=f"SESBackend({alias or 'EMAIL_BACKEND'})")
        self.transport = SESTransport(self.options)
        self.route = Route(ses=self.transport, smtp=None)

    def __repr__(self) -> str:
        return (
            f"<SESBackend alias={self.alias!r} region={self.options.region_name!r} "
            f"api=v{self.options.api_version}>"
        )

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        mailer = self.alias or "default"
        records = SyncRecords()  # written once for the whole batch, even when it raises
        try:
            for message in email_messages or ():
                try:
                    calls = send_now(message, self.route, mailer=mailer, records=records)
                except DeliveryError:
                    if self.fail_silently:
                        continue
                    raise
                if calls is None:  # no recipients
                    continue
                message.ses_message_ids = [call.message_id for call in calls]  # type: ignore[attr-defined]
                message.ses_message_id = calls[0].message_id  # type: ignore[attr-defined]
                sent += 1
        finally:
            records.flush()
        return sent
