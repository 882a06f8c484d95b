"""Django system checks (``manage.py check``): sendwell's configuration problems, each with a hint.

The rules are the ones :mod:`sendwell.options` applies to the environment at start-up, so a
setting written by hand gets the same message as a variable in ``.env``. Checks never call AWS:
credentials, identities and quotas are the doctor's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from sendwell import conf
from sendwell.exceptions import InvalidAddressError
from sendwell.mime import envelope_address
from sendwell.options import Problem, SESOptions, smtp_problems
from sendwell.settings_check import sendwell_setting_problems

SES_BACKENDS = frozenset({"sendwell.backends.SESBackend", "sendwell.backends.ses.SESBackend"})
OUTBOX_BACKENDS = frozenset(
    {"sendwell.backends.OutboxBackend", "sendwell.backends.outbox.OutboxBackend"}
)
SMTP_BACKENDS = frozenset(
    {
        "sendwell.backends.SMTPBackend",
        "sendwell.backends.smtp.SMTPBackend",
        "django.core.mail.backends.smtp.EmailBackend",
    }
)


def _as_check(problem: Problem, where: str) -> checks.Error:
    return checks.Error(f"{where}: {problem.message}", hint=problem.hint, id=problem.id)


def _ses_problems(where: str, options: dict[str, Any]) -> list[checks.CheckMessage]:
    if where == "EMAIL_BACKEND":  # RemovedInSendwellDjango52
        options = conf.classic_ses_options()
        names = conf.CLASSIC_SES_SETTINGS
    else:
        names = {field: f"OPTIONS[{field!r}]" for field in SESOptions.field_names()}
    unknown = sorted(set(options) - SESOptions.field_names())
    if unknown:
        return [
            checks.Error(
                f"{where}: unknown SES option(s) {', '.join(unknown)}",
                hint=f"Known options: {', '.join(sorted(SESOptions.field_names()))}.",
                id="sendwell.E013",
            )
        ]
    values: dict[str, Any] = {k: (None if v == "" else v) for k, v in options.items()}
    return [_as_check(problem, where) for problem in SESOptions(**values).problems(names)]


def _smtp_problems(where: str, options: dict[str, Any]) -> list[checks.CheckMessage]:
    if where == "EMAIL_BACKEND":  # RemovedInSendwellDjango52
        options = {
            "port": getattr(settings, "EMAIL_PORT", None),
            "use_tls": getattr(settings, "EMAIL_USE_TLS", False),
            "use_ssl": getattr(settings, "EMAIL_USE_SSL", False),
            "ssl_cafile": getattr(settings, "EMAIL_SSL_CAFILE", None),
            "timeout": getattr(settings, "EMAIL_TIMEOUT", None),
        }
        names = conf.CLASSIC_SMTP_SETTINGS
    else:
        names = {
            key: f"OPTIONS[{key!r}]"
            for key in ("port", "use_tls", "use_ssl", "ssl_cafile", "timeout")
        }
    problems = smtp_problems(
        port=options.get("port"),
        use_tls=options.get("use_tls"),
        use_ssl=options.get("use_ssl"),
        ssl_cafile=options.get("ssl_cafile"),
        timeout=options.get("timeout"),
        names=names,
    )
    return [_as_check(problem, where) for problem in problems]


@checks.register(checks.Tags.compatibility)
def check_email_configuration(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    uses_ses = False
    for where, backend, options in conf.configured_backends():
        if backend in SES_BACKENDS:
            uses_ses = True
            messages.extend(_ses_problems(where, options))
        elif backend in SMTP_BACKENDS and backend.startswith("sendwell"):
            messages.extend(_smtp_problems(where, options))
        elif backend in OUTBOX_BACKENDS:
            uses_ses = True
            messages.extend(_outbox_problems(where, options))
    if uses_ses:
        messages.extend(_sender_problems())
    return messages


@checks.register(checks.Tags.compatibility)
def check_sendwell_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    return sendwell_setting_problems()


def _outbox_problems(where: str, options: dict[str, Any]) -> list[checks.CheckMessage]:
    if where == "EMAIL_BACKEND":  # RemovedInSendwellDjango52: SENDWELL_TRANSPORT + classic
        transport = getattr(settings, "SENDWELL_TRANSPORT", "ses")
        if transport not in ("ses", "smtp", "failover"):
            return [
                checks.Error(
                    f"SENDWELL_TRANSPORT={transport!r} is not a transport",
                    hint="Write 'ses', 'smtp' or 'failover'.",
                    id="sendwell.E011",
                )
            ]
        classic = _ses_problems(where, {}) if transport != "smtp" else []
        if transport != "smtp":
            classic.extend(_lease_problems("EMAIL_BACKEND", conf.classic_ses_options()))
        if transport != "ses":
            classic.extend(_smtp_problems(where, {}))
        return classic
    unknown = sorted(set(options) - {"ses", "smtp", "failover"})
    if unknown:
        return [
            checks.Error(
                f"{where}: unknown OutboxBackend option(s) {', '.join(unknown)}",
                hint="Known options: ses, smtp, failover.",
                id="sendwell.E011",
            )
        ]
    ses, smtp = options.get("ses"), options.get("smtp")
    messages: list[checks.CheckMessage] = []
    if ses is None and smtp is None:
        messages.append(
            checks.Error(
                f"{where}: the outbox has neither 'ses' nor 'smtp' options",
                hint="Set USE_SES=True with AWS_SES_REGION_NAME, or the EMAIL_* SMTP variables.",
                id="sendwell.E011",
            )
        )
    if options.get("failover") and (ses is None or smtp is None):
        messages.append(
            checks.Error(
                f"{where}: failover needs both 'ses' and 'smtp' options",
                hint="Set USE_SES=True and EMAIL_HOST, or EMAIL_FAILOVER=False.",
                id="sendwell.E011",
            )
        )
    if ses is not None:
        messages.extend(_ses_problems(f"{where}['OPTIONS']['ses']", dict(ses)))
        messages.extend(_lease_problems(f"{where}['OPTIONS']['ses']", dict(ses)))
    if smtp is not None:
        messages.extend(_smtp_problems(f"{where}['OPTIONS']['smtp']", dict(smtp)))
    return messages


def _lease_problems(where: str, ses: dict[str, Any]) -> list[checks.CheckMessage]:
    """A worker's lease must outlast one SES call, or another worker may take over a message
    whose call is still in flight and send it a second time."""
    defaults = SESOptions()
    try:
        lease = float(conf.setting("LEASE_SECONDS"))
        # The outbox lets botocore try once unless its options say otherwise.
        attempts = int(ses.get("max_attempts") or 1)
        connect = float(ses.get("connect_timeout") or defaults.connect_timeout)
        read = float(ses.get("read_timeout") or defaults.read_timeout)
    except (TypeError, ValueError):
        return []  # the other checks report the bad value itself
    longest = attempts * (connect + read)
    if lease > longest:
        return []
    return [
        checks.Warning(
            f"SENDWELL['LEASE_SECONDS']={lease:g} is not longer than one SES call may take for "
            f"{where} ({attempts} x ({connect:g} s to connect + {read:g} s to read) = "
            f"{longest:g} s): another worker may take over a message still being sent and send "
            "it twice",
            hint=f"Raise LEASE_SECONDS above {longest:g}, or lower the SES timeouts "
            "(AWS_SES_CONNECT_TIMEOUT / AWS_SES_READ_TIMEOUT).",
            id="sendwell.W002",
        )
    ]


def _sender_problems() -> list[checks.CheckMessage]:
    sender = settings.DEFAULT_FROM_EMAIL
    try:
        address = envelope_address(sender)
    except InvalidAddressError as exc:
        return [
            checks.Error(
                f"DEFAULT_FROM_EMAIL={sender!r} is not a valid address ({exc.message})",
                hint="Set DEFAULT_FROM_EMAIL to an address on an SES-verified identity, e.g. "
                "'Example <noreply@example.com>'.",
                id="sendwell.E010",
            )
        ]
    if "@" not in address or address.endswith("@localhost"):
        return [
            checks.Warning(
                f"DEFAULT_FROM_EMAIL={sender!r}: SES will reject this sender",
                hint="Set DEFAULT_FROM_EMAIL (in .env or settings) to an address whose domain or "
                "address is verified in SES, e.g. noreply@example.com.",
                id="sendwell.W001",
            )
        ]
    return []


@checks.register(checks.Tags.urls)
def check_sns_webhook(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The webhook installed without a topic to accept: every notification would be refused."""
    from django.urls import NoReverseMatch, reverse  # noqa: PLC0415

    if not getattr(settings, "ROOT_URLCONF", None):
        return []  # a worker-only project serves no URLs
    try:
        path = reverse("sendwell:sns")
    except NoReverseMatch:
        return []  # the feedback loop is not set up here
    if conf.setting("SNS_TOPIC_ARNS"):
        return []
    return [
        checks.Warning(
            f"the SNS webhook is at {path}, but SENDWELL['SNS_TOPIC_ARNS'] is empty: it refuses "
            "every notification (403), so bounces and complaints are never recorded",
            hint="Set SENDWELL['SNS_TOPIC_ARNS'] to the ARNs of the SNS topics your SES "
            "configuration set or identities publish to (docs/feedback.md).",
            id="sendwell.W005",
        )
    ]


@checks.register(checks.Tags.database)
def check_account_limits(
    app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **_: Any
) -> list[checks.CheckMessage]:
    """Accounts whose limits SES would not tell (as last stored by a sender or worker).

    A database check: Django runs it with ``check --database default`` and before ``migrate``,
    never on every command, and it reads only what sending already stored (no AWS call).
    """
    if not databases or conf.setting("MAX_SEND_RATE") is not None:
        return []  # with a rate set, unreadable limits cost nothing: no query
    from django.db import DatabaseError  # noqa: PLC0415

    from sendwell.models import AccountQuota  # noqa: PLC0415 - models load after the checks

    try:
        rows = list(AccountQuota.objects.filter(max_send_rate__isnull=True).order_by("name"))
    except DatabaseError:  # not migrated yet: nothing stored to look at
        return []
    return [
        checks.Warning(
            f"SES account {row.name}: its sending limits could not be read ({row.error}); "
            "sendwell learns the send rate from SES's answers and keeps no 24-hour cap",
            hint="Allow ses:GetAccount (SES v2) or ses:GetSendQuota (v1) in the IAM policy of "
            "the credentials sendwell uses, or set SENDWELL['MAX_SEND_RATE'] and "
            "SENDWELL['MAX_24_HOUR_SEND'] to the account's limits.",
            id="sendwell.W003",
        )
        for row in rows
    ]
