"""The Django email backend for Amazon SES (v2 ``SendEmail`` by default, v1 ``SendRawEmail``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from sendwell import conf
from sendwell.delivery import Route, SyncRecords, SyncSend, begin_send, send_now
from sendwell.exceptions import DeliveryError
from sendwell.options import ses_options
from sendwell.transports.base import AcceptedCall
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
        self.route = Route.of(self.transport)

    def __repr__(self) -> str:
        return (
            f"<SESBackend alias={self.alias!r} region={self.options.region_name!r} "
            f"api=v{self.options.api_version}>"
        )

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        messages = list(email_messages or ())
        records = SyncRecords()  # written once for the whole batch, even when it raises
        width = min(len(messages), max(1, int(conf.setting("SYNC_CONCURRENCY"))))
        try:
            if width > 1:
                return self._send_overlapped(messages, records, width)
            return sum(self._send_one(message, records) for message in messages)
        finally:
            records.flush()

    def _send_one(self, email: EmailMessage, records: SyncRecords) -> int:
        try:
            calls = send_now(email, self.route, mailer=self.alias or "default", records=records)
        except DeliveryError:
            if self.fail_silently:
                return 0
            raise
        return _mark_sent(email, calls)

    def _send_overlapped(
        self, messages: list[EmailMessage], records: SyncRecords, width: int
    ) -> int:
        """Send ``messages`` with up to ``width`` SES calls in flight.

        Each call spends most of its time waiting for SES; meanwhile this thread renders the next
        message and takes its slot from the rate limiter, so a batch goes out at the pace of the
        slower of the two, not of their sum, and never faster than the limiter allows. Only the
        HTTP calls run in the pool (the boto3 client is shared and thread-safe): rendering,
        limiter and records stay in this thread, on its database connection and transaction.

        Outcomes are taken in message order. The first failure (unless ``fail_silently``) stops
        the batch as it does one message at a time, except that the up to ``width - 1`` messages
        after it whose calls had started are finished and recorded; their SES ids are set as
        usual. Then the failure is raised.
        """
        sent = 0
        failure: Exception | None = None
        in_flight: deque[tuple[EmailMessage, SyncSend, Future[list[AcceptedCall]]]] = deque()
        mailer = self.alias or "default"

        def settle_oldest() -> None:
            nonlocal sent, failure
            email, send, future = in_flight.popleft()
            try:
                # The first call's outcome; further calls and throttling retries happen here.
                calls = send.complete(future.result)
            except DeliveryError as error:
                send.failed(error, records)
                if failure is None and not self.fail_silently:
                    failure = error
                return
            send.succeeded(calls, records)
            sent += _mark_sent(email, calls)

        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="sendwell-ses") as pool:
            try:
                for email in messages:
                    if failure is not None:
                        break
                    try:
                        send = begin_send(email, self.route, mailer=mailer, records=records)
                    except DeliveryError:
                        if self.fail_silently:
                            continue
                        raise
                    if send is None:  # no recipients
                        continue
                    future = pool.submit(send.first_call)
                    in_flight.append((email, send, future))
                    if len(in_flight) >= width:
                        settle_oldest()
            except Exception as error:
                # This message's error comes after the outcomes of the calls before it.
                while in_flight:
                    settle_oldest()
                if failure is None:
                    failure = error
            finally:
                # Every call that started is finished and recorded, whatever happens here.
                while in_flight:
                    settle_oldest()
        if failure is not None:
            raise failure
        return sent


def _mark_sent(email: EmailMessage, calls: list[AcceptedCall] | None) -> int:
    """Put the SES ids on ``email``; 1 if it was sent, 0 if it had nobody to send to."""
    if calls is None:
        return 0
    email.ses_message_ids = [call.message_id for call in calls]  # type: ignore[attr-defined]
    email.ses_message_id = calls[0].message_id  # type: ignore[attr-defined]
    return 1
