"""A real SMTP server on 127.0.0.1 for the tests and the demo, built on aiosmtpd.

It speaks the same protocol a production relay does (STARTTLS or implicit TLS with a certificate
made at run time, AUTH PLAIN/LOGIN), records every message it accepts, and can be told to answer
with a chosen reply, so client code is tested against the wire rather than against a mock::

    with LocalSMTPServer(tls=True, auth=("user", "secret"), require_starttls=True) as server:
        ...  # connect to server.host:server.port, trust server.ca_file
        server.wait_for(1)
        assert server.messages[0].recipients == ("to@example.com",)

aiosmtpd and trustme are in sendwell's ``test`` extra; only this module imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import email.policy
import logging
import shutil
import socket
import ssl
import tempfile
import threading
import weakref
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from testservers.base import LOCALHOST, TestServer, free_port

__all__ = ["LocalSMTPServer", "ReceivedMessage", "unused_port"]

# Names the test certificate is valid for: clients may connect by either.
CERTIFICATE_NAMES = ("localhost", LOCALHOST)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted, as it arrived on the wire."""

    sender: str
    """The envelope sender (``MAIL FROM``)."""
    recipients: tuple[str, ...]
    """The envelope recipients (``RCPT TO``), Bcc included, in the order given."""
    raw: bytes
    """The DATA as received, dot-unstuffed, before any decoding."""
    message: email.message.EmailMessage
    """``raw`` parsed with ``email.policy.default``."""
    tls: bool
    """Whether the session was encrypted (STARTTLS or implicit TLS)."""
    login: str | None
    """The user name the client authenticated as, if it did."""
    client_certificate_names: tuple[str, ...]
    """The subjectAltName values of the client certificate, if the client presented one."""


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for connection-refused tests)."""
    return free_port()


class _LoginDataNoise(logging.Filter):
    """Drop aiosmtpd's "Session.login_data is deprecated" warning.

    aiosmtpd logs it from its own AUTH code on every successful login, whatever the caller does;
    in a demo's output it reads like a problem with the client.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


_aiosmtpd_log = logging.getLogger("mail.log")
if not any(isinstance(f, _LoginDataNoise) for f in _aiosmtpd_log.filters):
    _aiosmtpd_log.addFilter(_LoginDataNoise())


class _BoundController(Controller):
    """A Controller that serves on a socket bound in advance.

    aiosmtpd binds the port itself and then connects to ``self.port`` to check the server is
    up, so asking it for port 0 fails; binding first (port 0, the kernel picks) avoids both that
    and the race of "find a free port, close it, hope nobody takes it".
    """

    def __init__(self, handler: _RecordingHandler, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(handler, hostname=LOCALHOST, port=sock.getsockname()[1], **kwargs)
        self._sock = sock
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def factory(self) -> SMTP:
        session = SMTP(self.handler, **self.SMTP_kwargs)  # what Controller.factory() does
        self._sessions.add(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        # Since Python 3.12 the listener waits for every client connection to end, and a
        # client that gave up mid-conversation (the very case error tests create) may keep its
        # socket open; TLS ones then wait out asyncio's 30 s shutdown timeout. Cut them first.
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self._abort_sessions)
        super().stop(no_assert)

    def _abort_sessions(self) -> None:
        for session in list(self._sessions):
            if isinstance(session.transport, asyncio.Transport):
                session.transport.abort()


class _RecordingHandler:
    """aiosmtpd handler hooks: enforce AUTH, inject chosen replies, record what is accepted."""

    def __init__(self, server: LocalSMTPServer) -> None:
        self._server = server

    async def handle_MAIL(  # aiosmtpd looks hooks up by these names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Enforced here rather than with aiosmtpd's auth_required, which warns when AUTH is
        # allowed without TLS - a configuration these tests need (a plain local relay).
        if self._server.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if self._server.mail_reply is not None:
            return self._server.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._server.recipient_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._server.data_reply is not None:
            return self._server.data_reply
        raw = envelope.original_content or b""
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        login = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        self._server._record(
            ReceivedMessage(
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                raw=raw,
                message=_parse(raw),
                tls=ssl_object is not None,
                login=login,
                client_certificate_names=_certificate_names(ssl_object),
            )
        )
        return "250 OK: queued"


def _parse(raw: bytes) -> email.message.EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, email.message.EmailMessage)  # policy.default guarantees it
    return message


def _certificate_names(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str, ...]:
    if ssl_object is None:
        return ()
    certificate = ssl_object.getpeercert()
    if not certificate:
        return ()
    names = certificate.get("subjectAltName", ())
    # subjectAltName is a tuple of (kind, value) pairs, e.g. ("DNS", "client.example").
    return tuple(str(entry[1]) for entry in names if isinstance(entry, tuple))


class LocalSMTPServer(TestServer):
    """An SMTP server on 127.0.0.1 and a free port, running in a background thread.

    ``tls=True`` offers STARTTLS; ``implicit_tls=True`` wraps the whole connection in TLS (the
    port-465 style). Either way the certificate is issued for "localhost" and "127.0.0.1" by a
    throw-away CA whose PEM file is :attr:`ca_file`. ``auth=(user, password)`` requires AUTH
    PLAIN/LOGIN before ``MAIL FROM`` and, when TLS is on, only offers it after STARTTLS, as real
    submission servers do. ``require_starttls=True`` refuses every command but EHLO/STARTTLS/QUIT
    on an unencrypted connection (``530 Must issue a STARTTLS command first``).

    ``mail_reply``, ``recipient_replies`` (lower-cased address -> reply) and ``data_reply`` make
    the server answer ``MAIL``, ``RCPT`` or ``DATA`` with a chosen reply line such as
    ``"454 Throttling failure: Maximum sending rate exceeded."``; they can be changed while the
    server runs.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        require_starttls: bool = False,
        mail_reply: str | None = None,
        recipient_replies: Mapping[str, str] | None = None,
        data_reply: str | None = None,
    ) -> None:
        if tls and implicit_tls:
            raise ValueError("choose tls (STARTTLS) or implicit_tls, not both")
        if require_starttls and not tls:
            raise ValueError("require_starttls needs tls=True")
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.auth = auth
        self.require_starttls = require_starttls
        self.mail_reply = mail_reply
        self.recipient_replies: dict[str, str] = {
            address.lower(): reply for address, reply in (recipient_replies or {}).items()
        }
        self.data_reply = data_reply
        self.host = LOCALHOST
        self.port = 0
        self.ca_file: str | None = None
        """PEM file of the CA that issued the server certificate (``None`` without TLS)."""
        self._ca: trustme.CA | None = None
        self._directory: Path | None = None
        self._controller: _BoundController | None = None
        self._messages: list[ReceivedMessage] = []
        self._arrived = threading.Condition()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port, start serving, and return once the server answers."""
        if self._controller is not None:
            raise RuntimeError("the server is already running")
        server_context = self._make_tls_context() if self.tls or self.implicit_tls else None
        smtp_options: dict[str, Any] = {
            "server_hostname": "localhost",  # skip aiosmtpd's getfqdn(), slow without DNS
            # Only offer AUTH after STARTTLS, as submission servers do. aiosmtpd only knows about
            # its own STARTTLS, so with implicit TLS (already encrypted) the check must be off.
            "auth_require_tls": self.tls,
            "authenticator": self._authenticate,
        }
        if self.tls:
            smtp_options["tls_context"] = server_context
            smtp_options["require_starttls"] = self.require_starttls
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOCALHOST, 0))
        controller = _BoundController(
            _RecordingHandler(self),
            sock,
            ssl_context=server_context if self.implicit_tls else None,
            **smtp_options,
        )
        try:
            controller.start()
        except BaseException:
            # start() can fail with the serving thread already running: end it too.
            with contextlib.suppress(Exception):
                controller.stop(no_assert=True)
            sock.close()
            self._remove_files()
            raise
        self.port = sock.getsockname()[1]
        self._controller = controller

    def stop(self) -> None:
        """Stop serving and delete the certificate files; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        self._remove_files()

    # --- what arrived ------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the messages accepted so far, oldest first."""
        with self._arrived:
            return list(self._messages)

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages have arrived; raise ``TimeoutError`` if not."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._messages)} message(s) arrived at {self.host}:{self.port} "
                    f"within {timeout}s, expected {count}"
                )
            return list(self._messages)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._arrived:
            self._messages.clear()

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context for clients that trusts only this server's CA."""
        if self.ca_file is None:
            raise RuntimeError("the server runs without TLS, or has not started")
        return ssl.create_default_context(cafile=self.ca_file)

    def issue_client_certificate(self, name: str = "client.example") -> tuple[str, str]:
        """Issue a client certificate from the server's CA; return ``(certfile, keyfile)``.

        The server asks for (but does not require) a client certificate, verifies it against its
        CA and records its names in :attr:`ReceivedMessage.client_certificate_names`.
        """
        if self._ca is None or self._directory is None:
            raise RuntimeError("the server runs without TLS, or has not started")
        leaf = self._ca.issue_cert(name)
        certfile = self._directory / f"{name}.crt"
        keyfile = self._directory / f"{name}.key"
        certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(keyfile))
        return str(certfile), str(keyfile)

    # --- internals ---------------------------------------------------------------------------

    def _record(self, message: ReceivedMessage) -> None:
        with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if self.auth is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username, password = self.auth
        ok = auth_data.login == username.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def _make_tls_context(self) -> ssl.SSLContext:
        self._ca = trustme.CA()
        self._directory = Path(tempfile.mkdtemp(prefix="sendwell-smtp-"))
        ca_file = self._directory / "ca.pem"
        self._ca.cert_pem.write_to_path(str(ca_file))
        self.ca_file = str(ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(*CERTIFICATE_NAMES).configure_cert(context)
        # Ask for a client certificate without requiring one, so mutual-TLS clients can be
        # checked and ordinary clients still connect.
        self._ca.configure_trust(context)
        context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def _remove_files(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = None
        self._ca = None
        self.ca_file = None
