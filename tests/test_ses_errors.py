"""Classification of SES errors: the exact codes and messages AWS returns -> sendwell's errors."""

from __future__ import annotations

import smtplib

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from django.core.exceptions import ImproperlyConfigured

from sendwell import exceptions as errors
from sendwell.exceptions import Disposition
from sendwell.options import SESOptions
from sendwell.transports.ses import translate_ses_error

OPTIONS = SESOptions(
    region_name="eu-west-1", access_key_id="AKIAEXAMPLE", secret_access_key="very-secret-value"
)


def client_error(code: str, message: str, status: int, operation: str = "SendEmail") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


CASES = [
    # (code, AWS message, HTTP status, expected class, disposition, text the user must see)
    ("Throttling", "Maximum sending rate exceeded.", 400, errors.ThrottledError,
     Disposition.RETRY, "send rate"),
    ("TooManyRequestsException", "Too many requests", 429, errors.ThrottledError,
     Disposition.RETRY, "backoff"),
    ("Throttling", "Daily message quota exceeded.", 400, errors.QuotaExceededError,
     Disposition.DEFER, "Daily sending quota exceeded"),
    ("MessageRejected", "Email address is not verified. The following identities failed the "
     "check in region EU-WEST-1: a@b.c", 400, errors.IdentityNotVerifiedError, Disposition.FAIL,
     "Email address is not verified"),
    ("MessageRejected", "Illegal header", 400, errors.MessageRejectedError, Disposition.FAIL,
     "fix the message"),
    ("MailFromDomainNotVerifiedException", "MAIL FROM not verified", 400,
     errors.IdentityNotVerifiedError, Disposition.FAIL, "MX"),
    ("ConfigurationSetDoesNotExist", "Configuration set <x> does not exist.", 400,
     errors.ConfigurationSetDoesNotExistError, Disposition.FAIL, "AWS_SES_CONFIGURATION_SET"),
    ("NotFoundException", "Configuration set x does not exist.", 404,
     errors.ConfigurationSetDoesNotExistError, Disposition.FAIL, "create the configuration set"),
    ("AccountSendingPausedException", "Account sending paused.", 400,
     errors.AccountSendingPausedError, Disposition.FAIL, "Reputation dashboard"),
    ("SendingPausedException", "Sending paused for this account.", 400,
     errors.AccountSendingPausedError, Disposition.FAIL, "re-enable"),
    ("AccessDenied", "User: arn:aws:iam::1:user/x is not authorized to perform: "
     "ses:SendRawEmail", 403, errors.AccessDeniedError, Disposition.FAIL, "Access Denied"),
    ("AccessDeniedException", "not authorized to perform ses:SendEmail", 403,
     errors.AccessDeniedError, Disposition.FAIL, "IAM policy"),
    ("InvalidClientTokenId", "The security token included in the request is invalid.", 403,
     errors.InvalidCredentialsError, Disposition.FAIL, "AWS_ACCESS_KEY_ID"),
    ("SignatureDoesNotMatch", "The request signature we calculated does not match", 403,
     errors.InvalidCredentialsError, Disposition.FAIL, "AWS_SECRET_ACCESS_KEY"),
    ("ExpiredToken", "The security token included in the request is expired", 403,
     errors.InvalidCredentialsError, Disposition.FAIL, "expired"),
    ("InvalidParameterValue", "Missing final '@domain'", 400, errors.InvalidAddressError,
     Disposition.FAIL, "correct the address"),
    ("InternalFailure", "Internal error", 500, errors.ServiceUnavailableError,
     Disposition.RETRY, "retrying"),
    ("ServiceUnavailable", "Service unavailable", 503, errors.ServiceUnavailableError,
     Disposition.RETRY, "retrying"),
    ("BadRequestException", "Something else", 400, errors.PermanentDeliveryError,
     Disposition.FAIL, "SES refused"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "message", "status", "expected", "disposition", "remedy"),
    CASES,
    ids=[f"{c[0]}-{c[2]}-{c[3].__name__}" for c in CASES],
)
def test_client_errors_are_classified(
    code: str,
    message: str,
    status: int,
    expected: type[errors.DeliveryError],
    disposition: Disposition,
    remedy: str,
) -> None:
    error = translate_ses_error(client_error(code, message, status), OPTIONS)
    assert type(error) is expected
    assert error.disposition is disposition
    assert remedy in str(error)
    assert error.code == code
    assert error.transport == "ses"
    assert isinstance(error, smtplib.SMTPException)


def test_no_credentials() -> None:
    error = translate_ses_error(NoCredentialsError(), OPTIONS)
    assert isinstance(error, errors.NoCredentialsError)
    assert isinstance(error, ImproperlyConfigured)
    assert str(error).startswith("SES v2: Unable to locate credentials: attach an IAM role")


def test_connection_error_is_retryable() -> None:
    error = translate_ses_error(EndpointConnectionError(endpoint_url="https://x"), OPTIONS)
    assert isinstance(error, errors.TransportConnectionError)
    assert error.retryable


def test_secrets_echoed_by_aws_are_redacted() -> None:
    error = translate_ses_error(
        client_error("SignatureDoesNotMatch", "string to sign ... very-secret-value", 403), OPTIONS
    )
    assert "very-secret-value" not in str(error)
    assert "********" in str(error)


def test_long_answers_are_cut_to_a_log_line() -> None:
    page = "<!doctype html>\n<html>\n" + "<p>Not Found</p>\n" * 200
    error = translate_ses_error(client_error("404", page, 404), OPTIONS)
    assert "\n" not in str(error)
    assert len(error.message) < 400
