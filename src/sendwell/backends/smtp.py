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
from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend
from django.utils.functional import cached_property

from sendwell.conf import CLASSIC_SMTP_SETTINGS
from sendwell.delivery import Route, SyncRecords, send_now
from sendwell.exceptions import ConfigurationError, DeliveryError
from sendwell.options import SecretStr, raise_for, smtp_problems
from sendwell.transports.smtp import SMTPTransport
from sendwell.transports.smtp_errors import translate_smtp_error

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath, StrPath
    from django.core.mail.message import EmailMessage

__all__ = ["SMTPBackend"]

# RemovedInSendwellDjango52: Django 5.2 has no MAILERS; backends read the EMAIL_* settings.
_HAS_MAILERS = django.VERSION >= (6, 1)


class SMTPBackend(EmailBackend):
    """Django's SMTP email backend with sendwell's errors and an ``ssl_cafile`` option."""

    alias: str | None
    ssl_cafile: StrPath | None
    # Django's own (private, in 5.2 and 6.1): the connection while open() sets it up.
    _partial_connection: smtplib.SMTP | None

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
        if alias is None:
            self.ssl_cafile = (
                getattr(settings, "EMAIL_SSL_CAFILE", None) if ssl_cafile is None else ssl_cafile
            ) or None
            where, names = "the EMAIL_* settings", CLASSIC_SMTP_SETTINGS
        else:
            self.ssl_cafile = ssl_cafile or None
            where, names = f"MAILERS[{alias!r}]['OPTIONS']", {}
        if self.password:
            # Debuggers, error reports and vars() print attributes with repr().
            self.password = SecretStr(self.password)
        raise_for(
            smtp_problems(
                port=self.port,
                use_tls=self.use_tls,
                use_ssl=self.use_ssl,
                ssl_cafile=self.ssl_cafile,
                timeout=self.timeout,
                names=names,
            ),
            f"{type(self).__name__}: invalid options in {where}",
        )

    def __repr__(self) -> str:
        mode = "ssl" if self.use_ssl else "starttls" if self.use_tls else "plain"
        return (
            f"<{type(self).__name__} alias={self.alias!r} host={self.host!r} port={self.port!r} "
            f"{mode} username={self.username or None!r} ssl_cafile={self.ssl_cafile!r}>"
        )

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context: ``ssl_cafile`` (or the system CAs) plus any client cert.

        Django builds a bare ``PROTOCOL_TLS_CLIENT`` context when a client certificate is set,
        which trusts no CA at all; this one always starts from ``create_default_context()``.
        """
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigurationError(
                "EMAIL_SSL_KEYFILE / ssl_keyfile is set without EMAIL_SSL_CERTFILE / ssl_certfile",
                remedy="set the client certificate file too, or remove the key file",
            )
        try:
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        except OSError as exc:  # ssl.SSLError included: a file that is not PEM
            # Raised as a configuration error, not an OSError, so that fail_silently cannot hide
            # a broken certificate file: it would drop every message without a word.
            raise ConfigurationError(
                f"cannot load the TLS files for SMTP server {self.host}:{self.port} ({exc})",
                remedy=(
                    "EMAIL_SSL_CAFILE / ssl_cafile must be a PEM file of CA certificates; "
                    "EMAIL_SSL_CERTFILE and EMAIL_SSL_KEYFILE a PEM client certificate and key"
                ),
            ) from exc
        return context

    def open(self) -> bool | None:
        # Django's open() swallows OSError when fail_silently is on (and returns None) and
        # re-raises it otherwise; only the re-raised error gets to the except clause.
        try:
            opened = super().open()
        except BaseException as exc:
            self._drop_partial_connection()
            if isinstance(exc, OSError):
                raise self._translate(exc) from exc
            raise
        if opened is None:
            self._drop_partial_connection()
        return opened

    def close(self) -> None:
        try:
            super().close()
        except OSError as exc:
            raise self._translate(exc) from exc

    @cached_property
    def route(self) -> Route:
        """How sendwell's delivery code reaches this server: through this backend's connection."""
        return Route(ses=None, smtp=SMTPTransport(backend=self))

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send over one connection, as Django does, recording each message in the outbox."""
        if not email_messages:
            return 0
        with self._lock:
            try:
                new_connection = self.open()
            except DeliveryError:
                if self.fail_silently:
                    return 0
                raise
            if not self.connection or new_connection is None:
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

    def _drop_partial_connection(self) -> None:
        """Close the socket of a connection that failed to open.

        Django keeps it to send QUIT on the next open() or close(), which a failing caller
        rarely makes: the socket then lives as long as the exception and its traceback, one file
        descriptor per failed attempt. A connection that failed half-way has nothing worth a
        polite QUIT, which could itself wait out the timeout.
        """
        partial = self._partial_connection
        self._partial_connection = None
        if partial is not None:
            partial.close()

    def _translate(self, exc: OSError) -> DeliveryError:
        return translate_smtp_error(
            exc,
            host=str(self.host),
            port=int(self.port),
            username=self.username or None,
            tls=bool(self.use_ssl or self.use_tls),
        )


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
