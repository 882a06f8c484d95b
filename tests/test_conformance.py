"""Every EmailMessage feature arrives as Django's own SMTP backend delivers it.

Each case builds the same message twice: once for Django's SMTP backend (the reference, to a local
aiosmtpd server) and once for a sendwell transport (SES v2 and v1 to moto's server, sendwell's SMTP
backend over STARTTLS + AUTH). What the servers received is parsed and compared: headers (but the
control headers sendwell consumes), MIME structure, decoded payloads, file names and envelopes.
"""

from __future__ import annotations

import email.policy
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from email.message import EmailMessage as MIMEMessage
from email.message import MIMEPart
from email.mime.image import MIMEImage
from io import StringIO
from typing import Any

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.management import call_command
from django.test import override_settings
from django.utils import translation
from django.utils.translation import gettext_lazy

from tests.conftest import SENDER
from tests.mailers import DJANGO_SMTP, SES, SMTP, get_mailer, mailer_settings, ses_options
from testservers.moto_ses import LocalSESServer
from testservers.smtp import LocalSMTPServer

FIXED = {"Date": "Fri, 27 Nov 2026 10:00:00 -0000", "Message-ID": "<fixed@example.com>"}
CONTROL_HEADERS = {"x-ses-configuration-set", "x-ses-message-tags"}
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass(frozen=True)
class Received:
    envelope: tuple[str, ...]
    raw: bytes

    @property
    def parsed(self) -> MIMEMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, MIMEMessage)
        return parsed


class Transport:
    """A sendwell transport under test: how to configure it and what its server received."""

    def __init__(
        self,
        name: str,
        configure: Callable[[], AbstractContextManager[Any]],
        received: Callable[[], list[Received]],
    ) -> None:
        self.name = name
        self.configure = configure
        self.received = received


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[LocalSMTPServer]:
    with LocalSMTPServer(tls=True, auth=("mailer", "pa55word")) as server:
        yield server


@pytest.fixture(scope="module")
def reference_server() -> Iterator[LocalSMTPServer]:
    with LocalSMTPServer() as server:
        yield server


@pytest.fixture(params=["ses-v2", "ses-v1", "smtp"])
def transport(
    request: pytest.FixtureRequest, ses: LocalSESServer, smtp_server: LocalSMTPServer
) -> Transport:
    if request.param.startswith("ses"):
        options = ses_options(ses, use_ses_v2=request.param == "ses-v2")

        def ses_received() -> list[Received]:
            return [
                # moto appends header addresses after the envelope recipients it was given.
                Received(s.destinations, s.raw)
                for s in ses.sent_messages()
            ]

        return Transport(request.param, lambda: mailer_settings(SES, **options), ses_received)
    smtp_server.clear()
    smtp_options = {
        "host": smtp_server.host,
        "port": smtp_server.port,
        "username": "mailer",
        "password": "pa55word",
        "use_tls": True,
        "ssl_cafile": smtp_server.ca_file,
    }
    return Transport(
        "smtp",
        lambda: mailer_settings(SMTP, **smtp_options),
        lambda: [Received(m.recipients, m.raw) for m in smtp_server.messages],
    )


def send_reference(server: LocalSMTPServer, build: Callable[[], EmailMessage]) -> Received:
    server.clear()
    with mailer_settings(DJANGO_SMTP, host=server.host, port=server.port):
        assert build().send() == 1
    [message] = server.messages
    return Received(message.recipients, message.raw)


def shape(message: MIMEMessage) -> list[Any]:
    """Headers (minus consumed control headers) and every part's type, name and bytes."""
    result: list[Any] = [
        (name.lower(), str(value))
        for name, value in message.items()
        # Multipart boundaries are random, so Content-Type is compared through get_params below.
        if name.lower() not in CONTROL_HEADERS | {"content-type"}
    ]
    for part in message.walk():
        params = [(k, v) for k, v in part.get_params() or [] if k != "boundary"]
        if part.is_multipart():
            result.append(("multipart", params))
            continue
        result.append(
            (
                params,
                part.get_filename(),
                part.get("Content-ID"),
                part.get_content_disposition(),
                part.get_payload(decode=True),
            )
        )
    return result


def assert_same_delivery(transport: Transport, reference: Received) -> Received:
    [received] = transport.received()
    assert shape(received.parsed) == shape(reference.parsed)
    assert received.envelope[: len(reference.envelope)] == reference.envelope
    return received


def plain() -> EmailMessage:
    return EmailMessage("Plain", "Just text.\n", SENDER, ["to@example.net"], headers=FIXED)


def html_alternative() -> EmailMessage:
    message = EmailMultiAlternatives(
        "Alternatives", "Text body", SENDER, ["to@example.net"], headers=FIXED
    )
    message.attach_alternative("<p>HTML <b>body</b></p>", "text/html")
    return message


def attachments() -> EmailMessage:
    message = EmailMessage("Files", "See attached.", SENDER, ["to@example.net"], headers=FIXED)
    message.attach("data.bin", bytes(range(256)) * 40, "application/octet-stream")
    message.attach("résumé été.txt", "unicode file name ✓", "text/plain")
    message.attach("report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "application/pdf")
    return message


def inline_image() -> EmailMessage:
    message = EmailMultiAlternatives("Inline", "Text", SENDER, ["to@example.net"], headers=FIXED)
    message.attach_alternative('<p><img src="cid:logo"></p>', "text/html")
    if django.VERSION >= (6, 0):
        part = MIMEPart()
        part.set_content(
            PNG,
            maintype="image",
            subtype="png",
            disposition="inline",
            filename="logo.png",
            cid="<logo>",
        )
        message.attach(part)
    else:  # RemovedInSendwellDjango52: the 5.2 way of inline images.
        image = MIMEImage(PNG, "png")
        image.add_header("Content-ID", "<logo>")
        image.add_header("Content-Disposition", "inline", filename="logo.png")
        message.mixed_subtype = "related"
        message.attach(image)
    return message


def recipients_of_every_kind() -> EmailMessage:
    return EmailMessage(
        "Recipients",
        "Body",
        "Sender Name <sender@example.com>",
        ["One <one@example.net>", "two@example.net"],
        bcc=["hidden@example.org"],
        cc=["Cc Person <cc@example.net>"],
        reply_to=["Reply Desk <reply@example.com>"],
        headers=FIXED,
    )


def unicode_everything() -> EmailMessage:
    return EmailMessage(
        "Ünïcödé sübject — 日本語 🎉",
        "Body with ünïcödé, 日本語 and emoji 🎉\n" + "long line " * 200,
        "Zoë Ærø <sender@example.com>",
        ["Jörg Müller <jorg@example.net>", "用户 <user@example.net>"],
        headers=FIXED,
    )


def idn_domain() -> EmailMessage:
    return EmailMessage("IDN", "Body", SENDER, ["user@bücher.example"], headers=FIXED)


def custom_headers() -> EmailMessage:
    return EmailMessage(
        "Headers",
        "Body",
        SENDER,
        ["to@example.net"],
        headers={
            **FIXED,
            "X-Campaign": "fall-2026",
            "List-Unsubscribe": "<https://example.com/u/1>",
            "X-SES-CONFIGURATION-SET": "marketing",
            "X-SES-MESSAGE-TAGS": "campaign=fall",
        },
    )


def lazy_strings() -> EmailMessage:
    with translation.override("de"):
        return EmailMessage(
            gettext_lazy("Password reset"), gettext_lazy("Body"), SENDER, ["to@example.net"]
        )


CASES = {
    "plain": plain,
    "html": html_alternative,
    "attachments": attachments,
    "inline-image": inline_image,
    "recipients": recipients_of_every_kind,
    "unicode": unicode_everything,
    "idn": idn_domain,
    "custom-headers": custom_headers,
}


@pytest.mark.parametrize("case", CASES)
def test_message_arrives_as_with_djangos_smtp_backend(
    case: str, transport: Transport, reference_server: LocalSMTPServer
) -> None:
    build = CASES[case]
    reference = send_reference(reference_server, build)
    with transport.configure():
        assert build().send() == 1
    received = assert_same_delivery(transport, reference)
    if case == "recipients":
        assert "hidden@example.org" in received.envelope
        assert b"hidden@example.org" not in received.raw
    if case == "idn":
        assert received.envelope[0] == "user@xn--bcher-kva.example"
    if case == "custom-headers" and transport.name.startswith("ses"):
        assert "X-SES-CONFIGURATION-SET" not in received.parsed


def test_lazy_translation_strings(transport: Transport) -> None:
    with transport.configure():
        assert lazy_strings().send() == 1
    [received] = transport.received()
    assert received.parsed["Subject"] == "Password reset"


def test_send_mail_with_html(transport: Transport) -> None:
    with transport.configure():
        sent = mail.send_mail(
            "Subject", "Text", SENDER, ["to@example.net"], html_message="<p>HTML</p>"
        )
    assert sent == 1
    [received] = transport.received()
    types = [part.get_content_type() for part in received.parsed.walk()]
    assert types == ["multipart/alternative", "text/plain", "text/html"]


def test_send_mass_mail(transport: Transport) -> None:
    data = tuple((f"Mass {i}", "Body", SENDER, [f"user{i}@example.net"]) for i in range(3))
    with transport.configure():
        assert mail.send_mass_mail(data) == 3
    subjects = sorted(r.parsed["Subject"] for r in transport.received())
    assert subjects == ["Mass 0", "Mass 1", "Mass 2"]


def test_mail_admins(transport: Transport) -> None:
    # RemovedInSendwellDjango52: 5.2 wants (name, address) pairs, 6.1 deprecates them.
    admins = ["admin@example.net"] if django.VERSION >= (6, 0) else [("Admin", "admin@example.net")]
    with transport.configure(), override_settings(ADMINS=admins):
        mail.mail_admins("Broken", "Traceback")
    [received] = transport.received()
    assert received.parsed["Subject"] == "[Django] Broken"
    assert received.parsed["From"] == "server@example.com"


def test_sendtestemail_command(transport: Transport) -> None:
    with transport.configure(), override_settings(DEFAULT_FROM_EMAIL=SENDER):
        call_command("sendtestemail", "ops@example.net", stdout=StringIO())
    [received] = transport.received()
    assert received.parsed["Subject"].startswith("Test email from")
    assert received.envelope[0] == "ops@example.net"


def test_several_messages_over_one_connection_as_context_manager(transport: Transport) -> None:
    with transport.configure(), get_mailer() as connection:
        sent = connection.send_messages(
            [EmailMessage(f"M{i}", "Body", SENDER, ["to@example.net"]) for i in range(5)]
        )
        sent += connection.send_messages([EmailMessage("M5", "Body", SENDER, ["x@example.net"])])
    assert sent == 6
    assert sorted(r.parsed["Subject"] for r in transport.received()) == [f"M{i}" for i in range(6)]
