"""The SMTP transport: one prepared message -> one SMTP transaction."""

from __future__ import annotations

import smtplib
from typing import TYPE_CHECKING, Any

from sendwell.exceptions import TransportConnectionError
from sendwell.mime import PreparedMessage
from sendwell.transports.base import AcceptedCall
from sendwell.transports.smtp_errors import TRANSPORT, translate_smtp_error

if TYPE_CHECKING:
    from sendwell.backends.smtp import SMTPBackend

__all__ = ["SMTPTransport"]


class SMTPTransport:
    """Hands prepared messages to an SMTP server through sendwell's :class:`SMTPBackend`.

    Bound to a backend (the synchronous path), it uses that backend's connection, which the
    backend opens and closes around a batch as Django's does. Unbound (the outbox worker), it
    builds a backend from ``options`` for each message and closes it afterwards: workers send
    from many threads, and one connection per message is the simple thread-safe choice for a
    transport that is mostly a fallback.
    """

    name = TRANSPORT
    # RFC 5321 requires servers to accept at least 100 recipients per transaction.
    max_recipients = 100

    def __init__(
        self,
        options: dict[str, Any] | None = None,
        *,
        alias: str | None = None,
        backend: SMTPBackend | None = None,
    ) -> None:
        self.options = dict(options or {})
        self.alias = alias
        self.backend = backend

    def _new_backend(self) -> SMTPBackend:
        from sendwell.backends.smtp import SMTPBackend  # noqa: PLC0415 - it imports this module

        # RemovedInSendwellDjango52: with no alias the backend reads the classic EMAIL_* settings.
        return SMTPBackend(alias=self.alias, **self.options)

    def send(self, prepared: PreparedMessage) -> list[AcceptedCall]:
        if self.backend is None:
            return self._send(self._new_backend(), prepared)
        # A bound backend has one connection: threads (an outbox worker) take turns on it.
        with self.backend._lock:
            return self._send(self.backend, prepared)

    def _send(self, backend: SMTPBackend, prepared: PreparedMessage) -> list[AcceptedCall]:
        # open() is a no-op returning False when the connection is already open (a batch).
        opened = backend.open()
        connection = backend.connection
        if connection is None:  # open() failed silently (fail_silently)
            raise TransportConnectionError(
                f"could not connect to the SMTP server {backend.host}:{backend.port}",
                remedy="check EMAIL_HOST and EMAIL_PORT",
                transport=TRANSPORT,
            )
        try:
            refused = connection.sendmail(
                prepared.envelope_from, list(prepared.recipients), prepared.raw
            )
        except (smtplib.SMTPException, OSError) as exc:
            raise backend._translate(exc) from exc
        finally:
            if opened:
                backend.close()
        accepted = tuple(r for r in prepared.recipients if r not in refused)
        calls = [AcceptedCall("", accepted)]
        if refused:
            # Some recipients were taken: they count as sent; the others fail with the reasons.
            error = translate_smtp_error(
                smtplib.SMTPRecipientsRefused(refused),
                host=str(backend.host),
                port=int(backend.port),
                username=backend.username or None,
            )
            error.accepted = calls
            raise error
        return calls
