"""Verifying Amazon SNS deliveries (SES bounces, complaints and deliveries), with no Django.

``Verifier(topic_arns=[...]).verify(body)`` returns an :class:`SNSMessage` whose signature, topic,
age and certificate were checked, or raises :class:`VerificationError` with a ``reason``. The
webhook view and the SQS poller both call it; see docs/sns.md for what is checked and why.
Deduplicating by ``message_id`` is the caller's job (the database's).
"""

from sendwell.sns.certs import (
    CertificateCache,
    CertificateFetcher,
    SigningKey,
    UrllibCertificateFetcher,
)
from sendwell.sns.envelope import (
    MessageType,
    Reason,
    SNSMessage,
    VerificationError,
    parse_envelope,
    string_to_sign,
)
from sendwell.sns.urls import validate_cert_url, validate_subscribe_url
from sendwell.sns.verify import Verifier, confirm_subscription

__all__ = [
    "CertificateCache",
    "CertificateFetcher",
    "MessageType",
    "Reason",
    "SNSMessage",
    "SigningKey",
    "UrllibCertificateFetcher",
    "VerificationError",
    "Verifier",
    "confirm_subscription",
    "parse_envelope",
    "string_to_sign",
    "validate_cert_url",
    "validate_subscribe_url",
]
