"""The options of sendwell's backends, and the one place that validates them.

The same rules serve three callers: ``sendwell.env`` (environment variables at start-up), the
system checks (settings written by hand) and the backends themselves (options passed in code), so
a mistake gets the same message and hint wherever it is made. Nothing here touches Django
settings; ``sendwell.conf`` reads them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sendwell.exceptions import ConfigurationError

# SES's own limits: https://docs.aws.amazon.com/ses/latest/dg/quotas.html
MAX_RECIPIENTS_PER_CALL = 50
MAX_RAW_SIZE_V2 = 40 * 1024 * 1024
MAX_RAW_SIZE_V1 = 10 * 1024 * 1024

_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
# "The name can contain up to 64 characters: letters, numbers, underscores (_) and dashes (-)."
_CONFIGURATION_SET_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_configuration_set_name(name: str) -> bool:
    return bool(_CONFIGURATION_SET_RE.match(name))


class SecretStr(str):
    """A ``str`` whose ``repr()`` hides its value.

    Secrets live in settings dicts (``MAILERS[...]["OPTIONS"]``) that ``diffsettings``, debuggers
    and error reports print with ``repr()``; the value itself still works wherever a ``str`` does.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'********'"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One configuration mistake, phrased for the person who has to fix it."""

    id: str  # a system check id, e.g. "sendwell.E002"
    message: str  # what is wrong, naming the variable or option
    hint: str  # what to write instead

    def __str__(self) -> str:
        return f"[{self.id}] {self.message}. {self.hint}"


def raise_for(problems: list[Problem], what: str) -> None:
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigurationError(f"{what}:\n{lines}", remedy="")


@dataclasses.dataclass(frozen=True)
class SESOptions:
    """Everything the SES backend needs to build its boto3 client and its requests."""

    region_name: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = dataclasses.field(default=None, repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)
    configuration_set: str | None = None
    use_ses_v2: bool = True
    endpoint_url: str | None = None
    # Attempts per call of the synchronous backend for 5xx and connection errors (throttling is
    # retried within SYNC_MAX_WAIT, timeouts never); the outbox does its own retrying.
    max_attempts: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    @property
    def api_version(self) -> Literal[1, 2]:
        return 2 if self.use_ses_v2 else 1

    @property
    def max_raw_size(self) -> int:
        return MAX_RAW_SIZE_V2 if self.use_ses_v2 else MAX_RAW_SIZE_V1

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(field.name for field in dataclasses.fields(cls))

    def problems(self, names: Mapping[str, str] | None = None) -> list[Problem]:
        """Validate; ``names`` maps option names to the variable names the user wrote."""
        names = names or {}

        def name(option: str) -> str:
            return names.get(option, option)

        problems: list[Problem] = []
        if not self.region_name:
            problems.append(
                Problem(
                    "sendwell.E001",
                    f"{name('region_name')} is not set",
                    f"Set {name('region_name')} to the SES region you send from, e.g. "
                    "eu-west-1 or us-east-1 (identities and quotas are per region).",
                )
            )
        elif not _REGION_RE.match(self.region_name):
            problems.append(
                Problem(
                    "sendwell.E001",
                    f"{name('region_name')}={self.region_name!r} is not an AWS region name",
                    "Write a region code such as eu-west-1, us-east-1 or ap-southeast-2.",
                )
            )
        if bool(self.access_key_id) != bool(self.secret_access_key):
            given, missing = (
                ("access_key_id", "secret_access_key")
                if self.access_key_id
                else ("secret_access_key", "access_key_id")
            )
            problems.append(
                Problem(
                    "sendwell.E002",
                    f"{name(given)} is set but {name(missing)} is not",
                    f"Set both {name('access_key_id')} and {name('secret_access_key')} (an IAM "
                    "user's key pair), or remove both so boto3 uses the IAM role of the "
                    "instance, task or function.",
                )
            )
        if self.session_token and not self.access_key_id:
            problems.append(
                Problem(
                    "sendwell.E002",
                    f"{name('session_token')} is set without an access key",
                    f"A session token belongs to temporary keys: set {name('access_key_id')} and "
                    f"{name('secret_access_key')} too, or remove it.",
                )
            )
        if self.configuration_set is not None and not _CONFIGURATION_SET_RE.match(
            self.configuration_set
        ):
            problems.append(
                Problem(
                    "sendwell.E003",
                    f"{name('configuration_set')}={self.configuration_set!r} is not a valid "
                    "configuration set name",
                    "Use the name shown in the SES console: up to 64 letters, digits, "
                    "underscores and hyphens; leave it empty for none.",
                )
            )
        if not isinstance(self.use_ses_v2, bool):
            problems.append(
                Problem(
                    "sendwell.E007",
                    f"{name('use_ses_v2')}={self.use_ses_v2!r} is not a boolean",
                    "Write True for the SES v2 API (SendEmail) or False for v1 (SendRawEmail).",
                )
            )
        if self.endpoint_url is not None:
            problems.extend(_url_problems(self.endpoint_url, name("endpoint_url")))
        for option in ("connect_timeout", "read_timeout"):
            value = getattr(self, option)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                problems.append(
                    Problem(
                        "sendwell.E014",
                        f"{name(option)}={value!r} is not a positive number of seconds",
                        "Write a number of seconds such as 5 or 30.",
                    )
                )
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            problems.append(
                Problem(
                    "sendwell.E014",
                    f"{name('max_attempts')}={self.max_attempts!r} is not a positive integer",
                    "Write 1 to let the outbox do all retrying, or a small number such as 3.",
                )
            )
        return problems


def ses_options(options: Mapping[str, Any], *, where: str) -> SESOptions:
    """Build :class:`SESOptions` from backend keyword options, refusing unknown or bad ones."""
    unknown = sorted(set(options) - SESOptions.field_names())
    if unknown:
        known = ", ".join(sorted(SESOptions.field_names()))
        raise ConfigurationError(
            f"{where}: unknown SES option(s) {', '.join(unknown)}", remedy=f"known options: {known}"
        )
    values = {key: value for key, value in options.items()}
    for secret in ("secret_access_key", "session_token"):
        if values.get(secret):
            values[secret] = SecretStr(values[secret])
    for optional in ("configuration_set", "endpoint_url", "access_key_id"):
        if values.get(optional) == "":
            values[optional] = None
    result = SESOptions(**values)
    raise_for(result.problems(), f"{where}: invalid SES options")
    return result


def smtp_problems(
    *,
    port: object,
    use_tls: object,
    use_ssl: object,
    ssl_cafile: object,
    timeout: object,
    names: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Validate the SMTP options Django itself does not check (or checks too late)."""
    names = names or {}

    def name(option: str) -> str:
        return names.get(option, option)

    problems: list[Problem] = []
    if port is not None and (
        not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536
    ):
        problems.append(
            Problem(
                "sendwell.E005",
                f"{name('port')}={port!r} is not a port number",
                "Write a whole number between 1 and 65535: 587 for STARTTLS, 465 for "
                "implicit TLS, 25 for plain SMTP.",
            )
        )
    if use_tls and use_ssl:
        problems.append(
            Problem(
                "sendwell.E004",
                f"{name('use_tls')} and {name('use_ssl')} are both on",
                f"Choose one: {name('use_tls')}=True for STARTTLS (usually port 587) or "
                f"{name('use_ssl')}=True for implicit TLS (usually port 465).",
            )
        )
    if ssl_cafile and not Path(str(ssl_cafile)).is_file():
        problems.append(
            Problem(
                "sendwell.E006",
                f"{name('ssl_cafile')}={ssl_cafile!r} is not a readable file",
                "Point it at a PEM file holding the CA certificate(s) that signed the SMTP "
                "server's certificate, or leave it empty to trust the system's CAs.",
            )
        )
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
    ):
        problems.append(
            Problem(
                "sendwell.E005",
                f"{name('timeout')}={timeout!r} is not a positive number of seconds",
                "Write a number of seconds such as 10, or leave it empty for no timeout.",
            )
        )
    return problems


def _url_problems(url: str, name: str) -> list[Problem]:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return []
    return [
        Problem(
            "sendwell.E008",
            f"{name}={url!r} is not an http(s) URL",
            "Write a full URL such as http://127.0.0.1:5000 for a local SES endpoint, or "
            "remove it to use AWS's own endpoint for the region.",
        )
    ]
