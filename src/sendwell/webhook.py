"""The SNS webhook: Amazon SNS posts SES's notifications here (``sendwell:sns``).

It answers the way SNS's retry policy needs: 2xx once a notification is stored (a redelivery is
recognised and answered 2xx again), 4xx for what SNS must not send again (a forged, tampered,
stale, malformed or unknown-topic message: SNS does not retry a 4xx from an HTTP endpoint), and
5xx only when trying again can help (the database is down). Verification is
:mod:`sendwell.sns`; what a notification means is :mod:`sendwell.feedback`, the code the SQS
poller and ``manage.py sendwell simulate`` use too.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from sendwell import conf, feedback
from sendwell.models import Notification
from sendwell.sns import (
    CertificateCache,
    CertificateFetcher,
    SNSMessage,
    UrllibCertificateFetcher,
    VerificationError,
    Verifier,
    confirm_subscription,
    validate_subscribe_url,
)

logger = logging.getLogger("sendwell.webhook")

# What SNS posts is a few KiB (SES's JSON plus the envelope); SNS's own limit is 256 KiB.
MAX_BODY_BYTES = 256 * 1024
# One cache of checked signing certificates per process, whatever the settings.
_certificates = CertificateCache()


def _fetcher() -> CertificateFetcher | None:
    """The configured SNS_FETCHER (None: the default, HTTPS to SNS itself)."""
    path = conf.setting("SNS_FETCHER")
    return import_string(path)() if path else None


def _verifier() -> Verifier:
    return Verifier(
        topic_arns=list(conf.setting("SNS_TOPIC_ARNS")),
        max_age=float(conf.setting("SNS_MAX_AGE")),
        require_v2=bool(conf.setting("SNS_REQUIRE_SIGNATURE_V2")),
        fetcher=_fetcher() or UrllibCertificateFetcher(),
        cache=_certificates,
        max_bytes=MAX_BODY_BYTES,
    )


def _authorized(request: HttpRequest) -> bool:
    """HTTP basic auth, when SNS_BASIC_AUTH is set (the user:password in the endpoint URL)."""
    expected = conf.setting("SNS_BASIC_AUTH")
    if not expected:
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, str(expected).encode())


# The certificate could not be fetched (a network blip, an outbound firewall): the message may
# be genuine, and SNS retries a 5xx, never a 4xx. An unknown topic is forbidden, not malformed.
_REFUSAL_STATUS = {"cert_unavailable": 503, "unknown_topic": 403}


def _answer(status: int, text: str) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")


@csrf_exempt  # SNS cannot send a CSRF token; the signature is what authenticates a message
@transaction.non_atomic_requests  # its own transactions; a 5 s confirmation never inside one
@require_POST
def sns(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        # SNS sends its credentials only after a challenge.
        response = _answer(401, "authentication required")
        response["WWW-Authenticate"] = 'Basic realm="sendwell"'
        return response
    # Read at most one byte more than an SNS message may have, whatever Content-Length says
    # (or whether there is one: a chunked body has none).
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _answer(413, "too large for an SNS message")
    try:
        message = _verifier().verify(body)
    except VerificationError as error:
        # A warning, not an error: anyone can post here. The text is bounded and names no
        # secret; it tells an operator which setting to look at.
        logger.warning("sendwell: refused an SNS message (%s): %s", error.reason, error)
        return _answer(_REFUSAL_STATUS.get(error.reason, 400), error.reason)
    try:
        return _handle(message)
    except DatabaseError:
        logger.exception("sendwell: could not store SNS message %s", message.message_id)
        return _answer(503, "try again later")


def _handle(message: SNSMessage) -> HttpResponse:
    notification, created = feedback.store(message)
    if message.type == "SubscriptionConfirmation":
        return _confirm(message, notification)
    if message.type == "UnsubscribeConfirmation":
        # Recorded, never followed: subscribing again is for a person to decide.
        logger.warning(
            "sendwell: SNS says this endpoint is no longer subscribed to %s; its notifications "
            "stop (subscribe it again in the SNS console if that was not meant)",
            message.topic_arn,
        )
        return _answer(200, "recorded")
    if created or notification.processed_at is None:  # new, or its processing failed before
        try:
            feedback.process(notification)
        except DatabaseError:
            raise
        except Exception:
            # A bug, or a signal receiver that raised: nothing was applied (one transaction).
            # SNS delivers it again, and it is processed then.
            logger.exception(
                "sendwell: processing SNS message %s failed", notification.sns_message_id
            )
            return _answer(503, "try again later")
    return _answer(200, "ok")


def _confirm(message: SNSMessage, notification: Notification) -> HttpResponse:
    """Confirm a subscription to an accepted topic (the Verifier refused any other)."""
    if notification.processed_at is not None:
        return _answer(200, "subscription already confirmed")
    try:
        fetcher = _fetcher()
        confirm = getattr(fetcher, "confirm", None)
        if confirm is None:
            confirm_subscription(message)  # urllib, checked again, no redirects
        else:
            confirm(validate_subscribe_url(message.subscribe_url or ""))
    except Exception as error:  # whatever the network or a custom fetcher raises
        if isinstance(error, DatabaseError):
            raise
        notification.delete()  # SNS tries again; that try must confirm again
        logger.warning("sendwell: could not confirm the SNS subscription: %s", error)
        return _answer(502, "could not confirm the subscription")
    notification.processed_at = timezone.now()
    notification.save(update_fields=["processed_at"])
    logger.info("sendwell: confirmed the SNS subscription to %s", message.topic_arn)
    return _answer(200, "subscription confirmed")
