"""sendwell.sns: what makes an SNS delivery genuine, and everything that must be refused.

A CA and an SNS-like signing certificate are made here; messages are signed as SNS signs them
(the string to sign is written out again below from AWS's documentation, independently of the
module's), and certificates are served by a dictionary fetcher that counts its calls. The default
urllib fetcher meets a real HTTP server on 127.0.0.1 once, and moto's SNS signs one message.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sendwell.sns import (
    CertificateCache,
    SNSMessage,
    UrllibCertificateFetcher,
    VerificationError,
    Verifier,
    confirm_subscription,
    parse_envelope,
    validate_cert_url,
    validate_subscribe_url,
)
from sendwell.sns.certs import no_redirect_opener
from tests.sns_signing import ca, certificate, sign, signing_key
from testservers.base import LOCALHOST, free_port
from testservers.moto_ses import LocalSESServer

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-other"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464de257"
)
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
STAMP = "2026-05-01T11:59:30.123Z"

HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- certificates and signatures (tests/sns_signing.py, shared with the webhook's tests) -------


def _certificate(
    public_key: Any = None,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=300),
) -> bytes:
    """An SNS-like signing certificate, issued by the test CA, as PEM."""
    return certificate(public_key, not_before=not_before, not_after=not_after)


@functools.cache
def _good_pem() -> bytes:
    return _certificate()


def envelope(
    kind: str = "Notification",
    *,
    version: str = "2",
    subject: str | None = "Amazon SES Email Event Notification",
    signed: bool = True,
    **fields: str,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps({"notificationType": "Bounce", "bounce": {"x": "é ✉\n"}}),
        "Timestamp": STAMP,
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&X=1",
    }
    if kind == "Notification":
        if subject is not None:
            data["Subject"] = subject
    else:
        data["Message"] = "You have chosen to subscribe to the topic ..."
        data["SubscribeURL"] = SUBSCRIBE_URL
        data["Token"] = "2336412f37fb687f5d51e6e2425c464de257"
        del data["UnsubscribeURL"]
    data.update(fields)
    return sign(data) if signed else data


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


class DictFetcher:
    """Serves PEM bytes by URL; counts calls; an unknown URL is a 404 (an OSError)."""

    def __init__(self, pems: dict[str, bytes] | None = None) -> None:
        self.pems = {CERT_URL: _good_pem()} if pems is None else pems
        self.calls: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.pems:
            raise urllib.error.HTTPError(url, 404, "Not Found", Message(), None)
        return self.pems[url]


def verifier(
    fetcher: Any = None, clock: Callable[[], datetime] = lambda: NOW, **kwargs: Any
) -> Verifier:
    kwargs.setdefault("topic_arns", [TOPIC, OTHER_TOPIC])
    return Verifier(fetcher=fetcher or DictFetcher(), clock=clock, **kwargs)


def refused(v: Verifier, data: Any) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        v.verify(data if isinstance(data, bytes) else body(data))
    return caught.value


# --- what is accepted ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("Notification", "Amazon SES Email Event Notification"),
        ("Notification", None),
        ("Notification", ""),
        ("SubscriptionConfirmation", None),
        ("UnsubscribeConfirmation", None),
    ],
)
def test_a_genuine_message_verifies(version: str, kind: str, subject: str | None) -> None:
    data = envelope(kind, version=version, subject=subject)
    message = verifier().verify(body(data))
    assert message == SNSMessage(
        type=kind,  # type: ignore[arg-type]
        message_id=data["MessageId"],
        topic_arn=TOPIC,
        message=data["Message"],
        timestamp=datetime(2026, 5, 1, 11, 59, 30, 123000, tzinfo=UTC),
        subject=subject if kind == "Notification" else None,
        subscribe_url=None if kind == "Notification" else SUBSCRIBE_URL,
        token=None if kind == "Notification" else data["Token"],
        signature_version=version,
        raw=data,
    )
    assert message.raw == data


def test_the_accepted_cert_url_forms() -> None:
    for url in (
        CERT_URL,
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
        "https://sns.us-gov-west-1.amazonaws.com:443/a/b.pem",
        "HTTPS://SNS.EU-WEST-1.AMAZONAWS.COM/x.pem",  # scheme and host are case-insensitive
    ):
        assert validate_cert_url(url) == url


# --- tampering ----------------------------------------------------------------------------------

SIGNED = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        *["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
    ],
    "UnsubscribeConfirmation": [
        *["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
    ],
}
# A change to each field that keeps every other check passing, so only the signature can catch it.
TAMPER = {
    "Message": lambda v: v + " ",
    "MessageId": lambda v: v[:-1] + "5",
    "Subject": lambda v: v + "!",
    "Timestamp": lambda v: v.replace(".123Z", ".124Z"),
    "TopicArn": lambda v: OTHER_TOPIC,
    "SubscribeURL": lambda v: v + "&x=1",
    "Token": lambda v: v + "0",
    "Type": lambda v: {
        "Notification": "Notification",
        "SubscriptionConfirmation": "UnsubscribeConfirmation",
        "UnsubscribeConfirmation": "SubscriptionConfirmation",
    }[v],
}


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    ("kind", "field"),
    [(k, f) for k, fields in SIGNED.items() for f in fields if (k, f) != ("Notification", "Type")],
)
def test_each_signed_field_tampered_is_refused(kind: str, version: str, field: str) -> None:
    data = envelope(kind, version=version)
    data[field] = TAMPER[field](data[field])
    assert refused(verifier(), data).reason == "bad_signature"


def test_a_subject_added_or_removed_is_refused() -> None:
    without = envelope(subject=None)
    assert refused(verifier(), {**without, "Subject": ""}).reason == "bad_signature"
    with_subject = envelope()
    del with_subject["Subject"]
    assert refused(verifier(), with_subject).reason == "bad_signature"


def test_a_notification_relabelled_a_confirmation_is_refused() -> None:
    data = envelope("SubscriptionConfirmation", version="2")
    data["Type"] = "Notification"  # its Token and SubscribeURL are then simply not signed
    assert refused(verifier(), data).reason == "bad_signature"


def test_a_signature_by_another_key_is_refused() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = sign(envelope(signed=False), other)
    assert refused(verifier(), data).reason == "bad_signature"


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("", "malformed"),
        ("not base64!", "malformed"),
        ("QUJD", "bad_signature"),  # base64, but not a signature
        ("QUI=\n", "malformed"),
        ("QUJ=", "malformed"),  # decodes as "QUI=" does: non-canonical padding bits
    ],
)
def test_a_bad_signature_is_refused(signature: str, reason: str) -> None:
    data = {**envelope(), "Signature": signature}
    assert refused(verifier(), data).reason == reason


# --- signature versions -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["", "0", "3", "2 ", "SHA256", "1.0"])
def test_an_unknown_signature_version_is_refused(version: str) -> None:
    fetcher = DictFetcher()
    data = envelope(signed=False, SignatureVersion=version, Signature="QUJD")
    assert refused(verifier(fetcher), data).reason == "bad_signature_version"
    assert fetcher.calls == []


def test_a_v1_signature_relabelled_v2_is_refused() -> None:
    data = {**envelope(version="1"), "SignatureVersion": "2"}
    assert refused(verifier(), data).reason == "bad_signature"


def test_require_v2_refuses_v1_and_accepts_v2() -> None:
    strict = verifier(require_v2=True)
    error = refused(strict, envelope(version="1"))
    assert error.reason == "bad_signature_version"
    assert "SignatureVersion" in str(error)
    assert strict.verify(body(envelope(version="2"))).signature_version == "2"


# --- the certificate's URL ----------------------------------------------------------------------

BAD_CERT_URLS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    # An S3 bucket named "sns": its hosts look like SNS's, and anyone may own the bucket.
    "https://sns.s3.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.s3-accelerate.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.s3-external-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.dualstack.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://s3.amazonaws.com/sns-certs/SimpleNotificationService-1.pem",
    "https://sns-certs.s3.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-1.pem",
    "https://evilsns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.evil.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.co/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com./SimpleNotificationService-1.pem",
    "https://sns..amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us_east_1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem?x=.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem#x",
    "https://sns.us-east-1.amazonaws.com/",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com:0/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com:x/SimpleNotificationService-1.pem",
    "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://user:pw@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com\n.evil.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com/Simple Notification.pem",
    "https://sn\u0455.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",  # a Cyrillic s
    "https://[::1]/SimpleNotificationService-1.pem",
    "https://127.0.0.1/SimpleNotificationService-1.pem",
    "file:///etc/ssl/cert.pem",
    "//sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com/" + "a" * 3000 + ".pem",
]


@pytest.mark.parametrize("url", BAD_CERT_URLS)
def test_a_cert_url_off_sns_is_refused_before_any_fetch(url: str) -> None:
    # The fetcher would serve a good certificate there: only the URL rule stops it.
    fetcher = DictFetcher({url: _good_pem()})
    error = refused(verifier(fetcher), envelope(SigningCertURL=url))
    assert error.reason == "bad_cert_url"
    assert fetcher.calls == []
    assert len(str(error)) < 400  # the URL is quoted cut short


@pytest.mark.parametrize(
    "url",
    [
        SUBSCRIBE_URL.replace("https:", "http:"),
        SUBSCRIBE_URL.replace(
            "sns.us-east-1.amazonaws.com", "sns.us-east-1.amazonaws.com.evil.com"
        ),
        SUBSCRIBE_URL.replace("sns.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"),
        SUBSCRIBE_URL.replace("sns.us-east-1.amazonaws.com", "sns.s3.amazonaws.com"),
        SUBSCRIBE_URL.replace("sns.us-east-1.amazonaws.com", "sns.s3-us-west-2.amazonaws.com"),
        SUBSCRIBE_URL.replace("https://", "https://x@"),
        SUBSCRIBE_URL.replace(".com/", ".com:8443/"),
        SUBSCRIBE_URL.replace("Action=ConfirmSubscription", "Action=Unsubscribe"),
        SUBSCRIBE_URL + "&Action=Unsubscribe",
        "https://sns.us-east-1.amazonaws.com/",
    ],
)
@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_a_subscribe_url_off_sns_is_refused(kind: str, url: str) -> None:
    fetcher = DictFetcher()
    data = envelope(kind, SubscribeURL=url)
    assert refused(verifier(fetcher), data).reason == "bad_subscribe_url"
    assert fetcher.calls == []
    with pytest.raises(VerificationError):
        validate_subscribe_url(url)


# --- the certificate ----------------------------------------------------------------------------


def _pem_of_key(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("pem", "what"),
    [
        (lambda: _certificate(not_after=NOW - timedelta(seconds=1)), "expired"),
        (lambda: _certificate(not_before=NOW + timedelta(seconds=1)), "not valid before"),
        (lambda: _good_pem() + _good_pem(), "2 certificates"),
        (lambda: _good_pem() + ca()[1].public_bytes(serialization.Encoding.PEM), "2 cert"),
        (lambda: b"", "not a PEM"),
        (lambda: b"garbage", "not a PEM"),
        (lambda: b"<html>Access Denied</html>\n" + _good_pem(), "not a PEM"),
        (lambda: _good_pem() + b"trailing", "not a PEM"),
        (lambda: _good_pem().replace(b"MII", b"MIX", 1), "not a PEM"),
        (lambda: _pem_of_key(signing_key()), "not a PEM"),
        (lambda: _good_pem() * 100, "over 65536 bytes"),
        (
            lambda: _certificate(ec.generate_private_key(ec.SECP256R1()).public_key()),
            "RSA key",
        ),
        (
            lambda: _certificate(
                rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
            ),
            "RSA key",
        ),
    ],
)
def test_a_bad_certificate_is_refused_and_not_cached(pem: Callable[[], bytes], what: str) -> None:
    fetcher = DictFetcher({CERT_URL: pem()})
    v = verifier(fetcher)
    for _ in range(2):
        error = refused(v, envelope())
        assert error.reason == "bad_certificate"
        assert what in str(error)
    assert len(fetcher.calls) == 2
    assert len(v.cache) == 0


def test_a_fetcher_that_returns_text_is_refused() -> None:
    fetcher = DictFetcher({CERT_URL: _good_pem().decode()})  # type: ignore[dict-item]
    assert refused(verifier(fetcher), envelope()).reason == "bad_certificate"


# --- topics and time ----------------------------------------------------------------------------


def test_an_unknown_topic_is_refused_before_any_fetch() -> None:
    fetcher = DictFetcher()
    error = refused(verifier(fetcher, topic_arns=[OTHER_TOPIC]), envelope())
    assert error.reason == "unknown_topic"
    assert TOPIC in str(error)
    assert fetcher.calls == []


def test_an_empty_allowlist_refuses_everything_and_says_which_setting() -> None:
    error = refused(verifier(topic_arns=[]), envelope())
    assert error.reason == "unknown_topic"
    assert 'SENDWELL["SNS_TOPIC_ARNS"]' in str(error)


def test_a_string_allowlist_is_a_mistake() -> None:
    with pytest.raises(TypeError, match="list of ARNs"):
        Verifier(topic_arns=TOPIC)


def test_a_huge_topic_arn_is_not_echoed_whole() -> None:
    error = refused(verifier(), envelope(TopicArn="arn:" + "x" * 100_000))
    assert error.reason == "unknown_topic"
    assert len(str(error)) < 600


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(seconds=3600), None),
        (timedelta(seconds=-3600), None),
        (timedelta(seconds=3601), "stale"),
        (timedelta(seconds=-3601), "stale"),
        (timedelta(days=365), "stale"),
    ],
)
def test_the_timestamp_must_be_within_max_age(offset: timedelta, reason: str | None) -> None:
    sent = datetime(2026, 5, 1, 11, 59, 30, 123000, tzinfo=UTC)
    v = verifier(clock=lambda: sent + offset)
    if reason is None:
        v.verify(body(envelope()))
    else:
        error = refused(v, envelope())
        assert error.reason == reason
        assert ("in the future" in str(error)) is (offset < timedelta(0))


@pytest.mark.parametrize(
    "stamp",
    ["2026-05-01T11:59:30Z", "2026-05-01T11:59:30.123456Z"],
)
def test_timestamps_without_or_with_more_fraction_are_read(stamp: str) -> None:
    verifier().verify(body(envelope(Timestamp=stamp)))


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-05-01T11:59:30.123+00:00",
        "2026-05-01 11:59:30.123Z",
        "2026-05-01T11:59:30.123",
        "2026-13-01T11:59:30.123Z",
        "2026-02-30T11:59:30.123Z",
        "1714564770",
        "",
    ],
)
def test_a_timestamp_not_in_sns_form_is_malformed(stamp: str) -> None:
    assert refused(verifier(), envelope(Timestamp=stamp)).reason == "malformed"


# --- the cache ----------------------------------------------------------------------------------


def test_a_second_message_does_not_fetch_again() -> None:
    fetcher = DictFetcher()
    v = verifier(fetcher)
    v.verify(body(envelope()))
    v.verify(body(envelope(MessageId="another")))
    assert fetcher.calls == [CERT_URL]


def test_a_failed_fetch_is_not_cached() -> None:
    fetcher = DictFetcher({})
    v = verifier(fetcher)
    error = refused(v, envelope())
    assert error.reason == "cert_unavailable"
    assert "HTTPError" in str(error)
    fetcher.pems[CERT_URL] = _good_pem()
    v.verify(body(envelope()))
    assert fetcher.calls == [CERT_URL, CERT_URL]


def test_any_fetcher_exception_becomes_cert_unavailable() -> None:
    class Broken:
        def fetch(self, url: str) -> bytes:
            raise RuntimeError("x" * 10_000)

    error = refused(verifier(Broken()), envelope())
    assert error.reason == "cert_unavailable"
    assert isinstance(error.__cause__, RuntimeError)
    assert len(str(error)) < 600


def test_the_cache_is_bounded() -> None:
    urls = [f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{i}.pem" for i in "abc"]
    fetcher = DictFetcher(dict.fromkeys(urls, _good_pem()))
    v = verifier(fetcher, cache=CertificateCache(max_entries=2))
    for url in [*urls, urls[2], urls[0]]:
        v.verify(body(envelope(SigningCertURL=url)))
    # a, b, c fetched; c cached; a was evicted when c came in, so fetched again
    assert fetcher.calls == [*urls, urls[0]]
    assert len(v.cache) == 2


def test_a_cached_certificate_expires_after_the_ttl() -> None:
    now = [NOW]
    fetcher = DictFetcher()
    v = verifier(fetcher, clock=lambda: now[0], max_age=10**9)
    v.verify(body(envelope()))
    now[0] = NOW + timedelta(minutes=59)
    v.verify(body(envelope()))
    now[0] = NOW + timedelta(minutes=61)
    v.verify(body(envelope()))
    assert fetcher.calls == [CERT_URL, CERT_URL]


def test_a_cached_certificate_is_never_used_past_its_not_after() -> None:
    now = [NOW]
    fetcher = DictFetcher({CERT_URL: _certificate(not_after=NOW + timedelta(minutes=10))})
    v = verifier(fetcher, clock=lambda: now[0], max_age=10**9)
    v.verify(body(envelope()))
    now[0] = NOW + timedelta(minutes=11)
    assert refused(v, envelope()).reason == "bad_certificate"  # fetched again, and expired
    assert fetcher.calls == [CERT_URL, CERT_URL]


# --- the envelope -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe{}",
        b'{"Type": "Notification"',
        b"[]",
        b'"Notification"',
        b"null",
        b"{}",
        b'{"Type": "Nope"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' + b"1" * 5000 + b"}",
        b'{"a": NaN}',
    ],
)
def test_not_an_envelope_is_malformed(raw: bytes) -> None:
    assert refused(verifier(), raw).reason == "malformed"


def test_an_oversized_body_is_malformed() -> None:
    raw = body(envelope(Message="x" * 300_000))
    error = refused(verifier(), raw)
    assert error.reason == "malformed"
    assert "over the limit" in str(error)
    parse_envelope(raw, max_bytes=len(raw))  # the limit is a parameter


@pytest.mark.parametrize("kind", ["Notification", "SubscriptionConfirmation"])
def test_a_missing_or_non_string_field_is_malformed(kind: str) -> None:
    good = envelope(kind)
    for field in [*(f for f in SIGNED[kind] if f != "Subject"), "Signature", "SigningCertURL"]:
        missing = dict(good)
        del missing[field]
        assert refused(verifier(), missing).reason == "malformed", field
        for value in (None, 1, ["x"], {"x": "y"}, True):
            assert refused(verifier(), {**good, field: value}).reason == "malformed", field


def test_a_null_subject_is_malformed() -> None:
    assert refused(verifier(), envelope(subject=None, Subject=None)).reason == "malformed"


def test_a_duplicate_key_is_malformed() -> None:
    raw = body(envelope())[:-1] + b', "TopicArn": "' + OTHER_TOPIC.encode() + b'"}'
    assert refused(verifier(), raw).reason == "malformed"


def test_a_lone_surrogate_is_malformed() -> None:
    raw = body(envelope(signed=False)).replace(b'"Message": "', b'"Message": "\\ud800', 1)
    assert refused(verifier(), raw).reason == "malformed"


# --- properties ---------------------------------------------------------------------------------


REASONS = {
    "malformed",
    "bad_signature_version",
    "unknown_topic",
    "stale",
    "bad_cert_url",
    "bad_subscribe_url",
    "cert_unavailable",
    "bad_certificate",
    "bad_signature",
}


def _only_verification_errors(v: Verifier, raw: bytes) -> SNSMessage | None:
    """The message, or None if refused; any exception but VerificationError fails the test."""
    error: VerificationError | None = None
    try:
        return v.verify(raw)
    except VerificationError as caught:
        error = caught
    assert error.reason in REASONS
    assert len(str(error)) < 1000
    return None


@HYPOTHESIS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_verification_error(raw: bytes) -> None:
    assert _only_verification_errors(verifier(), raw) is None


KEYS = [
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "Subject",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "SubscribeURL",
    "Token",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
PLAUSIBLE = {
    "Type": st.sampled_from(
        ["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
    ),
    "TopicArn": st.just(TOPIC),
    "Timestamp": st.sampled_from([STAMP, "2026-05-01T12:00:00Z", "2026-99-01T12:00:00Z"]),
    "SignatureVersion": st.sampled_from(["1", "2", "3"]),
    "Signature": st.sampled_from(["QUJD", "", "=", envelope()["Signature"]]),
    "SigningCertURL": st.sampled_from([CERT_URL, *BAD_CERT_URLS[:5]]),
    "SubscribeURL": st.sampled_from([SUBSCRIBE_URL, "https://sns.us-east-1.amazonaws.com/"]),
}


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        data[key] = draw(PLAUSIBLE.get(key, st.text(max_size=30)) | JSON)
    data.update(draw(st.dictionaries(st.text(max_size=8), JSON, max_size=3)))
    return data


@HYPOTHESIS
@given(envelopes())
def test_arbitrary_json_objects_raise_only_verification_error(data: dict[str, Any]) -> None:
    assert _only_verification_errors(verifier(), body(data)) is None


KINDS = st.sampled_from(
    [
        ("Notification", "1", "A subject"),
        ("Notification", "2", "A subject"),
        ("Notification", "2", None),
        ("SubscriptionConfirmation", "2", None),
        ("UnsubscribeConfirmation", "1", None),
    ]
)
MUTATION = st.one_of(
    st.just(("delete", None)),
    st.tuples(st.just("replace"), JSON),
    st.tuples(st.just("append"), st.text(min_size=1, max_size=3)),
    st.tuples(st.just("cut"), st.integers(min_value=0, max_value=200)),
    st.tuples(st.just("flip"), st.integers(min_value=0, max_value=10_000)),
)


def _mutate(value: Any, mutation: tuple[str, Any]) -> Any:
    how, arg = mutation
    if how == "replace":
        return arg
    if not isinstance(value, str):
        return value
    if how == "append":
        return value + arg
    if how == "cut":
        return value[: arg % (len(value) + 1)]
    index = arg % max(len(value), 1)  # flip: one character changed
    if not value:
        return "x"
    changed = chr((ord(value[index]) + 1) % 0x110000)
    return value[:index] + changed + value[index + 1 :]


@HYPOTHESIS
@given(KINDS, st.sampled_from([*KEYS, "UnsubscribeURL", "Extra"]), MUTATION)
def test_any_single_field_tampered_is_refused(
    kind: tuple[str, str, str | None], field: str, mutation: tuple[str, Any]
) -> None:
    data = envelope(kind[0], version=kind[1], subject=kind[2])
    tampered = dict(data)
    if mutation[0] == "delete":
        assume(field in data)
        del tampered[field]
    else:
        tampered[field] = _mutate(data.get(field, ""), mutation)
        assume(field not in data or tampered[field] != data[field])
    v = verifier()
    result = _only_verification_errors(v, body(tampered))
    # What SNS does not sign may change without the signature noticing; nothing else may.
    unsigned = field in ("UnsubscribeURL", "Extra") or (
        field in ("Token", "SubscribeURL") and kind[0] == "Notification"
    )
    unsigned |= field == "Subject" and kind[0] != "Notification"
    if not unsigned:
        assert result is None, f"{field} tampered and accepted: {tampered[field]!r}"
    elif result is not None:
        # accepted, and what was changed is not passed on as if verified
        assert result == verifier().verify(body(data))


# --- the default fetcher, against a real HTTP server ----------------------------------------------


class _CertServer(http.server.BaseHTTPRequestHandler):
    hits: list[str]  # set per server

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path == "/redirect.pem":
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow.pem":  # a byte at a time, each well within the socket timeout
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            with contextlib.suppress(OSError):  # the client hangs up first
                for _ in range(1000):
                    self.wfile.write(b"A")
                    self.wfile.flush()
                    time.sleep(0.05)
            return
        payload = {"/cert.pem": _good_pem(), "/big.pem": b"A" * (64 * 1024 + 1)}.get(self.path)
        if payload is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def cert_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_CertServer,), {"hits": hits})
    server = http.server.ThreadingHTTPServer((LOCALHOST, free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCALHOST}:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_default_fetcher_refuses_redirects_and_big_bodies(
    cert_server: tuple[str, list[str]],
) -> None:
    """``_get`` is the network half of the default fetcher and takes any http(s) URL, so it is
    tried here on 127.0.0.1; ``fetch`` (what the Verifier calls) checks the SNS rule first."""
    base, hits = cert_server
    fetcher = UrllibCertificateFetcher(timeout=5, proxies={})
    assert fetcher._get(f"{base}/cert.pem") == _good_pem()
    with pytest.raises(urllib.error.HTTPError, match="redirect refused") as caught:
        fetcher._get(f"{base}/redirect.pem")
    assert caught.value.code == 302
    with pytest.raises(OSError, match="over 65536 bytes"):
        fetcher._get(f"{base}/big.pem")
    with pytest.raises(urllib.error.HTTPError):
        fetcher._get(f"{base}/missing.pem")
    assert hits == [
        "/cert.pem",
        "/redirect.pem",
        "/big.pem",
        "/missing.pem",
    ]  # the 302 was not followed: /cert.pem was asked for once

    with pytest.raises(VerificationError) as refused_url:
        fetcher.fetch(f"{base}/cert.pem")
    assert refused_url.value.reason == "bad_cert_url"
    assert len(hits) == 4


def test_the_default_fetcher_gives_up_on_a_trickling_server(
    cert_server: tuple[str, list[str]],
) -> None:
    base, _ = cert_server
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"took over 0\.5 s"):
        UrllibCertificateFetcher(timeout=0.5, proxies={})._get(f"{base}/slow.pem")
    assert time.monotonic() - started < 5


def test_the_default_opener_has_no_file_handler() -> None:
    with pytest.raises(urllib.error.URLError, match="unknown url type"):
        no_redirect_opener({}).open("file:///etc/hostname", timeout=1)


# --- confirming a subscription ------------------------------------------------------------------


class _FakeSNS(urllib.request.BaseHandler):
    """Answers https requests in place of SNS (before urllib's own HTTPSHandler)."""

    handler_order = 100

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.urls: list[str] = []

    def https_open(self, req: urllib.request.Request) -> urllib.response.addinfourl:
        self.urls.append(req.full_url)
        headers = Message()
        for name, value in self.headers.items():
            headers[name] = value
        answer = b"<ConfirmSubscriptionResponse><SubscriptionArn>arn</SubscriptionArn>"
        response = urllib.response.addinfourl(
            io.BytesIO(answer), headers, req.full_url, self.status
        )
        response.msg = "Found" if self.status == 302 else "OK"
        return response


def _opener(fake: _FakeSNS) -> urllib.request.OpenerDirector:
    opener = no_redirect_opener({})
    opener.add_handler(fake)
    return opener


def test_confirm_subscription_gets_the_subscribe_url() -> None:
    message = verifier().verify(body(envelope("SubscriptionConfirmation")))
    fake = _FakeSNS()
    assert b"SubscriptionArn" in confirm_subscription(message, opener=_opener(fake))
    assert fake.urls == [SUBSCRIBE_URL]


def test_confirm_subscription_does_not_follow_a_redirect() -> None:
    message = verifier().verify(body(envelope("SubscriptionConfirmation")))
    fake = _FakeSNS(302, {"Location": "https://evil.example/"})
    with pytest.raises(urllib.error.HTTPError, match="redirect refused"):
        confirm_subscription(message, opener=_opener(fake))
    assert fake.urls == [SUBSCRIBE_URL]


@pytest.mark.parametrize("kind", ["UnsubscribeConfirmation", "Notification"])
def test_confirm_subscription_refuses_anything_but_a_subscription(kind: str) -> None:
    message = verifier().verify(body(envelope(kind)))
    fake = _FakeSNS()
    with pytest.raises(VerificationError) as caught:
        confirm_subscription(message, opener=_opener(fake))
    assert caught.value.reason == "not_confirmable"
    assert fake.urls == []


def test_confirm_subscription_checks_the_url_again() -> None:
    message = verifier().verify(body(envelope("SubscriptionConfirmation")))
    forged = SNSMessage(
        **{**message.__dict__, "subscribe_url": "https://evil.example/?Action=ConfirmSubscription"}
    )
    fake = _FakeSNS()
    with pytest.raises(VerificationError) as caught:
        confirm_subscription(forged, opener=_opener(fake))
    assert caught.value.reason == "bad_subscribe_url"
    assert fake.urls == []


# --- moto's SNS, end to end ---------------------------------------------------------------------


class _Endpoint(http.server.BaseHTTPRequestHandler):
    """An HTTP subscription endpoint: keeps every body POSTed to it."""

    bodies: queue.Queue[bytes]  # set per server

    def do_POST(self) -> None:
        self.bodies.put(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _MotoCertificates:
    """Fetches a (validated) SNS certificate URL from moto's server instead of AWS.

    moto serves its signing certificates at ``/SimpleNotificationService-<id>.pem``, routed to
    SNS by the service named in a SigV4 Authorization header (any signature does)."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.calls: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.calls.append(url)
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname == f"sns.{self.region}.amazonaws.com"
        auth = f"AWS4-HMAC-SHA256 Credential=testing/20260101/{self.region}/sns/aws4_request, "
        request = urllib.request.Request(
            self.endpoint_url + parts.path,
            headers={"Authorization": auth + "SignedHeaders=host, Signature=0"},
        )
        with no_redirect_opener({}).open(request, timeout=10) as response:
            pem: bytes = response.read()
        return pem


@pytest.fixture
def sns_endpoint() -> Iterator[tuple[str, queue.Queue[bytes]]]:
    bodies: queue.Queue[bytes] = queue.Queue()
    handler = type("Handler", (_Endpoint,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer((LOCALHOST, free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCALHOST}:{server.server_address[1]}/sns", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_message_moto_signed_verifies(
    moto_server: LocalSESServer, sns_endpoint: tuple[str, queue.Queue[bytes]]
) -> None:
    url, bodies = sns_endpoint
    sns = moto_server.client("sns")
    topic = sns.create_topic(Name="sendwell-sns-verify")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=url)
    fetcher = _MotoCertificates(moto_server.endpoint_url, moto_server.region)
    v = Verifier(topic_arns=[topic], fetcher=fetcher)

    sns.publish(TopicArn=topic, Message='{"notificationType": "Delivery"}')
    message = v.verify(bodies.get(timeout=30))
    assert message.type == "Notification"
    assert message.topic_arn == topic
    assert message.message == '{"notificationType": "Delivery"}'
    assert message.signature_version == "2"
    assert message.subject is None
    assert len(fetcher.calls) == 1

    # moto leaves Subject out of what it signs (AWS signs it): so its messages with a Subject
    # are refused, as a message whose Subject was added on the way must be.
    sns.publish(TopicArn=topic, Message="hello", Subject="a subject")
    with pytest.raises(VerificationError) as caught:
        v.verify(bodies.get(timeout=30))
    assert caught.value.reason == "bad_signature"
