"""The SMTP transport: one prepared message -> one SMTP transaction.

:class:`SMTPTransport` is what the delivery engine holds for SMTP. It sends over an
:class:`~sendwell.transports.smtp_connection.SMTPConnection`: a synchronous backend's own (see
:meth:`SMTPTransport.on`), or, for the outbox worker, a new one for each message.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from typing import Any

from sendwell.mime import PreparedMessage
from sendwell.transports.base import AcceptedCall
from sendwell.transports.smtp_connection import SMTPConnection, server_from_options
from sendwell.transports.smtp_errors import TRANSPORT

__all__ = ["SMTPTransport"]


class SMTPTransport:
    """Hands prepared messages to an SMTP server.

    Bound to a connection with :meth:`on` (the synchronous backend's), it sends over that
    connection, which the backend opens and closes around a batch as Django's does; outside a
    batch it opens and closes it around each message. Unbound (the outbox worker), it reads
    ``options`` (or, with no ``alias``, the classic ``EMAIL_*`` settings) as ``SMTPBackend``
    does and opens a connection for each message: workers send from many threads, and one
    connection per message is the simple thread-safe choice for a transport that is mostly a
    fallback.
    """

    name = TRANSPORT
    # RFC 5321 requires servers to accept at least 100 recipients per transaction.
    max_recipients = 100
    # No account limit applies (a relay's own limits come back as errors), and no SES options.
    paced_by = None
    configuration_set = None

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, alias: str | None = None
    ) -> None:
        self.options = dict(options or {})
        self.alias = alias
        self.connection: SMTPConnection | None = None

    @classmethod
    def on(cls, connection: SMTPConnection) -> SMTPTransport:
        """A transport sending over ``connection``, taking turns with its other users."""
        transport = cls()
        transport.connection = connection
        return transport

    def check(self, prepared: PreparedMessage) -> None:
        """Nothing to check before the hand-over: the server says what it refuses."""

    def send(self, prepared: PreparedMessage) -> list[AcceptedCall]:
        connection = self.connection
        if connection is None:
            # Options read for every message, not once: settings are never cached
            # (override_settings works), and a mistake in them fails the message that meets it.
            connection = SMTPConnection(server_from_options(self.options, alias=self.alias))
        # A shared connection has one session: threads (an outbox worker's) take turns on it.
        with connection.lock:
            # open() is a no-op returning False when the session is already open (a batch).
            opened = connection.open()
            try:
                refused = connection.sendmail(
                    prepared.envelope_from, prepared.recipients, prepared.raw
                )
            finally:
                if opened:
                    connection.close()
        accepted = tuple(r for r in prepared.recipients if r not in refused)
        calls = [AcceptedCall("", accepted)]
        if refused:
            # Some recipients were taken: they count as sent; the others fail with the reasons.
            error = connection.translate(smtplib.SMTPRecipientsRefused(refused))
            error.accepted = calls
            raise error
        return calls
