"""translate_smtp_error: each smtplib / ssl / socket failure becomes the right sendwell error.

The end-to-end cases (a real server refusing a login, an untrusted certificate, ...) are in
test_smtp_backend.py; these cover the replies a local server cannot easily produce, such as DNS
failures, hostname mismatches and the exact wording of the SES SMTP interface.
"""

from __future__ import annotations

import errno
import smtplib
import socket
import ssl

import pytest

from sendwell.exceptions import (
    AccountSendingPausedError,
    ConfigurationSetDoesNotExistError,
    DeliveryError,
    Disposition,
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
from sendwell.transports.smtp_errors import translate_smtp_error

SES_HOST = "email-smtp.eu-west-1.amazonaws.com"
USERNAME = "AKIAEXAMPLEUSER"


def translate(exc: BaseException, *, port: int = 587, tls: bool = False) -> DeliveryError:
    return translate_smtp_error(exc, host=SES_HOST, port=port, username=USERNAME, tls=tls)


def certificate_error(verify_code: int, verify_message: str) -> ssl.SSLCertVerificationError:
    # The attributes ssl's C code sets on a real handshake failure.
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {verify_message}")
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    exc.verify_code = verify_code
    exc.verify_message = verify_message
    return exc


CASES = [
    pytest.param(
        smtplib.SMTPAuthenticationError(535, b"Authentication Credentials Invalid"),
        SMTPAuthenticationFailedError,
        id="auth-535",
    ),
    pytest.param(
        smtplib.SMTPAuthenticationError(454, b"4.7.0 Temporary authentication failure"),
        TransientDeliveryError,
        id="auth-454-temporary",
    ),
    pytest.param(
        smtplib.SMTPSenderRefused(530, b"Must issue a STARTTLS command first", "a@example.com"),
        TLSRequiredError,
        id="530-starttls-first",
    ),
    pytest.param(
        smtplib.SMTPAuthenticationError(538, b"5.7.11 Encryption required for requested auth"),
        TLSRequiredError,
        id="538-encryption-required",
    ),
    pytest.param(
        smtplib.SMTPSenderRefused(530, b"5.7.0 Authentication required", "a@example.com"),
        SMTPAuthenticationFailedError,
        id="530-auth-required",
    ),
    pytest.param(
        smtplib.SMTPDataError(
            554,
            b"Message rejected: Email address is not verified. The following identities "
            b"failed the check in region EU-WEST-1: a@example.com",
        ),
        IdentityNotVerifiedError,
        id="ses-not-verified",
    ),
    pytest.param(
        smtplib.SMTPDataError(454, b"Throttling failure: Maximum sending rate exceeded."),
        ThrottledError,
        id="ses-rate",
    ),
    pytest.param(
        smtplib.SMTPSenderRefused(
            454, b"Throttling failure: Daily message quota exceeded.", "a@example.com"
        ),
        QuotaExceededError,
        id="ses-quota",
    ),
    pytest.param(
        smtplib.SMTPDataError(
            554, b"Configuration Set does not exist: Configuration set <x> does not exist."
        ),
        ConfigurationSetDoesNotExistError,
        id="ses-configuration-set",
    ),
    pytest.param(
        smtplib.SMTPDataError(554, b"Sending paused for this account."),
        AccountSendingPausedError,
        id="ses-paused",
    ),
    pytest.param(
        smtplib.SMTPDataError(554, b"Message rejected: contains a virus"),
        MessageRejectedError,
        id="554-rejected",
    ),
    pytest.param(
        smtplib.SMTPDataError(552, b"5.3.4 Message size exceeds fixed maximum message size"),
        MessageTooLargeError,
        id="552-too-large",
    ),
    pytest.param(
        smtplib.SMTPSenderRefused(553, b"5.1.8 Sender address rejected", "bad@nowhere"),
        InvalidAddressError,
        id="553-sender",
    ),
    pytest.param(
        smtplib.SMTPConnectError(421, b"4.7.0 Too many concurrent SMTP connections"),
        ThrottledError,
        id="421-too-many",
    ),
    pytest.param(
        smtplib.SMTPConnectError(421, b"Service not available, closing transmission channel"),
        TransientDeliveryError,
        id="421-closing",
    ),
    pytest.param(
        smtplib.SMTPDataError(451, b"4.3.0 Temporary local problem"),
        TransientDeliveryError,
        id="451",
    ),
    pytest.param(
        smtplib.SMTPDataError(550, b"5.7.1 Content rejected"),
        PermanentDeliveryError,
        id="550",
    ),
    pytest.param(
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        TransportConnectionError,
        id="disconnected",
    ),
    pytest.param(
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        TransportConnectionError,
        id="refused",
    ),
    pytest.param(
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        TransportConnectionError,
        id="dns",
    ),
    pytest.param(
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        TransportConnectionError,
        id="unreachable",
    ),
    pytest.param(TimeoutError("timed out"), TransportTimeoutError, id="timeout"),
    pytest.param(
        certificate_error(20, "unable to get local issuer certificate"),
        TLSCertificateError,
        id="certificate",
    ),
    pytest.param(ssl.SSLEOFError(8, "EOF occurred"), TransportConnectionError, id="tls-eof"),
]


@pytest.mark.parametrize(("exc", "expected"), CASES)
def test_translation(exc: BaseException, expected: type[DeliveryError]) -> None:
    error = translate(exc)

    assert type(error) is expected
    assert isinstance(error, smtplib.SMTPException)
    assert error.transport == "smtp"
    # Connection-level failures name the server; every error says what to do.
    assert f"{SES_HOST}" in str(error)
    assert error.remedy
    assert str(error).endswith(error.remedy)


REPLY_CASES = [case for case in CASES if isinstance(case.values[0], smtplib.SMTPResponseException)]


@pytest.mark.parametrize(("exc", "expected"), REPLY_CASES)
def test_reply_text_and_code_are_kept(
    exc: smtplib.SMTPResponseException, expected: type[DeliveryError]
) -> None:
    error = translate(exc)
    assert error.code == str(exc.smtp_code)
    assert f"{exc.smtp_code} " in error.message
    reply = exc.smtp_error.decode() if isinstance(exc.smtp_error, bytes) else exc.smtp_error
    assert reply in error.message


def test_authentication_error_names_the_user_and_the_credentials_to_use() -> None:
    error = translate(smtplib.SMTPAuthenticationError(535, b"Authentication Credentials Invalid"))
    assert f"{SES_HOST}:587" in str(error)
    assert repr(USERNAME) in str(error)
    assert "EMAIL_HOST_USER and EMAIL_HOST_PASSWORD" in str(error)
    assert "not IAM access keys" in str(error)
    assert error.disposition is Disposition.FAIL


def test_auth_not_offered_on_a_plain_connection_means_tls_is_required() -> None:
    exc = smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    assert isinstance(translate(exc, tls=False), TLSRequiredError)
    over_tls = translate(exc, tls=True)
    assert not isinstance(over_tls, TLSRequiredError)
    assert isinstance(over_tls, PermanentDeliveryError)
    assert "leave EMAIL_HOST_USER and EMAIL_HOST_PASSWORD empty" in str(over_tls)


def test_starttls_not_offered_points_to_implicit_tls() -> None:
    error = translate(smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."))
    assert isinstance(error, PermanentDeliveryError)
    assert "EMAIL_USE_SSL=True" in str(error)


def test_hostname_mismatch_says_which_host_name_to_use() -> None:
    exc = certificate_error(62, "Hostname mismatch, certificate is not valid for '10.0.0.5'.")
    error = translate_smtp_error(exc, host="10.0.0.5", port=587, username=None)
    assert isinstance(error, TLSCertificateError)
    assert "Hostname mismatch" in str(error)
    assert "not for '10.0.0.5'" in str(error)
    assert "email-smtp.<region>.amazonaws.com" in str(error)


def test_untrusted_certificate_points_to_email_ssl_cafile() -> None:
    error = translate(certificate_error(20, "unable to get local issuer certificate"))
    assert "unable to get local issuer certificate" in str(error)
    assert "EMAIL_SSL_CAFILE" in str(error)
    assert error.code == "CERTIFICATE_VERIFY_FAILED"


def test_dns_failure_says_the_host_does_not_resolve() -> None:
    error = translate(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert f"{SES_HOST!r} does not resolve" in str(error)
    assert "EMAIL_HOST" in str(error)
    assert error.code == "EAI_NONAME"
    assert error.retryable


def test_refused_connection_names_host_port_and_settings() -> None:
    error = translate(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert f"{SES_HOST}:587 was refused" in str(error)
    assert "EMAIL_HOST and EMAIL_PORT" in str(error)
    assert error.code == "ECONNREFUSED"
    assert isinstance(error, ConnectionError)


def test_other_connection_failures_mention_outbound_port_blocking() -> None:
    error = translate(OSError(errno.ENETUNREACH, "Network is unreachable"), port=25)
    assert "Network is unreachable" in str(error)
    assert "outbound connections to port 25" in str(error)
    assert error.code == "ENETUNREACH"


def test_timeout_mentions_email_timeout_and_implicit_tls_on_465() -> None:
    error = translate(TimeoutError("timed out"), port=465)
    assert isinstance(error, TimeoutError)
    assert "EMAIL_TIMEOUT" in str(error)
    assert "port 465 expects implicit TLS" in str(error)
    assert "port 465" not in str(translate(TimeoutError("timed out"), port=587))


def test_a_read_timeout_reported_as_disconnection_is_a_timeout() -> None:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as timeout:
            # As smtplib raises it: the timeout is only the implicit __context__.
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {timeout}")  # noqa: B904
    except smtplib.SMTPServerDisconnected as exc:
        error = translate(exc)
    assert isinstance(error, TransportTimeoutError)


def test_recipients_refused_lists_every_address_with_its_reply() -> None:
    exc = smtplib.SMTPRecipientsRefused(
        {
            "one@example.net": (550, b"5.1.1 User unknown"),
            "two@example.net": (553, b"5.1.3 Bad recipient\naddress syntax"),
        }
    )
    error = translate(exc)
    assert isinstance(error, RecipientsRefusedError)
    assert "<one@example.net> 550 5.1.1 User unknown" in str(error)
    # Multi-line replies are folded into one line for the log.
    assert "<two@example.net> 553 5.1.3 Bad recipient address syntax" in str(error)
    assert error.code == "550,553"


def test_recipients_refused_only_for_now_is_retried() -> None:
    exc = smtplib.SMTPRecipientsRefused(
        {"one@example.net": (450, b"4.2.0 Greylisted, try again later")}
    )
    error = translate(exc)
    assert isinstance(error, TransientDeliveryError)
    assert error.retryable
    assert "<one@example.net> 450 4.2.0 Greylisted" in str(error)


def test_quota_is_deferred_not_retried() -> None:
    error = translate(
        smtplib.SMTPDataError(454, b"Throttling failure: Daily message quota exceeded.")
    )
    assert error.disposition is Disposition.DEFER


def test_ipv6_hosts_are_bracketed() -> None:
    error = translate_smtp_error(
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        host="::1",
        port=25,
        username=None,
    )
    assert "[::1]:25" in str(error)


def test_sendwell_errors_pass_through_unchanged() -> None:
    original = ThrottledError("already translated")
    assert translate(original) is original


def test_anything_else_is_still_a_delivery_error() -> None:
    error = translate(ValueError("odd"))
    assert type(error) is DeliveryError
    assert "ValueError: odd" in str(error)
    assert isinstance(error, smtplib.SMTPException)
