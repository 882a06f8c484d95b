"""The SES backend against moto's server: what SES receives, and the errors users meet."""

from __future__ import annotations

import copy

import pytest
from django.core import mail
from django.core.mail import EmailMessage, send_mail

from sendwell import aws
from sendwell.backends import SESBackend
from sendwell.exceptions import (
    ConfigurationError,
    DeliveryError,
    IdentityNotVerifiedError,
    InvalidAddressError,
    InvalidMessageError,
    MessageTooLargeError,
    NoCredentialsError,
    TransportConnectionError,
)
from tests.concurrency import in_threads
from tests.conftest import SENDER
from tests.mailers import HAS_MAILERS, SES, get_mailer, mailer_settings, ses_options
from testservers.base import free_port
from testservers.moto_ses import LocalSESServer

API_VERSIONS = [pytest.param(True, id="v2"), pytest.param(False, id="v1")]


def backend(ses: LocalSESServer, **options: object) -> SESBackend:
    return SESBackend(alias="test", **ses_options(ses, **options))


@pytest.mark.parametrize("use_ses_v2", API_VERSIONS)
def test_send_mail_through_settings_reaches_ses(ses: LocalSESServer, use_ses_v2: bool) -> None:
    with mailer_settings(SES, **ses_options(ses, use_ses_v2=use_ses_v2)):
        assert send_mail("Hello", "Body text", SENDER, ["to@example.net"]) == 1
    [sent] = ses.sent_messages()
    assert sent.source == SENDER
    assert sent.destinations[0] == "to@example.net"
    assert sent.parsed["Subject"] == "Hello"
    assert sent.parsed.get_content().strip() == "Body text"


@pytest.mark.parametrize("use_ses_v2", API_VERSIONS)
def test_message_ids_are_readable_from_the_message(ses: LocalSESServer, use_ses_v2: bool) -> None:
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.net"])
    assert backend(ses, use_ses_v2=use_ses_v2).send_messages([message]) == 1
    [sent] = ses.sent_messages()
    assert message.ses_message_id == sent.message_id  # type: ignore[attr-defined]
    assert message.ses_message_ids == [sent.message_id]  # type: ignore[attr-defined]


def test_bcc_is_delivered_but_not_in_headers(ses: LocalSESServer) -> None:
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.net"], bcc=["hidden@example.org"])
    backend(ses).send_messages([message])
    [sent] = ses.sent_messages()
    assert sent.destinations[:2] == ("to@example.net", "hidden@example.org")
    assert b"hidden@example.org" not in sent.raw
    assert "Bcc" not in sent.parsed


@pytest.mark.parametrize("use_ses_v2", API_VERSIONS)
def test_more_than_50_recipients_go_in_calls_of_at_most_50(
    ses: LocalSESServer, use_ses_v2: bool
) -> None:
    # Bcc, because moto (unlike SES) also counts header addresses against its 50-recipient limit.
    recipients = [f"user{i}@example.net" for i in range(120)]
    message = EmailMessage("Hi", "Body", SENDER, bcc=recipients)
    assert backend(ses, use_ses_v2=use_ses_v2).send_messages([message]) == 1
    sent = ses.sent_messages()
    assert [len(s.destinations) for s in sent] == [50, 50, 20]
    assert [d for s in sent for d in s.destinations] == recipients
    assert len({s.raw for s in sent}) == 1  # the same MIME each time
    assert message.ses_message_ids == [s.message_id for s in sent]  # type: ignore[attr-defined]


def test_duplicate_recipients_are_sent_once(ses: LocalSESServer) -> None:
    message = EmailMessage(
        "Hi", "Body", SENDER, ["a@example.net"], cc=["A@example.net"], bcc=["a@example.net"]
    )
    backend(ses).send_messages([message])
    [sent] = ses.sent_messages()
    # moto records the envelope recipients followed by the To and Cc header addresses.
    assert sent.destinations == ("a@example.net", "a@example.net", "A@example.net")


def test_caller_message_and_headers_are_not_mutated(ses: LocalSESServer) -> None:
    headers = {"X-SES-CONFIGURATION-SET": "marketing", "X-Custom": "kept"}
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.net"], headers=headers)
    before = copy.deepcopy(message.__dict__)
    backend(ses).send_messages([message])
    after = {k: v for k, v in message.__dict__.items() if not k.startswith("ses_message_id")}
    assert after == before
    assert headers == {"X-SES-CONFIGURATION-SET": "marketing", "X-Custom": "kept"}


def test_configuration_set_header_is_removed_from_the_mime(ses: LocalSESServer) -> None:
    message = EmailMessage(
        "Hi",
        "Body",
        SENDER,
        ["to@example.net"],
        headers={"X-SES-CONFIGURATION-SET": "marketing", "X-SES-MESSAGE-TAGS": "campaign=fall"},
    )
    backend(ses).send_messages([message])
    [sent] = ses.sent_messages()
    assert "X-SES-CONFIGURATION-SET" not in sent.parsed
    assert "X-SES-MESSAGE-TAGS" not in sent.parsed


def test_invalid_configuration_set_header_is_refused_before_sending(ses: LocalSESServer) -> None:
    message = EmailMessage(
        "Hi", "Body", SENDER, ["to@example.net"], headers={"X-SES-CONFIGURATION-SET": "no spaces"}
    )
    with pytest.raises(InvalidMessageError, match="configuration set"):
        backend(ses).send_messages([message])
    assert ses.sent_messages() == []


def test_invalid_tag_is_refused_before_sending(ses: LocalSESServer) -> None:
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.net"])
    message.ses_tags = {"campaign": "fall sale!"}  # type: ignore[attr-defined]
    with pytest.raises(InvalidMessageError, match="tag"):
        backend(ses).send_messages([message])
    assert ses.sent_messages() == []


@pytest.mark.parametrize(("use_ses_v2", "limit"), [(True, 40), (False, 10)])
def test_too_large_message_is_refused_before_any_call(
    ses: LocalSESServer, use_ses_v2: bool, limit: int
) -> None:
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.net"])
    # base64 grows 4/3: this attachment makes a MIME just over the limit.
    message.attach(
        "big.bin", b"\0" * (limit * 1024 * 1024 * 3 // 4 + 1024), "application/octet-stream"
    )
    with pytest.raises(MessageTooLargeError, match=f"at most {limit} MB") as excinfo:
        backend(ses, use_ses_v2=use_ses_v2).send_messages([message])
    assert isinstance(excinfo.value, ValueError)
    assert ses.sent_messages() == []


@pytest.mark.parametrize("use_ses_v2", API_VERSIONS)
def test_unverified_sender_is_a_permanent_error_with_its_remedy(
    ses: LocalSESServer, use_ses_v2: bool
) -> None:
    message = EmailMessage("Hi", "Body", "someone@unverified.test", ["to@example.net"])
    with pytest.raises(IdentityNotVerifiedError) as excinfo:
        backend(ses, use_ses_v2=use_ses_v2).send_messages([message])
    error = excinfo.value
    assert "Email address is not verified" in str(error)
    assert "verify the sender" in str(error)
    assert not error.retryable
    assert error.code == "MessageRejected"
    assert "testing-secret" not in str(error)


def test_fail_silently_swallows_delivery_errors(ses: LocalSESServer) -> None:
    messages = [
        EmailMessage("Hi", "Body", "someone@unverified.test", ["to@example.net"]),
        EmailMessage("Hi", "Body", SENDER, ["to@example.net"]),
    ]
    assert (
        SESBackend(fail_silently=True, alias="t", **ses_options(ses)).send_messages(messages) == 1
    )
    assert len(ses.sent_messages()) == 1


@pytest.mark.filterwarnings("ignore:The .fail_silently. argument is deprecated")
def test_send_mail_fail_silently(ses: LocalSESServer) -> None:
    with mailer_settings(SES, **ses_options(ses)):
        assert (
            send_mail("Hi", "Body", "x@unverified.test", ["to@example.net"], fail_silently=True)
            == 0
        )


def test_invalid_recipient_is_refused_before_sending(ses: LocalSESServer) -> None:
    message = EmailMessage("Hi", "Body", SENDER, ["not an address\n@x"])
    with pytest.raises(InvalidAddressError):
        backend(ses).send_messages([message])
    assert ses.sent_messages() == []


def test_no_recipients_sends_nothing(ses: LocalSESServer) -> None:
    assert backend(ses).send_messages([EmailMessage("Hi", "Body", SENDER, [])]) == 0
    assert backend(ses).send_messages([]) == 0
    assert ses.sent_messages() == []


def test_no_credentials_says_how_to_fix_it(ses: LocalSESServer) -> None:
    # conftest removed every AWS_* variable and credentials file, and disabled the metadata
    # service: boto3's default chain finds nothing, as on a machine with no role attached.
    options = ses_options(ses)
    del options["access_key_id"], options["secret_access_key"]
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.net"])
    with pytest.raises(NoCredentialsError) as excinfo:
        SESBackend(alias="t", **options).send_messages([message])
    text = str(excinfo.value)
    assert "Unable to locate credentials" in text
    assert "attach an IAM role" in text
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in text


def test_unreachable_endpoint_is_a_retryable_connection_error() -> None:
    options = {
        "region_name": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing-secret",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "max_attempts": 1,
        "connect_timeout": 1,
    }
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.net"])
    with pytest.raises(TransportConnectionError) as excinfo:
        SESBackend(alias="t", **options).send_messages([message])
    assert excinfo.value.retryable
    assert isinstance(excinfo.value, ConnectionError)


@pytest.mark.django_db(transaction=True)
def test_one_client_per_configuration_shared_across_threads(ses: LocalSESServer) -> None:
    clients = set()

    def send() -> None:
        b = backend(ses)
        b.send_messages([EmailMessage("Hi", "Body", SENDER, ["to@example.net"])])
        clients.add(id(b.transport.client))

    in_threads(send, 8)
    assert len(clients) == 1
    assert len(ses.sent_messages()) == 8
    # A different configuration gets its own client.
    assert backend(ses, use_ses_v2=False).transport.client is not aws.ses_client(
        backend(ses).options
    )


def test_context_manager_and_several_messages_on_one_connection(ses: LocalSESServer) -> None:
    with backend(ses) as connection:
        assert (
            connection.send_messages(
                [EmailMessage(f"Hi {i}", "Body", SENDER, ["to@example.net"]) for i in range(3)]
            )
            == 3
        )
    assert sorted(s.parsed["Subject"] for s in ses.sent_messages()) == ["Hi 0", "Hi 1", "Hi 2"]


def test_bad_options_are_refused_at_construction(ses: LocalSESServer) -> None:
    with pytest.raises(ConfigurationError, match="region"):
        SESBackend(alias="t", **ses_options(ses, region_name="eu-west1"))
    with pytest.raises(ConfigurationError, match="unknown SES option"):
        SESBackend(alias="t", **ses_options(ses, regoin="eu-west-1"))
    with pytest.raises(ConfigurationError) as excinfo:
        SESBackend(alias="t", region_name="eu-west-1", secret_access_key="s3cr3t-value")
    assert "s3cr3t-value" not in str(excinfo.value)


def test_repr_hides_secrets(ses: LocalSESServer) -> None:
    b = backend(ses)
    assert "testing-secret" not in repr(b)
    assert "testing-secret" not in repr(b.options)


def test_default_mailer_is_the_ses_backend(ses: LocalSESServer) -> None:
    with mailer_settings(SES, **ses_options(ses)):
        connection = get_mailer()
        assert isinstance(connection, SESBackend)
        assert connection.options.endpoint_url == ses.endpoint_url
        if HAS_MAILERS:
            assert connection.alias == "default"


def test_delivery_errors_are_smtp_exceptions(ses: LocalSESServer) -> None:
    import smtplib  # noqa: PLC0415

    assert issubclass(DeliveryError, smtplib.SMTPException)
    with mailer_settings(SES, **ses_options(ses)), pytest.raises(smtplib.SMTPException):
        mail.send_mail("Hi", "Body", "x@unverified.test", ["to@example.net"])


def test_read_timeout_setting_applies_on_both_django_versions() -> None:
    # MAILERS OPTIONS on 6.1, AWS_SES_READ_TIMEOUT on 5.2. The endpoint answers only after 3 s:
    # with the default 30 s read timeout the send would succeed late; with 0.5 s it times out.
    from sendwell.exceptions import TransportTimeoutError  # noqa: PLC0415
    from testservers.fake_ses import FakeSES  # noqa: PLC0415

    with FakeSES(verified_identities={"example.com"}, timeout_seconds=3.0) as fake:
        fake.inject("timeout", times=3)  # would also time out any retry
        with (
            mailer_settings(SES, **ses_options(fake, read_timeout=0.5)),
            pytest.raises(TransportTimeoutError) as excinfo,
        ):
            EmailMessage("Slow", "Body", SENDER, ["to@example.net"]).send()
    assert excinfo.value.retryable
    assert fake.messages == []
    # SES may have accepted a timed-out call: it is never repeated blindly (max_attempts 3 counts
    # 5xx and connection errors only).
    assert fake.send_requests == 1


def test_a_task_worker_builds_its_ses_client_while_it_starts() -> None:
    """db_worker / rqworker import the task module only with their first task: sendwell builds
    what the first delivery needs when the worker process starts (sendwell.warmup)."""
    from sendwell import warmup  # noqa: PLC0415
    from testservers.fake_ses import FakeSES  # noqa: PLC0415

    assert warmup.is_worker(["manage.py", "db_worker", "--interval", "1"])
    assert warmup.is_worker(["/usr/lib/python3/django/__main__.py", "db_worker"])
    assert not warmup.is_worker(["manage.py", "rqworker", "default"])  # forks: see warmup
    assert not warmup.is_worker(["manage.py", "runserver"])
    assert not warmup.is_worker(["manage.py"])
    with FakeSES() as fake, mailer_settings(SES, **ses_options(fake)):
        aws.clear_clients()
        assert warmup.warm_up() == 1
        assert len(aws._clients) == 1
        assert fake.requests == 0  # nothing is sent or asked at start-up
