"""Deciding whether an SNS delivery is genuine, and confirming a subscription.

The same :class:`Verifier` serves the webhook view and the SQS poller: it takes the raw body,
and its settings as arguments (the caller reads ``SENDWELL``), so it has no Django in it.
"""

from __future__ import annotations

import base64
import binascii
import urllib.request
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from sendwell.sns.certs import (
    MAX_CERT_BYTES,
    CertificateCache,
    CertificateFetcher,
    SigningKey,
    UrllibCertificateFetcher,
    check_validity,
    load_signing_key,
    no_redirect_opener,
    read_bounded,
)
from sendwell.sns.envelope import (
    CONFIRMATION_TYPES,
    SNSMessage,
    VerificationError,
    parse_envelope,
    parse_timestamp,
    shorten,
    string_to_sign,
)
from sendwell.sns.urls import validate_cert_url, validate_subscribe_url

__all__ = ["Verifier", "confirm_subscription"]

# SignatureVersion "1" is SHA1withRSA, "2" SHA256withRSA, both PKCS#1 v1.5 (AWS's docs).
_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}
_SETTING: Final = 'SENDWELL["SNS_TOPIC_ARNS"]'


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Verifier:
    """``Verifier(topic_arns=[...]).verify(body)``: an :class:`SNSMessage`, or
    :class:`VerificationError`.

    The checks run cheapest first, and the certificate is fetched last, so a sender who does not
    know an allowed topic and the time cannot make this server fetch anything.
    """

    def __init__(
        self,
        *,
        topic_arns: Collection[str],
        max_age: float = 3600,
        require_v2: bool = False,
        fetcher: CertificateFetcher | None = None,
        clock: Callable[[], datetime] = _utcnow,
        cache: CertificateCache | None = None,
        max_bytes: int = 256 * 1024,
    ) -> None:
        if isinstance(topic_arns, str):  # a str is a Collection of one-letter "ARNs"
            raise TypeError(f"topic_arns must be a list of ARNs, not the string {topic_arns!r}")
        if max_age <= 0:
            raise ValueError(f"max_age must be a positive number of seconds, not {max_age!r}")
        self.topic_arns = frozenset(topic_arns)
        self.max_age = float(max_age)
        self.require_v2 = require_v2
        self.fetcher: CertificateFetcher = fetcher or UrllibCertificateFetcher()
        self.clock = clock
        self.cache = cache if cache is not None else CertificateCache()
        self.max_bytes = max_bytes

    def verify(self, body: bytes) -> SNSMessage:
        envelope = parse_envelope(body, max_bytes=self.max_bytes)
        version = envelope["SignatureVersion"]
        self._check_version(version)
        self._check_topic(envelope["TopicArn"])
        now = self.clock()
        timestamp = parse_timestamp(envelope["Timestamp"])
        self._check_age(timestamp, now)
        cert_url = validate_cert_url(envelope["SigningCertURL"])
        # Only what this Type signs is exposed: a Token on a Notification, or a Subject on a
        # confirmation, is unsigned and could be anyone's.
        subject = subscribe_url = token = None
        if envelope["Type"] in CONFIRMATION_TYPES:
            subscribe_url = validate_subscribe_url(envelope["SubscribeURL"])
            token = envelope["Token"]
        else:
            subject = envelope.get("Subject")
        signature = _decode_signature(envelope["Signature"])
        key = self._signing_key(cert_url, now)
        try:
            key.public_key.verify(
                signature, string_to_sign(envelope), PKCS1v15(), _HASHES[version]()
            )
        except InvalidSignature:
            raise VerificationError(
                "bad_signature",
                "The SNS message's signature does not match its content",
                "it was changed on the way or forged, so it was dropped",
            ) from None
        return SNSMessage(
            type=envelope["Type"],
            message_id=envelope["MessageId"],
            topic_arn=envelope["TopicArn"],
            message=envelope["Message"],
            timestamp=timestamp,
            subject=subject,
            subscribe_url=subscribe_url,
            token=token,
            signature_version=version,
            raw=envelope,
        )

    def _check_version(self, version: str) -> None:
        if version not in _HASHES:
            raise VerificationError(
                "bad_signature_version",
                f"SignatureVersion {shorten(version, 20)} is not one SNS uses",
                'only "1" (SHA1) and "2" (SHA256) exist; the message was dropped',
            )
        if version == "1" and self.require_v2:
            raise VerificationError(
                "bad_signature_version",
                'The SNS message is signed with SignatureVersion "1" (SHA1), and only "2" is '
                "accepted",
                'set the topic\'s SignatureVersion attribute to "2" '
                "(aws sns set-topic-attributes --attribute-name SignatureVersion "
                "--attribute-value 2), or stop requiring version 2",
            )

    def _check_topic(self, topic_arn: str) -> None:
        if not self.topic_arns:
            raise VerificationError(
                "unknown_topic",
                "No SNS topic is allowed, so every SNS message is refused",
                f"list the ARNs of your SES feedback topics in {_SETTING}",
            )
        if topic_arn not in self.topic_arns:
            raise VerificationError(
                "unknown_topic",
                f"The SNS message comes from topic {shorten(topic_arn, 160)}, which is not in "
                f"{_SETTING}",
                "add the ARN there if that topic is yours; otherwise ignore this",
            )

    def _check_age(self, timestamp: datetime, now: datetime) -> None:
        # Both ways: a message from the future is as suspect as an old one (a replay with a
        # forged clock), and a big gap either way usually means this machine's clock is wrong.
        age = (now - timestamp).total_seconds()
        if abs(age) > self.max_age:
            direction = "old" if age > 0 else "in the future"
            raise VerificationError(
                "stale",
                f"The SNS message is {abs(age):.0f} s {direction} (its Timestamp is "
                f"{timestamp.isoformat()}, now is {now.isoformat()}); the limit is "
                f"{self.max_age:.0f} s",
                "a replay is dropped so; if genuine messages are refused, check this "
                "machine's clock (NTP)",
            )

    def _signing_key(self, url: str, now: datetime) -> SigningKey:
        key = self.cache.get(url, now)
        if key is not None:
            check_validity(key, url, now)
            return key
        try:
            pem = self.fetcher.fetch(url)
        except Exception as exc:  # any fetcher's failure: never cached, always this error
            raise VerificationError(
                "cert_unavailable",
                f"Could not fetch the SNS signing certificate {shorten(url)}: "
                f"{type(exc).__name__}: {shorten(str(exc), 160)}",
                "check that this machine can reach sns.<region>.amazonaws.com over https; "
                "SNS will deliver the message again",
            ) from exc
        if not isinstance(pem, bytes):
            raise VerificationError(
                "bad_certificate",
                f"The certificate fetcher returned a {type(pem).__name__}, not bytes",
                "fix the fetcher passed to Verifier",
            )
        key = load_signing_key(pem, url, now)
        self.cache.put(url, key, now)
        return key


def _decode_signature(value: str) -> bytes:
    try:
        signature = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        signature = None
    # Canonical base64 only: then one signature has one spelling, and changing the text of
    # Signature always changes the bytes checked.
    if not signature or base64.b64encode(signature).decode("ascii") != value:
        raise VerificationError(
            "malformed",
            "Not an Amazon SNS message: its Signature is not base64",
            "only POST what an SNS subscription delivers",
        )
    return signature


def confirm_subscription(
    message: SNSMessage,
    *,
    opener: urllib.request.OpenerDirector | None = None,
    timeout: float = 5.0,
) -> bytes:
    """Confirm a verified SubscriptionConfirmation: GET its SubscribeURL (checked again; no
    redirects followed) and return SNS's answer (XML with the SubscriptionArn).

    An UnsubscribeConfirmation is never followed: its SubscribeURL would subscribe again, which
    is for a person to decide. Network and HTTP errors raise as :class:`OSError`
    (``urllib.error.URLError`` / ``HTTPError``).
    """
    if message.type != "SubscriptionConfirmation" or message.subscribe_url is None:
        raise VerificationError(
            "not_confirmable",
            f"A {message.type} is not a subscription to confirm",
            "call confirm_subscription() only for Type SubscriptionConfirmation; to subscribe "
            "again after an unsubscribe, subscribe the endpoint in the SNS console",
        )
    url = validate_subscribe_url(message.subscribe_url)
    return read_bounded(opener or no_redirect_opener(), url, timeout=timeout, limit=MAX_CERT_BYTES)
