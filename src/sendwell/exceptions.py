"""sendwell's errors: what happened, whether a retry can help, and what to do about it.

Every delivery error subclasses :class:`smtplib.SMTPException`, because that is what Django
applications already catch around ``send_mail()`` (Django's own SMTP backend raises it), so code
written for SMTP keeps working when the transport is SES. Each class also subclasses the stdlib or
Django type a caller would naturally expect (``ConnectionError``, ``TimeoutError``,
``PermissionError``, ``ValueError``, ``ImproperlyConfigured``).

This module imports nothing from Django models or settings: it is safe to use anywhere.
"""

from __future__ import annotations

import enum
import smtplib
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured


class Disposition(enum.StrEnum):
    """What the delivery engine should do after an error."""

    RETRY = "retry"  # transient: try again later, with backoff
    DEFER = "defer"  # quota: wait until the sending window has room, do not count an attempt
    FAIL = "fail"  # permanent: the same request will never succeed


class SendwellError(Exception):
    """Base class of every sendwell error.

    ``str(error)`` is "<what happened>: <remedy>" so that a log line or a traceback alone tells the
    reader what to do.
    """

    disposition: Disposition = Disposition.FAIL
    default_remedy: str = ""

    def __init__(
        self,
        message: str,
        *,
        remedy: str | None = None,
        code: str | None = None,
        transport: str | None = None,
    ) -> None:
        self.message = message
        self.remedy = self.default_remedy if remedy is None else remedy
        self.code = code
        self.transport = transport
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.remedy:
            return f"{self.message}: {self.remedy}"
        return self.message

    @property
    def retryable(self) -> bool:
        return self.disposition is Disposition.RETRY


class ConfigurationError(SendwellError, ImproperlyConfigured, ValueError):
    """A setting or environment variable has a value sendwell cannot use."""


# --- delivery errors ------------------------------------------------------------------------


class DeliveryError(SendwellError, smtplib.SMTPException):
    """A message could not be handed to the transport.

    ``accepted`` lists the parts that had already gone out before the error (for SES, one entry
    per accepted API call with its message id and recipients), so nobody is sent to twice.
    """

    accepted: Sequence[Any] = ()
    # The request may have been accepted although no answer came (a timeout, a connection closed
    # while waiting for the answer): never repeated blindly, and its quota stays counted.
    in_doubt: bool = False


class TransientDeliveryError(DeliveryError):
    """The same request may succeed later: throttling, 5xx, timeouts, dropped connections."""

    disposition = Disposition.RETRY


class ThrottledError(TransientDeliveryError):
    """SES (or the SMTP server) asked us to slow down."""

    default_remedy = (
        "the account's maximum send rate was exceeded; sendwell retries with backoff. "
        "If this persists, lower the send rate or request a higher one in the SES console"
    )


class ServiceUnavailableError(TransientDeliveryError):
    """The service answered with a 5xx error."""

    default_remedy = "the service had an internal error; retrying later usually succeeds"


class TransportConnectionError(TransientDeliveryError, ConnectionError):
    """The connection could not be made or was dropped."""


class TransportTimeoutError(TransientDeliveryError, TimeoutError):
    """The service did not answer in time."""

    in_doubt = True


class QuotaExceededError(DeliveryError):
    """The 24-hour sending quota is used up: wait for the window to move, do not retry now."""

    disposition = Disposition.DEFER
    default_remedy = (
        "the account's 24-hour sending quota is used up. Messages can be sent again when the "
        "24-hour window has room; request a higher quota in the SES console "
        "(Account dashboard > Request production access / Service Quotas)"
    )


class PermanentDeliveryError(DeliveryError):
    """The same request will never succeed: fix the message, the identity or the account."""

    disposition = Disposition.FAIL


class MessageRejectedError(PermanentDeliveryError):
    """SES rejected the message (content, virus, or a policy)."""


class IdentityNotVerifiedError(MessageRejectedError):
    """The sender (or, in the sandbox, a recipient) is not a verified SES identity."""

    default_remedy = (
        "verify the sender's address or its domain in SES (Configuration > Identities) in the "
        "region you send from; while the account is in the SES sandbox, every recipient must be "
        "verified too, so request production access to send to anyone"
    )


class AccountSendingPausedError(PermanentDeliveryError):
    """Sending is disabled for the whole account or for the configuration set."""

    default_remedy = (
        "sending is paused for this account or configuration set (often after a high bounce or "
        "complaint rate); check the Reputation dashboard in the SES console and re-enable sending"
    )


class ConfigurationSetDoesNotExistError(PermanentDeliveryError):
    """The configuration set named by the setting or the message header does not exist."""

    default_remedy = (
        "create the configuration set in the SES console in this region, or correct "
        "AWS_SES_CONFIGURATION_SET / the X-SES-CONFIGURATION-SET header (empty means none)"
    )


class InvalidAddressError(PermanentDeliveryError, ValueError):
    """An address cannot be used as an envelope sender or recipient."""

    default_remedy = (
        "correct the address; it must be a single valid addr-spec like name@example.com"
    )


class MessageTooLargeError(PermanentDeliveryError, ValueError):
    """The MIME message is larger than the API accepts."""


class RecipientsRefusedError(PermanentDeliveryError):
    """The SMTP server refused every recipient."""

    default_remedy = "check the recipient addresses; the server's reply for each is listed above"


class AccessDeniedError(PermanentDeliveryError, PermissionError):
    """The credentials are valid but not allowed to do this."""

    default_remedy = (
        "the IAM policy of the role or user does not allow this call; allow ses:SendEmail and "
        "ses:SendRawEmail on the sending identity (and ses:GetAccount / ses:GetSendQuota for "
        "quotas), or check for a service control policy that denies it"
    )


class InvalidCredentialsError(PermanentDeliveryError, ImproperlyConfigured):
    """The credentials were found but AWS or the SMTP server does not accept them."""

    default_remedy = (
        "AWS does not recognise the access key: check AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (no quotes or spaces, the key is active in IAM), or remove both "
        "to use the instance's IAM role"
    )


class NoCredentialsError(PermanentDeliveryError, ImproperlyConfigured):
    """boto3's credential chain found nothing."""

    default_remedy = (
        "attach an IAM role to the instance, task or function (EC2 instance profile, ECS task "
        "role, Lambda execution role), or set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )


class SMTPAuthenticationFailedError(PermanentDeliveryError, ImproperlyConfigured):
    """The SMTP server refused the user name or password."""

    default_remedy = (
        "check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD; for the SES SMTP interface use the SMTP "
        "credentials created in the SES console (SMTP settings), not IAM access keys"
    )


class TLSRequiredError(PermanentDeliveryError, ImproperlyConfigured):
    """The SMTP server requires TLS before it accepts authentication or mail."""

    default_remedy = (
        "the server requires an encrypted connection: set EMAIL_USE_TLS=True (STARTTLS, "
        "usually port 587) or EMAIL_USE_SSL=True (implicit TLS, usually port 465)"
    )


class TLSCertificateError(PermanentDeliveryError, ImproperlyConfigured):
    """The SMTP server's certificate could not be verified."""

    default_remedy = (
        "the server's TLS certificate is not trusted: use the host name on its certificate in "
        "EMAIL_HOST, or point EMAIL_SSL_CAFILE at the CA bundle that signed it"
    )


class InvalidMessageError(PermanentDeliveryError, ValueError):
    """The message itself cannot be sent as it is (a bad tag, a malformed header)."""


class SuppressedError(PermanentDeliveryError):
    """Every recipient of the message is on sendwell's suppression list (raised only with
    ``SENDWELL["RAISE_WHEN_ALL_SUPPRESSED"]``; otherwise the message counts as not sent)."""

    default_remedy = (
        "the addresses bounced, complained or unsubscribed before; remove them from the list "
        "(manage.py sendwell suppression remove ADDRESS) only if you know they can receive mail"
    )

    def __init__(self, addresses: Sequence[str], **kwargs: Any) -> None:
        self.addresses = tuple(addresses)
        shown = ", ".join(self.addresses[:3]) + (" ..." if len(self.addresses) > 3 else "")
        kwargs.setdefault("code", "sendwell.suppressed")
        super().__init__(f"every recipient is suppressed ({shown})", **kwargs)
