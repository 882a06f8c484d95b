"""SNS's signatures, made at test time: a CA, an SNS-like signing certificate and key, and
messages signed exactly as SNS signs them (both SignatureVersions, with or without Subject).

The string to sign is written out here from AWS's "Verifying the signatures of Amazon SNS
messages", independently of sendwell.sns's own.
"""

from __future__ import annotations

import base64
import functools
import json
import urllib.error
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

# The CA is valid for ten years either side of this, so it covers any test clock.
_CA_CENTRE = datetime(2026, 5, 1, tzinfo=UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@functools.cache
def ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Test Amazon RSA CA"))
        .issuer_name(_name("Test Amazon RSA CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_CA_CENTRE - timedelta(days=3650))
        .not_valid_after(_CA_CENTRE + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(public_key: Any = None, *, not_before: datetime, not_after: datetime) -> bytes:
    """An SNS-like signing certificate issued by the test CA, as PEM."""
    ca_key, ca_cert = ca()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("sns.amazonaws.com"))
        .issuer_name(ca_cert.subject)
        .public_key(public_key or signing_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def aws_string_to_sign(envelope: dict[str, Any]) -> bytes:
    """AWS's "Verifying the signatures of Amazon SNS messages", written out again."""
    if envelope["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope).encode()


def sign(envelope: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
    algorithm = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()
    signature = (key or signing_key()).sign(
        aws_string_to_sign(envelope), padding.PKCS1v15(), algorithm
    )
    return {**envelope, "Signature": base64.b64encode(signature).decode()}


# --- what SNS posts to the webhook, stamped now ----------------------------------------------

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-elses"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-webhooktest.pem"


@functools.cache
def current_pem() -> bytes:
    now = datetime.now(UTC)
    return certificate(not_before=now - timedelta(days=1), not_after=now + timedelta(days=30))


class LocalSNSFetcher:
    """SNS_FETCHER for the tests: SNS's certificate URL and SubscribeURLs, served locally.

    sendwell checks every URL to be SNS's own before it calls ``fetch``; what was fetched is
    kept in ``LocalSNSFetcher.fetched`` for the tests to read.
    """

    fetched: ClassVar[list[str]] = []
    fail_confirmations = False

    def fetch(self, url: str) -> bytes:
        LocalSNSFetcher.fetched.append(url)
        if url == CERT_URL:
            return current_pem()
        raise urllib.error.URLError(f"the test fetcher does not serve {url}")

    def confirm(self, url: str) -> bytes:
        LocalSNSFetcher.fetched.append(url)
        if "Action=ConfirmSubscription" in url and not LocalSNSFetcher.fail_confirmations:
            return b"<ConfirmSubscriptionResponse/>"
        raise urllib.error.URLError(f"the test fetcher does not confirm {url}")


def sns_message(
    ses_json: Any = None,
    *,
    kind: str = "Notification",
    topic: str = TOPIC,
    message_id: str | None = None,
    version: str = "2",
    subject: str | None = None,
    timestamp: datetime | None = None,
    cert_url: str = CERT_URL,
) -> dict[str, Any]:
    """An SNS HTTP delivery, signed as SNS signs it."""
    stamp = (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    data: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Timestamp": stamp,
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
    }
    if kind == "Notification":
        data["Message"] = ses_json if isinstance(ses_json, str) else json.dumps(ses_json)
        if subject is not None:
            data["Subject"] = subject
    else:
        token = uuid.uuid4().hex
        data["Message"] = f"You have chosen to subscribe to the topic {topic}."
        data["Token"] = token
        data["SubscribeURL"] = (
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={topic}&Token={token}"
        )
    return sign(data)
