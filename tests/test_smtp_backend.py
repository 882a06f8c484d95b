"""The SMTP backend against a real aiosmtpd server on 127.0.0.1: delivery, TLS, AUTH, errors."""

from __future__ import annotations

import smtplib
import ssl
import warnings
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, send_mail

from sendwell.backends.smtp import SMTPBackend
from sendwell.exceptions import (
    ConfigurationError,
    Disposition,
    IdentityNotVerifiedError,
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
from tests.mailers import HAS_MAILERS, get_mailer, mailer_settings
from tests.smtp_fixtures import *  # noqa: F403 - the server fixtures
from tests.smtp_fixtures import PASSWORD, USERNAME
from testservers.smtp import LocalSMTPServer, unused_port

BACKEND = "sendwell.backends.smtp.SMTPBackend"
SENDER = "sender@example.com"


def mailer(**options: Any) -> SMTPBackend:
    """The default mailer configured with ``options``, created as ``send_mail()`` creates it."""
    options.setdefault("timeout", 5)
    with mailer_settings(BACKEND, **options):
        backend = get_mailer()
    assert isinstance(backend, SMTPBackend)
    return backend


def submission_options(server: LocalSMTPServer, **overrides: Any) -> dict[str, Any]:
    options = {
        "host": server.host,
        "port": server.port,
        "username": USERNAME,
        "password": PASSWORD,
        "use_tls": True,
        "ssl_cafile": server.ca_file,
    }
    return options | overrides


def message() -> EmailMessage:
    return EmailMessage(
        "Hello",
        "Body text",
        SENDER,
        ["to@example.net"],
        cc=["cc@example.net"],
        bcc=["hidden@example.org"],
    )


def assert_no_password(error: BaseException) -> None:
    """Neither the error, nor anything chained to it, shows the password."""
    seen: BaseException | None = error
    while seen is not None:
        assert PASSWORD not in str(seen)
        assert PASSWORD not in repr(seen)
        seen = seen.__cause__ or seen.__context__


# --- delivery ---------------------------------------------------------------------------------


def test_starttls_and_auth_deliver_trusting_ssl_cafile(submission_server: LocalSMTPServer) -> None:
    backend = mailer(**submission_options(submission_server))

    assert backend.send_messages([message()]) == 1

    [received] = submission_server.wait_for(1)
    assert received.sender == SENDER
    assert received.recipients == ("to@example.net", "cc@example.net", "hidden@example.org")
    assert received.tls
    assert received.login == USERNAME
    assert received.message["Subject"] == "Hello"
    assert received.message["To"] == "to@example.net"
    assert received.message["Cc"] == "cc@example.net"
    assert "Bcc" not in received.message
    assert b"hidden@example.org" not in received.raw
    assert received.message.get_content().strip() == "Body text"


def test_send_mail_goes_through_the_configured_backend(submission_server: LocalSMTPServer) -> None:
    with mailer_settings(BACKEND, **submission_options(submission_server, timeout=5)):
        assert send_mail("Subject line", "Body", SENDER, ["to@example.net"]) == 1
    [received] = submission_server.wait_for(1)
    assert received.recipients == ("to@example.net",)
    assert received.message["Subject"] == "Subject line"


def test_implicit_tls_delivers(implicit_tls_server: LocalSMTPServer) -> None:
    backend = mailer(
        **submission_options(implicit_tls_server, use_tls=False, use_ssl=True),
    )

    assert backend.send_messages([message()]) == 1

    [received] = implicit_tls_server.wait_for(1)
    assert received.tls
    assert received.login == USERNAME
    assert received.recipients[-1] == "hidden@example.org"


def test_one_connection_sends_several_messages(submission_server: LocalSMTPServer) -> None:
    backend = mailer(**submission_options(submission_server))
    with backend:
        assert backend.send_messages([message(), message()]) == 2
        assert backend.send_messages([message()]) == 1
    assert len(submission_server.wait_for(3)) == 3


def test_client_certificate_is_still_presented_with_ssl_cafile(
    submission_server: LocalSMTPServer,
) -> None:
    certfile, keyfile = submission_server.issue_client_certificate("client.example")
    backend = mailer(
        **submission_options(submission_server, ssl_certfile=certfile, ssl_keyfile=keyfile)
    )

    assert backend.send_messages([message()]) == 1

    [received] = submission_server.wait_for(1)
    assert received.client_certificate_names == ("client.example",)


def test_plain_relay_without_auth(plain_server: LocalSMTPServer) -> None:
    backend = mailer(host=plain_server.host, port=plain_server.port)
    assert backend.send_messages([message()]) == 1
    [received] = plain_server.wait_for(1)
    assert not received.tls
    assert received.login is None


# --- errors -----------------------------------------------------------------------------------


def test_wrong_password_names_the_settings_and_hides_the_password(
    submission_server: LocalSMTPServer,
) -> None:
    submission_server.auth = (USERNAME, "the-right-one")
    backend = mailer(**submission_options(submission_server))

    with pytest.raises(SMTPAuthenticationFailedError) as caught:
        backend.send_messages([message()])

    error = caught.value
    assert isinstance(error, smtplib.SMTPException)
    assert isinstance(error, ImproperlyConfigured)
    assert isinstance(error.__cause__, smtplib.SMTPAuthenticationError)
    assert f"{submission_server.host}:{submission_server.port}" in str(error)
    assert USERNAME in str(error)
    assert "535" in str(error)
    assert "EMAIL_HOST_USER and EMAIL_HOST_PASSWORD" in str(error)
    assert "SMTP credentials" in str(error)
    assert error.code == "535"
    assert error.transport == "smtp"
    assert error.disposition is Disposition.FAIL
    assert_no_password(error)
    assert submission_server.messages == []


def test_server_requiring_starttls_refuses_a_plain_login(
    submission_server: LocalSMTPServer,
) -> None:
    backend = mailer(**submission_options(submission_server, use_tls=False))

    with pytest.raises(TLSRequiredError) as caught:
        backend.send_messages([message()])

    assert "EMAIL_USE_TLS=True" in str(caught.value)
    assert isinstance(caught.value.__cause__, smtplib.SMTPNotSupportedError)
    assert_no_password(caught.value)


def test_server_requiring_starttls_refuses_plain_mail(submission_server: LocalSMTPServer) -> None:
    backend = mailer(host=submission_server.host, port=submission_server.port)

    with pytest.raises(TLSRequiredError) as caught:
        backend.send_messages([message()])

    assert "530" in str(caught.value)
    assert "Must issue a STARTTLS command first" in str(caught.value)
    assert isinstance(caught.value.__cause__, smtplib.SMTPSenderRefused)


def test_missing_credentials_say_which_settings_to_set() -> None:
    with LocalSMTPServer(auth=(USERNAME, PASSWORD)) as server:
        backend = mailer(host=server.host, port=server.port)
        with pytest.raises(SMTPAuthenticationFailedError) as caught:
            backend.send_messages([message()])
    assert "requires authentication" in str(caught.value)
    assert "set EMAIL_HOST_USER and EMAIL_HOST_PASSWORD" in str(caught.value)


def test_refused_connection_names_host_and_port() -> None:
    port = unused_port()
    backend = mailer(host="127.0.0.1", port=port)

    with pytest.raises(TransportConnectionError) as caught:
        backend.send_messages([message()])

    error = caught.value
    assert f"127.0.0.1:{port}" in str(error)
    assert "EMAIL_HOST and EMAIL_PORT" in str(error)
    assert isinstance(error, ConnectionError)
    assert isinstance(error, smtplib.SMTPException)
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert error.retryable


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_untrusted_certificate(implicit: bool) -> None:
    with LocalSMTPServer(tls=not implicit, implicit_tls=implicit) as server:
        backend = mailer(host=server.host, port=server.port, use_tls=not implicit, use_ssl=implicit)
        with pytest.raises(TLSCertificateError) as caught:
            backend.send_messages([message()])
        assert server.messages == []

    error = caught.value
    assert "could not be verified" in str(error)
    assert error.code == "CERTIFICATE_VERIFY_FAILED"
    assert "EMAIL_SSL_CAFILE" in str(error)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    assert isinstance(error, smtplib.SMTPException)


def test_implicit_tls_against_a_plain_port_says_to_use_starttls(
    plain_server: LocalSMTPServer,
) -> None:
    backend = mailer(host=plain_server.host, port=plain_server.port, use_ssl=True)

    with pytest.raises(PermanentDeliveryError) as caught:
        backend.send_messages([message()])

    assert "TLS handshake" in str(caught.value)
    assert "EMAIL_USE_TLS=True" in str(caught.value)
    assert isinstance(caught.value.__cause__, ssl.SSLError)


def test_starttls_against_an_implicit_tls_port_times_out(
    implicit_tls_server: LocalSMTPServer,
) -> None:
    # The client waits for a greeting the server only sends after a TLS handshake.
    backend = mailer(**submission_options(implicit_tls_server, timeout=0.5))

    with pytest.raises(TransportTimeoutError) as caught:
        backend.send_messages([message()])

    assert "EMAIL_TIMEOUT" in str(caught.value)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("where", "reply", "expected"),
    [
        (
            "data",
            "554 Message rejected: Email address is not verified. The following identities "
            "failed the check in region EU-WEST-1: sender@example.com",
            IdentityNotVerifiedError,
        ),
        ("mail", "454 Throttling failure: Maximum sending rate exceeded.", ThrottledError),
        ("mail", "454 Throttling failure: Daily message quota exceeded.", QuotaExceededError),
        ("data", "451 4.3.0 Temporary local problem", TransientDeliveryError),
        ("data", "550 5.7.1 Content rejected", PermanentDeliveryError),
    ],
)
def test_server_replies_become_sendwell_errors(
    submission_server: LocalSMTPServer, where: str, reply: str, expected: type[Exception]
) -> None:
    setattr(submission_server, f"{where}_reply", reply)
    backend = mailer(**submission_options(submission_server))

    with pytest.raises(expected) as caught:
        backend.send_messages([message()])

    assert reply.split(" ", 1)[1] in str(caught.value)
    assert isinstance(caught.value, smtplib.SMTPException)
    assert isinstance(caught.value.__cause__, smtplib.SMTPResponseException)


def test_every_recipient_refused_lists_each_with_its_code(
    submission_server: LocalSMTPServer,
) -> None:
    submission_server.recipient_replies = {
        address: "550 5.1.1 Mailbox does not exist"
        for address in ("to@example.net", "cc@example.net", "hidden@example.org")
    }
    backend = mailer(**submission_options(submission_server))

    with pytest.raises(RecipientsRefusedError) as caught:
        backend.send_messages([message()])

    text = str(caught.value)
    for address in ("to@example.net", "cc@example.net", "hidden@example.org"):
        assert f"<{address}> 550 5.1.1 Mailbox does not exist" in text
    assert isinstance(caught.value.__cause__, smtplib.SMTPRecipientsRefused)


# --- fail_silently ----------------------------------------------------------------------------


def silent_mailer(**options: Any) -> SMTPBackend:
    options.setdefault("timeout", 5)
    if HAS_MAILERS:
        return mailer(fail_silently=True, **options)
    # RemovedInSendwellDjango52: Django 5.2 passes fail_silently to get_connection().
    from django.core.mail import get_connection  # noqa: PLC0415

    with mailer_settings(BACKEND, **options):
        backend = get_connection(fail_silently=True)
    assert isinstance(backend, SMTPBackend)
    return backend


def test_fail_silently_on_refused_connection_returns_zero() -> None:
    backend = silent_mailer(host="127.0.0.1", port=unused_port())
    assert backend.send_messages([message()]) == 0


def test_fail_silently_on_wrong_password_returns_zero(submission_server: LocalSMTPServer) -> None:
    submission_server.auth = (USERNAME, "the-right-one")
    backend = silent_mailer(**submission_options(submission_server))
    assert backend.send_messages([message()]) == 0


def test_fail_silently_on_rejected_message_returns_zero(
    submission_server: LocalSMTPServer,
) -> None:
    submission_server.data_reply = "554 Message rejected: Email address is not verified."
    backend = silent_mailer(**submission_options(submission_server))
    assert backend.send_messages([message()]) == 0


def test_fail_silently_still_delivers(submission_server: LocalSMTPServer) -> None:
    backend = silent_mailer(**submission_options(submission_server))
    assert backend.send_messages([message()]) == 1
    assert len(submission_server.wait_for(1)) == 1


# --- configuration ----------------------------------------------------------------------------


def test_repr_and_attributes_hide_the_password(submission_server: LocalSMTPServer) -> None:
    backend = mailer(**submission_options(submission_server))
    assert PASSWORD not in repr(backend)
    assert PASSWORD not in repr(vars(backend))
    assert USERNAME in repr(backend)
    assert f"port={submission_server.port}" in repr(backend)
    # The password itself still works: it is a str that only hides in repr().
    assert backend.password == PASSWORD


def test_missing_ssl_cafile_is_a_configuration_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    with pytest.raises(ConfigurationError) as caught:
        mailer(host="127.0.0.1", port=unused_port(), use_tls=True, ssl_cafile=missing)
    assert "sendwell.E006" in str(caught.value)
    assert missing in str(caught.value)


def test_unreadable_ca_bundle_is_a_configuration_error_even_failing_silently(
    tmp_path: Path,
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    with LocalSMTPServer(tls=True) as server:
        backend = silent_mailer(
            host=server.host, port=server.port, use_tls=True, ssl_cafile=str(not_pem)
        )
        with pytest.raises(ConfigurationError) as caught:
            backend.send_messages([message()])
    assert "PEM" in str(caught.value)


@pytest.mark.skipif(not HAS_MAILERS, reason="MAILERS and its deprecations are new in Django 6.1")
def test_mailers_path_emits_no_deprecation_warning(submission_server: LocalSMTPServer) -> None:
    from django.core.mail import mailers  # noqa: PLC0415

    with (
        mailer_settings(BACKEND, **submission_options(submission_server)),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")
        backend = mailers["default"]
        assert backend.send_messages([message()]) == 1
    assert backend.alias == "default"


@pytest.mark.skipif(not HAS_MAILERS, reason="MAILERS and its deprecations are new in Django 6.1")
def test_direct_construction_warns_about_the_callers_code() -> None:
    with pytest.warns(PendingDeprecationWarning, match="Directly creating") as record:
        # Every option given: tests/settings.py defines MAILERS, which hides the EMAIL_* settings.
        SMTPBackend(
            host="127.0.0.1",
            port=25,
            username="",
            password="",
            use_tls=False,
            use_ssl=False,
            timeout=5,
            ssl_keyfile="",
            ssl_certfile="",
            ssl_cafile="",
        )
    [warning] = record.list
    assert warning.filename == __file__


@pytest.mark.skipif(not HAS_MAILERS, reason="MAILERS OPTIONS are new in Django 6.1")
def test_mailers_options_accept_ssl_cafile(submission_server: LocalSMTPServer) -> None:
    backend = SMTPBackend(alias="smtp", **submission_options(submission_server))
    assert backend.ssl_cafile == submission_server.ca_file
    assert backend.send_messages([message()]) == 1


@pytest.mark.skipif(HAS_MAILERS, reason="the classic EMAIL_* settings path of Django 5.2")
def test_classic_settings_read_email_ssl_cafile(submission_server: LocalSMTPServer) -> None:
    from django.test import override_settings  # noqa: PLC0415

    with override_settings(
        EMAIL_HOST=submission_server.host,
        EMAIL_PORT=submission_server.port,
        EMAIL_USE_TLS=True,
        EMAIL_HOST_USER=USERNAME,
        EMAIL_HOST_PASSWORD=PASSWORD,
        EMAIL_SSL_CAFILE=submission_server.ca_file,
    ):
        backend = SMTPBackend()
    assert backend.ssl_cafile == submission_server.ca_file
    assert backend.send_messages([message()]) == 1
