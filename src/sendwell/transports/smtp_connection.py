"""The SMTP connection: one server's checked options and at most one open session with it.

:class:`SMTPConnection` owns everything sendwell does on the wire to an SMTP server: opening a
session (implicit TLS or STARTTLS with a verifying context, then AUTH), ``sendmail``, QUIT, and
dropping the socket of a session that failed half-way. Every smtplib, ssl and socket error leaves
it as one of :mod:`sendwell.exceptions` (see :mod:`sendwell.transports.smtp_errors`).

:class:`SMTPServer` is what it needs to know. Django's own SMTP ``EmailBackend`` reads the options
(its defaults, the classic ``EMAIL_*`` settings without MAILERS, its ``InvalidMailer`` checks);
:func:`checked_server` adds sendwell's ``ssl_cafile`` and checks, so sendwell's SMTP backend and
the outbox's SMTP transport read and check SMTP options in exactly the same way.
"""

from __future__ import annotations

import dataclasses
import smtplib
import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend
from django.core.mail.utils import DNS_NAME
from django.utils.functional import cached_property

from sendwell.conf import CLASSIC_SMTP_SETTINGS
from sendwell.exceptions import ConfigurationError, DeliveryError
from sendwell.options import raise_for, smtp_problems
from sendwell.transports.smtp_errors import translate_smtp_error

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath, StrPath

__all__ = ["SMTPConnection", "SMTPServer", "checked_server", "server_from_options"]


@dataclasses.dataclass(frozen=True)
class SMTPServer:
    """One SMTP server and how to talk to it: the options, read and checked."""

    host: str
    port: int
    username: str | None
    password: str | None = dataclasses.field(repr=False)
    use_tls: bool
    use_ssl: bool
    timeout: float | None
    ssl_keyfile: StrOrBytesPath | None
    ssl_certfile: StrOrBytesPath | None
    # The CA bundle to trust instead of the system's (a relay whose certificate a private CA
    # signed); Django's ssl_certfile is the *client* certificate.
    ssl_cafile: StrPath | None


def checked_server(
    read: EmailBackend, *, ssl_cafile: StrPath | None, alias: str | None, what: str
) -> SMTPServer:
    """The server whose options Django's backend ``read`` has read, with ``ssl_cafile``.

    With no ``alias`` (the classic settings of Django 5.2, or a backend created directly), an
    unset ``ssl_cafile`` comes from ``EMAIL_SSL_CAFILE``, as Django reads the other ``EMAIL_*``
    settings. Raises ConfigurationError, naming ``what`` and where the options came from, for the
    mistakes Django does not catch (or catches only when connecting).
    """
    if alias is None:
        if ssl_cafile is None:
            ssl_cafile = getattr(settings, "EMAIL_SSL_CAFILE", None)
        where, names = "the EMAIL_* settings", CLASSIC_SMTP_SETTINGS
    else:
        where, names = f"MAILERS[{alias!r}]['OPTIONS']", {}
    ssl_cafile = ssl_cafile or None
    raise_for(
        smtp_problems(
            port=read.port,
            use_tls=read.use_tls,
            use_ssl=read.use_ssl,
            ssl_cafile=ssl_cafile,
            timeout=read.timeout,
            names=names,
        ),
        f"{what}: invalid options in {where}",
    )
    return SMTPServer(
        host=read.host,
        port=read.port,
        username=read.username or None,
        password=read.password or None,
        use_tls=bool(read.use_tls),
        use_ssl=bool(read.use_ssl),
        timeout=read.timeout,
        ssl_keyfile=read.ssl_keyfile,
        ssl_certfile=read.ssl_certfile,
        ssl_cafile=ssl_cafile,
    )


def server_from_options(
    options: Mapping[str, Any], *, alias: str | None, what: str = "SMTPBackend"
) -> SMTPServer:
    """The server an ``SMTPBackend`` with these options (and ``alias``) would send to.

    ``options`` are ``MAILERS[alias]["OPTIONS"]``, or, with no alias, overrides of the classic
    ``EMAIL_*`` settings, which are read now. ``what`` names the options' owner in errors: the
    outbox's ``smtp`` options are SMTPBackend's options, and its errors have always said so.
    """
    django_options = dict(options)
    ssl_cafile = django_options.pop("ssl_cafile", None)
    # Only reads and checks the options; it is never opened. ``alias`` is always passed, as
    # SMTPBackend passes it: Django 6.1 warns about direct construction when it is missing.
    read = EmailBackend(alias=alias, **django_options)
    return checked_server(read, ssl_cafile=ssl_cafile, alias=alias, what=what)


class SMTPConnection:
    """At most one open SMTP session with ``server``, opened and closed as often as needed.

    Not thread-safe by itself: whoever shares one (a backend's batch, a worker's threads sending
    through that backend's route) takes turns on ``lock``.
    """

    session: smtplib.SMTP | None

    def __init__(self, server: SMTPServer) -> None:
        self.server = server
        self.session = None
        # Re-entrant: a batch holds it around several sends, and each send takes it again.
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        state = "open" if self.session is not None else "closed"
        return f"<{type(self).__name__} {self.server.host}:{self.server.port} {state}>"

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context: ``ssl_cafile`` (or the system CAs) plus any client cert.

        Django builds a bare ``PROTOCOL_TLS_CLIENT`` context when a client certificate is set,
        which trusts no CA at all; this one always starts from ``create_default_context()``.
        """
        server = self.server
        if server.ssl_keyfile and not server.ssl_certfile:
            raise ConfigurationError(
                "EMAIL_SSL_KEYFILE / ssl_keyfile is set without EMAIL_SSL_CERTFILE / ssl_certfile",
                remedy="set the client certificate file too, or remove the key file",
            )
        try:
            context = ssl.create_default_context(cafile=server.ssl_cafile)
            if server.ssl_certfile:
                context.load_cert_chain(server.ssl_certfile, server.ssl_keyfile)
        except OSError as exc:  # ssl.SSLError included: a file that is not PEM
            # Raised as a configuration error, not an OSError, so that fail_silently cannot hide
            # a broken certificate file: it would drop every message without a word.
            raise ConfigurationError(
                f"cannot load the TLS files for SMTP server {server.host}:{server.port} ({exc})",
                remedy=(
                    "EMAIL_SSL_CAFILE / ssl_cafile must be a PEM file of CA certificates; "
                    "EMAIL_SSL_CERTFILE and EMAIL_SSL_KEYFILE a PEM client certificate and key"
                ),
            ) from exc
        return context

    def open(self) -> bool:
        """Open a session unless one is open; return whether this call opened it.

        Raises a DeliveryError when the server cannot be reached or refuses TLS or the login,
        and ConfigurationError when the TLS files cannot be loaded.
        """
        if self.session is not None:
            return False
        server = self.server
        # Django's cached FQDN: socket.getfqdn() on every connection can take seconds.
        params: dict[str, Any] = {"local_hostname": DNS_NAME.get_fqdn()}
        if server.timeout is not None:
            params["timeout"] = server.timeout
        session: smtplib.SMTP | None = None
        try:
            if server.use_ssl:
                session = smtplib.SMTP_SSL(
                    server.host, server.port, context=self.ssl_context, **params
                )
            else:
                session = smtplib.SMTP(server.host, server.port, **params)
                if server.use_tls:
                    session.starttls(context=self.ssl_context)
            if server.username and server.password:
                session.login(server.username, server.password)
        except BaseException as exc:
            if session is not None:
                # A session that failed half-way has nothing worth a polite QUIT, which could
                # itself wait out the timeout; kept, its socket would live as long as the
                # exception and its traceback, one file descriptor per failed attempt.
                session.close()
            if isinstance(exc, OSError):  # smtplib's errors included
                raise self.translate(exc) from exc
            raise
        self.session = session
        return True

    def sendmail(self, sender: str, recipients: Sequence[str], raw: bytes) -> dict[str, Any]:
        """Send one message over the open session; return the recipients the server refused.

        Raises DeliveryError when the server refuses the message, or every recipient.
        """
        if self.session is None:
            raise RuntimeError(f"{self!r}: open() it before sending")
        try:
            return self.session.sendmail(sender, list(recipients), raw)
        except OSError as exc:  # smtplib's errors included
            raise self.translate(exc) from exc

    def close(self, *, quiet: bool = False) -> None:
        """Say QUIT and close the session, if one is open; it is forgotten even if QUIT fails.

        A session the server has already dropped, or whose TLS layer fails on the way out, is
        simply closed. Any other SMTP error in reply to QUIT is raised (translated) unless
        ``quiet``, which is a Django backend's ``fail_silently``; socket errors always are.
        """
        session, self.session = self.session, None
        if session is None:
            return
        try:
            session.quit()
        except (ssl.SSLError, smtplib.SMTPServerDisconnected):
            session.close()
        except OSError as exc:  # smtplib's other errors included
            session.close()
            if quiet and isinstance(exc, smtplib.SMTPException):
                return
            raise self.translate(exc) from exc

    def translate(self, exc: BaseException) -> DeliveryError:
        """The sendwell error for ``exc``, raised talking to this server."""
        return translate_smtp_error(
            exc,
            host=self.server.host,
            port=self.server.port,
            username=self.server.username,
            tls=self.server.use_ssl or self.server.use_tls,
        )
