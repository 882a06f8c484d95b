"""What an SMTP failure means, and what to do about it.

smtplib reports failures as a dozen exception types carrying a bare reply code, and the socket and
ssl layers add their own; :func:`translate_smtp_error` turns each into one of sendwell's
:mod:`~sendwell.exceptions` classes, so the delivery engine knows whether to retry and the person
reading the log knows what to change. The message names the server (``host:port``) and quotes its
reply; the remedy names the setting to fix. The password is never passed in, so it cannot leak.

Replies from the SES SMTP interface (``email-smtp.<region>.amazonaws.com``) are recognised by their
wording, which AWS documents in "Amazon SES SMTP issues" and the SMTP response code list.

This module owns the translation of SMTP-side errors, and nothing else: the connection
(:mod:`sendwell.transports.smtp_connection`) and the transport only call it.
"""

from __future__ import annotations

import errno
import smtplib
import socket
import ssl

from sendwell.exceptions import (
    AccountSendingPausedError,
    ConfigurationSetDoesNotExistError,
    DeliveryError,
    IdentityNotVerifiedError,
    InvalidAddressError,
    MessageRejectedError,
    MessageTooLargeError,
    PermanentDeliveryError,
    QuotaExceededError,
    RecipientsRefusedError,
    SMTPAuthenticationFailedError,
    ThrottledError,
    TLSCertificateError,
    TLSRequiredError,
    TransientDeliveryError,
    TransportConnectionError,
    TransportTimeoutError,
)

__all__ = ["TRANSPORT", "translate_smtp_error"]

# The name every SMTP error (and the SMTP transport) reports itself by.
TRANSPORT = "smtp"

# OpenSSL's name for "the certificate is valid, but not for the host name we connected to".
_X509_V_ERR_HOSTNAME_MISMATCH = 62
# TLS handshake failures that mean "the other side is not speaking TLS at all": implicit TLS
# (EMAIL_USE_SSL) pointed at a plain-text port such as 587 or 25.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)
_GAI_NAMES = {getattr(socket, name): name for name in dir(socket) if name.startswith("EAI_")}

_TRANSIENT_REMEDY = (
    "the server reported a temporary failure; sendwell retries later, which usually succeeds"
)
_PERMANENT_REMEDY = "the server will not accept this as it is; its reply says why"
_DISCONNECTED_REMEDY = (
    "retrying usually helps; if every attempt fails, check that EMAIL_USE_SSL / EMAIL_USE_TLS "
    "match the port (465 for implicit TLS, 587 for STARTTLS) and that the server accepts "
    "connections from this host"
)


def translate_smtp_error(
    exc: BaseException,
    *,
    host: str,
    port: int,
    username: str | None,
    tls: bool = False,
) -> DeliveryError:
    """Return the sendwell error that explains ``exc``, raised talking to ``host:port``.

    ``username`` is named in authentication errors; ``tls`` says whether the connection was
    encrypted when the error happened (it decides what "AUTH not supported" means). The caller
    raises the result ``from exc`` so the original stays in the traceback. A ``DeliveryError``
    is returned unchanged.
    """
    if isinstance(exc, DeliveryError):
        return exc
    where = _where(host, port)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipients_refused(exc, where)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _from_reply(exc, where, username)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _not_supported(exc, where, tls)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read that timed out as "Connection unexpectedly closed: timed out".
        if isinstance(exc.__context__, TimeoutError):
            return _timeout(exc.__context__, where, port)
        return TransportConnectionError(
            f"SMTP server {where} closed the connection unexpectedly ({exc})",
            remedy=_DISCONNECTED_REMEDY,
            code="disconnected",
            transport=TRANSPORT,
        )
    if isinstance(exc, smtplib.SMTPException):
        return _other_smtp(exc, where, username)
    # SSLCertVerificationError before the generic SSLError it subclasses; timeouts before OSError.
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate(exc, host, where)
    if isinstance(exc, TimeoutError):
        return _timeout(exc, where, port)
    if isinstance(exc, ssl.SSLError):
        return _tls_failure(exc, where, port)
    if isinstance(exc, socket.gaierror):
        return TransportConnectionError(
            f"the SMTP host name {host!r} does not resolve ({exc.strerror or exc})",
            remedy=(
                "check the spelling of EMAIL_HOST (for SES: email-smtp.<region>.amazonaws.com) "
                "and that this machine can resolve DNS names"
            ),
            code=_GAI_NAMES.get(exc.errno, "gaierror"),
            transport=TRANSPORT,
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransportConnectionError(
            f"the connection to SMTP server {where} was refused",
            remedy=(
                "nothing accepts connections there: check EMAIL_HOST and EMAIL_PORT (587 for "
                "STARTTLS, 465 for implicit TLS), and that the server is running"
            ),
            code="ECONNREFUSED",
            transport=TRANSPORT,
        )
    if isinstance(exc, OSError):
        return TransportConnectionError(
            f"the connection to SMTP server {where} failed ({exc.strerror or exc})",
            remedy=(
                f"check EMAIL_HOST and EMAIL_PORT, and that no firewall, security group or "
                f"hosting provider blocks outbound connections to port {port} (many cloud "
                f"providers block port 25; use 587)"
            ),
            code=errno.errorcode.get(exc.errno or 0, type(exc).__name__),
            transport=TRANSPORT,
        )
    return DeliveryError(
        f"sending through SMTP server {where} failed: {type(exc).__name__}: {exc}",
        remedy="",
        transport=TRANSPORT,
    )


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _text(value: bytes | str) -> str:
    """A server reply as one readable line (multi-line replies arrive joined by newlines)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split())


def _recipients_refused(exc: smtplib.SMTPRecipientsRefused, where: str) -> DeliveryError:
    refused = {address: (code, _text(reply)) for address, (code, reply) in exc.recipients.items()}
    listing = "; ".join(f"<{address}> {code} {reply}" for address, (code, reply) in refused.items())
    codes = ",".join(sorted({str(code) for code, _reply in refused.values()}))
    message = f"SMTP server {where} refused every recipient: {listing}"
    # A refusal made only of 4xx replies (greylisting, "mailbox busy", "too many recipients")
    # is the server saying "not now": retrying is right, failing the message for good is not.
    if refused and all(400 <= code < 500 for code, _reply in refused.values()):
        return TransientDeliveryError(
            message, remedy=_TRANSIENT_REMEDY, code=codes, transport=TRANSPORT
        )
    return RecipientsRefusedError(message, code=codes, transport=TRANSPORT)


def _from_reply(
    exc: smtplib.SMTPResponseException, where: str, username: str | None
) -> DeliveryError:
    code = exc.smtp_code
    reply = _text(exc.smtp_error)
    lowered = reply.lower()
    code_text = str(code)

    # Said the same way whichever command drew it: at MAIL FROM, at AUTH, even at the greeting.
    if code in (530, 538) and ("starttls" in lowered or "encryption" in lowered):
        return TLSRequiredError(
            f"SMTP server {where} requires TLS before this command: {code} {reply}",
            code=code_text,
            transport=TRANSPORT,
        )
    if code == 530 and "auth" in lowered:
        remedy = None
        if not username:
            remedy = (
                "the server only accepts mail from authenticated clients: set "
                "EMAIL_HOST_USER and EMAIL_HOST_PASSWORD"
            )
        return SMTPAuthenticationFailedError(
            f"SMTP server {where} requires authentication: {code} {reply}",
            remedy=remedy,
            code=code_text,
            transport=TRANSPORT,
        )

    if isinstance(exc, smtplib.SMTPAuthenticationError):
        message = f"SMTP server {where} refused the login of user {username!r}: {code} {reply}"
        if 400 <= code < 500:
            # 454 "Temporary authentication failure": the credentials may well be right.
            return TransientDeliveryError(
                message, remedy=_TRANSIENT_REMEDY, code=code_text, transport=TRANSPORT
            )
        return SMTPAuthenticationFailedError(message, code=code_text, transport=TRANSPORT)

    if isinstance(exc, smtplib.SMTPSenderRefused):
        sender = _text(exc.sender)
        message = f"SMTP server {where} refused the sender <{sender}>: {code} {reply}"
    elif isinstance(exc, smtplib.SMTPDataError):
        message = f"SMTP server {where} rejected the message: {code} {reply}"
    elif isinstance(exc, smtplib.SMTPConnectError):
        message = f"SMTP server {where} refused the connection: {code} {reply}"
    elif isinstance(exc, smtplib.SMTPHeloError):
        message = f"SMTP server {where} refused the greeting (EHLO/HELO): {code} {reply}"
    else:
        message = f"SMTP server {where} replied {code} {reply}"

    # SES's SMTP interface: "454 Throttling failure: Daily message quota exceeded." and
    # "454 Throttling failure: Maximum sending rate exceeded." share a code; the words differ.
    if "quota exceeded" in lowered:
        return QuotaExceededError(message, code=code_text, transport=TRANSPORT)
    if "throttl" in lowered or "sending rate" in lowered:
        return ThrottledError(message, code=code_text, transport=TRANSPORT)
    if 400 <= code < 500:
        if code == 421 and ("too many" in lowered or "rate limit" in lowered):
            return ThrottledError(
                message,
                remedy=(
                    "the server limits how fast or how many connections a client may use; "
                    "sendwell retries with backoff. If this persists, send fewer messages at once"
                ),
                code=code_text,
                transport=TRANSPORT,
            )
        return TransientDeliveryError(
            message, remedy=_TRANSIENT_REMEDY, code=code_text, transport=TRANSPORT
        )
    if 500 <= code < 600:
        return _permanent(exc, message, code, lowered)
    # Not a 4xx or 5xx: a reply smtplib did not expect, such as a garbled line or a proxy's banner.
    return TransientDeliveryError(
        message, remedy=_DISCONNECTED_REMEDY, code=code_text, transport=TRANSPORT
    )


def _permanent(
    exc: smtplib.SMTPResponseException, message: str, code: int, lowered: str
) -> DeliveryError:
    code_text = str(code)
    if "not verified" in lowered:
        # SES: "554 Message rejected: Email address is not verified. The following identities
        # failed the check in region ...".
        return IdentityNotVerifiedError(message, code=code_text, transport=TRANSPORT)
    if "configuration set does not exist" in lowered:
        return ConfigurationSetDoesNotExistError(message, code=code_text, transport=TRANSPORT)
    if "sending paused" in lowered or "account is paused" in lowered or "suspended" in lowered:
        return AccountSendingPausedError(message, code=code_text, transport=TRANSPORT)
    if code == 552 or "size exceeds" in lowered or "too large" in lowered:
        return MessageTooLargeError(
            message,
            remedy=(
                "make the message smaller: attachments are the usual cause, and base64 encoding "
                "makes them a third larger on the wire; link to large files instead"
            ),
            code=code_text,
            transport=TRANSPORT,
        )
    if isinstance(exc, smtplib.SMTPSenderRefused) and code in (501, 553):
        return InvalidAddressError(
            message,
            remedy=(
                "the server does not accept this sender address: check DEFAULT_FROM_EMAIL or the "
                "message's from_email, and that the server lets this login send as it"
            ),
            code=code_text,
            transport=TRANSPORT,
        )
    if "message rejected" in lowered:
        return MessageRejectedError(
            message, remedy=_PERMANENT_REMEDY, code=code_text, transport=TRANSPORT
        )
    return PermanentDeliveryError(
        message, remedy=_PERMANENT_REMEDY, code=code_text, transport=TRANSPORT
    )


def _not_supported(exc: smtplib.SMTPNotSupportedError, where: str, tls: bool) -> DeliveryError:
    text = str(exc)
    if "AUTH" in text:
        if not tls:
            # Submission servers only advertise AUTH after STARTTLS, so that the password never
            # crosses the network in clear: on a plain connection, missing AUTH means "use TLS".
            return TLSRequiredError(
                f"SMTP server {where} does not offer authentication on an unencrypted "
                f"connection ({text})",
                code="no-auth",
                transport=TRANSPORT,
            )
        return PermanentDeliveryError(
            f"SMTP server {where} does not support authentication ({text})",
            remedy=(
                "leave EMAIL_HOST_USER and EMAIL_HOST_PASSWORD empty if this relay needs no "
                "login, or use a server (or port, usually 587) that offers AUTH"
            ),
            code="no-auth",
            transport=TRANSPORT,
        )
    if "STARTTLS" in text:
        return PermanentDeliveryError(
            f"SMTP server {where} does not offer STARTTLS ({text})",
            remedy=(
                "if the port expects implicit TLS (usually 465) set EMAIL_USE_SSL=True instead of "
                "EMAIL_USE_TLS; otherwise use the server's submission port (usually 587)"
            ),
            code="no-starttls",
            transport=TRANSPORT,
        )
    return PermanentDeliveryError(
        f"SMTP server {where} does not support a feature this message needs ({text})",
        remedy=(
            "an address with non-ASCII characters before the @ needs a server that supports "
            "SMTPUTF8; use an ASCII address or another server"
        )
        if "SMTPUTF8" in text
        else _PERMANENT_REMEDY,
        code="not-supported",
        transport=TRANSPORT,
    )


def _other_smtp(exc: smtplib.SMTPException, where: str, username: str | None) -> DeliveryError:
    text = str(exc)
    if "authentication method" in text:
        return SMTPAuthenticationFailedError(
            f"SMTP server {where} offers no login method this client supports ({text}) for "
            f"user {username!r}",
            remedy=(
                "smtplib supports AUTH CRAM-MD5, PLAIN and LOGIN; the server offers none of them "
                "here (some offer them only after STARTTLS: set EMAIL_USE_TLS=True)"
            ),
            code="no-auth-method",
            transport=TRANSPORT,
        )
    return DeliveryError(
        f"sending through SMTP server {where} failed: {text}", remedy="", transport=TRANSPORT
    )


def _certificate(exc: ssl.SSLCertVerificationError, host: str, where: str) -> DeliveryError:
    # getattr: the C code sets these attributes, an SSLError made in Python has none of them.
    reason = getattr(exc, "reason", None)
    detail = getattr(exc, "verify_message", None) or reason or exc
    remedy = None
    if getattr(exc, "verify_code", None) == _X509_V_ERR_HOSTNAME_MISMATCH:
        remedy = (
            f"the certificate is valid, but not for {host!r}: set EMAIL_HOST to a name on the "
            "certificate (for SES: email-smtp.<region>.amazonaws.com, not an IP address or alias)"
        )
    return TLSCertificateError(
        f"the TLS certificate of SMTP server {where} could not be verified ({detail})",
        remedy=remedy,
        code=str(reason or "CERTIFICATE_VERIFY_FAILED"),
        transport=TRANSPORT,
    )


def _timeout(exc: TimeoutError, where: str, port: int) -> DeliveryError:
    hint = ""
    if port == 465:
        hint = "; port 465 expects implicit TLS, so set EMAIL_USE_SSL=True (not EMAIL_USE_TLS)"
    return TransportTimeoutError(
        f"SMTP server {where} did not answer in time ({exc or 'timed out'})",
        remedy=(
            "retrying later usually helps. If it keeps happening, check that EMAIL_HOST and "
            "EMAIL_PORT are reachable from here (a firewall that drops packets looks like a "
            f"timeout){hint}, or raise EMAIL_TIMEOUT if the server is only slow"
        ),
        code="timeout",
        transport=TRANSPORT,
    )


def _tls_failure(exc: ssl.SSLError, where: str, port: int) -> DeliveryError:
    reason = getattr(exc, "reason", None) or type(exc).__name__
    message = f"the TLS handshake with SMTP server {where} failed ({exc})"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        # The peer hung up mid-handshake: a dropped connection, not a configuration mistake.
        return TransportConnectionError(
            message, remedy=_DISCONNECTED_REMEDY, code=reason, transport=TRANSPORT
        )
    if reason in _NOT_TLS_REASONS:
        remedy = (
            f"port {port} does not speak implicit TLS: EMAIL_USE_SSL=True is for port 465; for "
            "port 587 (or 25) set EMAIL_USE_TLS=True (STARTTLS) and EMAIL_USE_SSL=False"
        )
    else:
        remedy = (
            "client and server could not agree on TLS (version or ciphers); check the server's "
            "TLS settings, or EMAIL_SSL_CERTFILE / EMAIL_SSL_KEYFILE if it requires a client "
            "certificate"
        )
    return PermanentDeliveryError(message, remedy=remedy, code=reason, transport=TRANSPORT)
