"""Django's SMTP backend, with errors that say what to fix and a CA bundle option.

:class:`SMTPBackend` delivers exactly as ``django.core.mail.backends.smtp.EmailBackend`` does and
adds three things:

* ``ssl_cafile`` (``EMAIL_SSL_CAFILE`` on the classic settings path): the CA bundle to trust for
  STARTTLS and implicit TLS, for relays whose certificate a private CA signed. Django has no such
  option (its ``ssl_certfile`` is the *client* certificate).
* Every smtplib, ssl and socket error is raised as one of :mod:`sendwell.exceptions` (all still
  ``smtplib.SMTPException``), chained to the original; ``fail_silently`` is honoured exactly where
  Django honours it.
* ``repr()`` and the stored password never show the password.

This module owns what makes it a Django backend (options, ``fail_silently``, batches, the
outbox records); the session itself is a transport-layer
:class:`~sendwell.transports.smtp_connection.SMTPConnection`, the same code the outbox worker
sends with.

Configure it on Django 6.1 with ``MAILERS = {"smtp": {"BACKEND": "sendwell.backends.smtp.
SMTPBackend", "OPTIONS": {"host": ..., "ssl_cafile": ...}}}``, or on Django 5.2 with
``EMAIL_BACKEND`` and the ``EMAIL_*`` settings.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import django
from django.core.mail.backends.smtp import EmailBackend
from django.utils.functional import cached_property

from sendwell.delivery import Route, SyncRecords, send_now
from sendwell.exceptions import DeliveryError
from sendwell.options import SecretStr
from sendwell.transports.smtp import SMTPTransport
from sendwell.transports.smtp_connection import SMTPConnection, checked_server

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath, StrPath
    from django.core.mail.message import EmailMessage

__all__ = ["SMTPBackend"]

# RemovedInSendwellDjango52: Django 5.2 has no MAILERS; backends read the EMAIL_* settings.
_HAS_MAILERS = django.VERSION >= (6, 1)


class SMTPBackend(EmailBackend):
    """Django's SMTP email backend with sendwell's errors and an ``ssl_cafile`` option.

    Django's ``EmailBackend.__init__`` reads the options, once: ``smtp_connection`` (a
    transport-layer :class:`SMTPConnection`) is made from them and does everything on the wire,
    for ``send_messages()`` and for the outbox worker sending through ``route``. So ``open()``
    and ``close()`` are overridden and Django's ``connection_class``, ``_send()`` and
    ``_close_connection()`` go unused; ``connection`` is still the open smtplib session.
    """

    alias: str | None
    ssl_cafile: StrPath | None
    smtp_connection: SMTPConnection

    def __init__(  # noqa: PLR0917 - Django's positional signature, kept for compatibility
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: StrOrBytesPath | None = None,
        ssl_certfile: StrOrBytesPath | None = None,
        *,
        ssl_cafile: StrPath | None = None,
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        # RemovedInDjango70Warning: the whole "alias is None" path.
        if alias is None and _HAS_MAILERS:
            _warn_about_direct_construction(type(self))
        # ``alias`` is always passed on: Django 6.1 warns when it is missing, blaming this
        # module rather than the caller (warned about just above, when it applies); Django 5.2
        # ignores it.
        super().__init__(
            host,
            port,
            username,
            password,
            use_tls,
            fail_silently,
            use_ssl,
            timeout,
            ssl_keyfile,
            ssl_certfile,
            alias=alias,
            **kwargs,
        )
        self.alias = alias
        if self.password:
            # Debuggers, error reports and vars() print attributes with repr().
            self.password = SecretStr(self.password)
        self.smtp_connection = SMTPConnection(
            checked_server(self, ssl_cafile=ssl_cafile, alias=alias, what=type(self).__name__)
        )
        self.ssl_cafile = self.smtp_connection.server.ssl_cafile
        # One lock for this backend's batches and for sends through its route from other
        # threads (an outbox worker's): they all share the one session.
        self._lock = self.smtp_connection.lock

    def __repr__(self) -> str:
        mode = "ssl" if self.use_ssl else "starttls" if self.use_tls else "plain"
        return (
            f"<{type(self).__name__} alias={self.alias!r} host={self.host!r} port={self.port!r} "
            f"{mode} username={self.username or None!r} ssl_cafile={self.ssl_cafile!r}>"
        )

    @property
    def connection(self) -> smtplib.SMTP | None:
        """The open smtplib session, as on Django's backend, or None; open() and close() set it."""
        return self.smtp_connection.session

    @connection.setter
    def connection(self, value: smtplib.SMTP | None) -> None:
        # Django's __init__ starts with None, before smtp_connection exists; a session only
        # ever comes from open().
        if value is not None:
            raise AttributeError("SMTPBackend.connection is set by open(), not assigned")

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context: ``ssl_cafile`` (or the system CAs) plus any client cert.

        Raises ConfigurationError when the files cannot be loaded, even with ``fail_silently``.
        """
        return self.smtp_connection.ssl_context

    def open(self) -> bool | None:
        """Open the session unless it is open, as Django does: whether this call opened it.

        With ``fail_silently``, a server that cannot be reached or refuses the login makes it
        return None instead of raising.
        """
        try:
            return self.smtp_connection.open()
        except DeliveryError:  # every OSError, which is what Django's open() swallows
            if self.fail_silently:
                return None
            raise

    def close(self) -> None:
        self.smtp_connection.close(quiet=self.fail_silently)

    @cached_property
    def route(self) -> Route:
        """How sendwell's delivery code reaches this server: through this backend's connection."""
        return Route.of(SMTPTransport.on(self.smtp_connection))

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send over one connection, as Django does, recording each message in the outbox."""
        if not email_messages:
            return 0
        with self._lock:
            new_connection = self.open()
            if new_connection is None:
                return 0  # open() failed silently
            sent = 0
            mailer = self.alias or "default"
            records = SyncRecords()  # written once for the whole batch, even when it raises
            try:
                for message in email_messages:
                    try:
                        if send_now(message, self.route, mailer=mailer, records=records):
                            sent += 1
                    except DeliveryError:
                        if not self.fail_silently:
                            raise
            finally:
                records.flush()
                if new_connection:
                    self.close()
        return sent


# RemovedInDjango70Warning.
def _warn_about_direct_construction(cls: type[SMTPBackend]) -> None:
    """Warn as Django 6.1 does, but about the caller's frame, not sendwell's.

    Nothing is said when the caller is Django itself (``get_connection()``, ``mailers.default``
    without MAILERS): Django has already warned about the settings that led there.
    """
    from django.utils.deprecation import (  # noqa: PLC0415 - exists on Django 6.1 only
        RemovedInDjango70Warning,
        warn_about_external_use,
    )

    warn_about_external_use(
        f"Directly creating {cls.__module__}.{cls.__qualname__} instances is deprecated. "
        "Configure it in settings.MAILERS and use django.core.mail.mailers instead.",
        RemovedInDjango70Warning,
        skip_name_prefixes=("sendwell.",),
    )
