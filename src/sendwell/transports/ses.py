"""Amazon SES transport: one prepared message -> one or more SES API calls (v2 or v1).

SES takes at most 50 envelope recipients per call, so a larger message is sent as the same MIME
in several calls; each call returns its own SES message id. Errors are classified here, once,
into sendwell's exceptions (retryable, quota or permanent, each with its remedy).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore import exceptions as botocore_exceptions

from sendwell import aws
from sendwell.exceptions import (
    AccessDeniedError,
    AccountSendingPausedError,
    ConfigurationSetDoesNotExistError,
    DeliveryError,
    IdentityNotVerifiedError,
    InvalidAddressError,
    InvalidCredentialsError,
    MessageRejectedError,
    MessageTooLargeError,
    NoCredentialsError,
    PermanentDeliveryError,
    QuotaExceededError,
    ServiceUnavailableError,
    ThrottledError,
    TransientDeliveryError,
    TransportConnectionError,
    TransportTimeoutError,
)
from sendwell.mime import PreparedMessage
from sendwell.options import MAX_RECIPIENTS_PER_CALL, SESOptions
from sendwell.transports.base import AcceptedCall


def recipient_chunks(recipients: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for start in range(0, len(recipients), MAX_RECIPIENTS_PER_CALL):
        yield recipients[start : start + MAX_RECIPIENTS_PER_CALL]


class SESTransport:
    """Sends prepared messages through the shared boto3 client for ``options``."""

    name = "ses"
    max_recipients = MAX_RECIPIENTS_PER_CALL

    def __init__(self, options: SESOptions) -> None:
        self.options = options

    @property
    def client(self) -> Any:
        return aws.ses_client(self.options)

    @property
    def paced_by(self) -> SESOptions:
        return self.options

    @property
    def configuration_set(self) -> str | None:
        return self.options.configuration_set

    def send(self, prepared: PreparedMessage) -> list[AcceptedCall]:
        """Send ``prepared``; return one :class:`AcceptedCall` per SES call.

        On failure the raised :class:`DeliveryError` carries ``accepted``: the calls that had
        already succeeded (their recipients must not be sent to again).
        """
        self.check(prepared)
        accepted: list[AcceptedCall] = []
        for chunk in recipient_chunks(prepared.recipients):
            try:
                response = self._call(prepared, chunk)
            except (botocore_exceptions.BotoCoreError, botocore_exceptions.ClientError) as exc:
                error = translate_ses_error(exc, self.options)
                error.accepted = accepted
                raise error from exc
            accepted.append(AcceptedCall(response["MessageId"], chunk))
        return accepted

    def check(self, prepared: PreparedMessage) -> None:
        limit = self.options.max_raw_size
        if len(prepared.raw) > limit:
            raise MessageTooLargeError(
                f"the message is {len(prepared.raw) / 1024 / 1024:.1f} MB; the SES "
                f"v{self.options.api_version} API accepts at most {limit // 1024 // 1024} MB",
                remedy="send large files as links instead of attachments"
                + ("" if self.options.use_ses_v2 else ", or set USE_SES_V2=True (40 MB limit)"),
                transport=self.name,
            )

    def _call(self, prepared: PreparedMessage, recipients: tuple[str, ...]) -> Any:
        if self.options.use_ses_v2:
            params: dict[str, Any] = {
                "FromEmailAddress": prepared.envelope_from,
                "Destination": {"ToAddresses": list(recipients)},
                "Content": {"Raw": {"Data": prepared.raw}},
            }
            if prepared.configuration_set:
                params["ConfigurationSetName"] = prepared.configuration_set
            if prepared.tags:
                params["EmailTags"] = [{"Name": n, "Value": v} for n, v in prepared.tags]
            return self.client.send_email(**params)
        params = {
            "Source": prepared.envelope_from,
            "Destinations": list(recipients),
            "RawMessage": {"Data": prepared.raw},
        }
        if prepared.configuration_set:
            params["ConfigurationSetName"] = prepared.configuration_set
        if prepared.tags:
            params["Tags"] = [{"Name": n, "Value": v} for n, v in prepared.tags]
        return self.client.send_raw_email(**params)


_THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
)
_PAUSED_CODES = frozenset(
    {
        "AccountSendingPausedException",
        "ConfigurationSetSendingPausedException",
        "SendingPausedException",
        "AccountSuspendedException",
    }
)
_ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "OptInRequired"})
_BAD_CREDENTIALS_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
_ADDRESS_HINTS = ("address", "illegal", "domain", "local part", "mailbox")


def translate_ses_error(exc: Exception, options: SESOptions) -> DeliveryError:
    """Classify a botocore error into a sendwell :class:`DeliveryError` with its remedy."""
    api = f"SES v{options.api_version}"
    if isinstance(
        exc, botocore_exceptions.NoCredentialsError | botocore_exceptions.PartialCredentialsError
    ):
        return NoCredentialsError(f"{api}: Unable to locate credentials", transport="ses")
    if isinstance(
        exc, botocore_exceptions.ReadTimeoutError | botocore_exceptions.ConnectTimeoutError
    ):
        return TransportTimeoutError(
            f"{api}: timed out talking to {exc.kwargs.get('endpoint_url', 'SES')}",
            remedy="SES did not answer in time; sendwell retries. If it persists, check the "
            "network path to the SES endpoint (NAT gateway, VPC endpoint, proxy)",
            transport="ses",
        )
    if isinstance(exc, botocore_exceptions.ConnectionClosedError):
        # Closed after the request went out: SES may have accepted it.
        closed = TransportConnectionError(
            f"{api}: {_redact(str(exc), options)}",
            remedy="the connection closed before SES answered, so SES may have accepted the "
            "message: sendwell does not repeat it by itself. If it persists, check proxies and "
            "the network path to the SES endpoint",
            transport="ses",
        )
        closed.in_doubt = True
        return closed
    if isinstance(
        exc, botocore_exceptions.EndpointConnectionError | botocore_exceptions.ConnectionError
    ):
        return TransportConnectionError(
            f"{api}: {_redact(str(exc), options)}",
            remedy="check AWS_SES_REGION_NAME, any AWS_ENDPOINT_URL* setting, and that the host "
            "can reach the SES endpoint (outbound HTTPS, NAT gateway or a VPC endpoint)",
            transport="ses",
        )
    if isinstance(exc, botocore_exceptions.ClientError):
        return _translate_client_error(exc, options, api)
    return TransientDeliveryError(f"{api}: {_redact(str(exc), options)}", transport="ses")


def _translate_client_error(
    exc: botocore_exceptions.ClientError, options: SESOptions, api: str
) -> DeliveryError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    text = _redact(str(error.get("Message", "")), options)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    what = f"{api} {exc.operation_name} failed ({code}): {text}"
    lowered = text.lower()

    if "daily message quota exceeded" in lowered or "daily sending quota" in lowered:
        return QuotaExceededError(
            f"{api}: Daily sending quota exceeded ({text})", code=code, transport="ses"
        )
    if code in _THROTTLING_CODES or status == 429:
        return ThrottledError(what, code=code, transport="ses")
    if code == "MessageRejected" and (
        "not verified" in lowered or "did not have authority" in lowered
    ):
        return IdentityNotVerifiedError(
            f"{api}: Email address is not verified ({text})", code=code, transport="ses"
        )
    if code in ("MailFromDomainNotVerified", "MailFromDomainNotVerifiedException"):
        return IdentityNotVerifiedError(
            what,
            remedy="the custom MAIL FROM domain of the identity is not verified: publish its MX "
            "and SPF records (SES console > Identities > Custom MAIL FROM domain)",
            code=code,
            transport="ses",
        )
    if code == "ConfigurationSetDoesNotExist" or (
        code == "NotFoundException" and "configuration set" in lowered
    ):
        return ConfigurationSetDoesNotExistError(what, code=code, transport="ses")
    if code in _PAUSED_CODES:
        return AccountSendingPausedError(what, code=code, transport="ses")
    if code in _ACCESS_DENIED_CODES or "not authorized to perform" in lowered:
        return AccessDeniedError(f"{api}: Access Denied ({text})", code=code, transport="ses")
    if code in _BAD_CREDENTIALS_CODES:
        remedy = None
        if "expired" in code.lower() or "expired" in lowered:
            remedy = (
                "the temporary credentials have expired: with an IAM role boto3 refreshes them "
                "itself, so remove AWS_SESSION_TOKEN and the keys; with keys, issue fresh ones"
            )
        return InvalidCredentialsError(what, remedy=remedy, code=code, transport="ses")
    if code == "MessageRejected":
        return MessageRejectedError(
            what,
            remedy="SES refused this message's content or headers; fix the message (SES "
            "rejects, e.g., executable attachments and messages with invalid headers)",
            code=code,
            transport="ses",
        )
    if code in ("InvalidParameterValue", "BadRequestException") and any(
        hint in lowered for hint in _ADDRESS_HINTS
    ):
        return InvalidAddressError(what, code=code, transport="ses")
    if status >= 500 or code in ("InternalFailure", "ServiceUnavailable", "InternalServerError"):
        return ServiceUnavailableError(what, code=code, transport="ses")
    return PermanentDeliveryError(
        what,
        remedy="SES refused the request; the error code above names the problem",
        code=code,
        transport="ses",
    )


_MAX_ERROR_TEXT = 300


def _redact(text: str, options: SESOptions) -> str:
    """Text from botocore or AWS made fit for a log line: secrets removed (in case one was
    echoed), whitespace collapsed and length capped (a proxy or a wrong endpoint can answer with
    a whole HTML page)."""
    for secret in (options.secret_access_key, options.session_token):
        if secret:
            text = text.replace(secret, "********")
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 1] + "…"
    return text
