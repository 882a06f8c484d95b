"""Sending limits as SES keeps them, tried with the settings a new user gets.

Every test here runs with ``SENDWELL = {}`` (the suite's own settings pin generous limits so that
tests about something else are not paced by moto's sandbox quota): the limits come from the
endpoint, as in production. The endpoint is FakeSES in its SES-like mode: a budget of one second
of the account's rate, a call accepted while any budget is left, one unit spent per recipient,
and account queries answered, denied (the guide's least-privilege IAM policy) or not
implemented, as configured. Nothing asserts wall-clock time: only what SES accepted and refused,
and what sendwell stored.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
from collections.abc import Iterator
from io import StringIO
from typing import Any

import boto3
import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from sendwell import pacing, quota
from sendwell.checks import check_account_limits
from sendwell.exceptions import QuotaExceededError, ThrottledError
from sendwell.models import AccountQuota, Message, MessageStatus, RateBucket
from sendwell.options import SESOptions
from sendwell.ratecontrol import RateState
from sendwell.worker import drain
from tests.conftest import SENDER
from tests.mailers import SES, mailer_settings, ses_options
from tests.server_fixtures import redis_server  # noqa: F401 - a fixture
from tests.test_outbox import outbox_settings
from testservers.fake_ses import FakeSES
from testservers.redis import RedisServer

DEFAULTS: dict[str, Any] = {}
# The outbox drained in this thread (a test's transaction is invisible to other connections).
INLINE_WORKER = {"CONCURRENCY": 1}


@pytest.fixture(autouse=True)
def _fresh_pacers() -> Iterator[None]:
    pacing.clear_pacers()
    yield
    pacing.clear_pacers()


def fake(**settings: Any) -> FakeSES:
    return FakeSES(verified_identities={"example.com"}, enforce_rate="ses", **settings)


def deliveries(ses: FakeSES) -> collections.Counter[str]:
    return collections.Counter(address for m in ses.messages for address in m.destinations)


def options_for(ses: FakeSES) -> SESOptions:
    return SESOptions(**ses_options(ses))


def learned_state() -> RateState:
    return RateState.from_json(RateBucket.objects.get().learned)


@contextlib.contextmanager
def denied_account(rate: float = 20, **sendwell: Any) -> Iterator[FakeSES]:
    """The default mailer on an account enforcing ``rate`` whose limits the credentials may not
    read (the guide's IAM policy), with the default settings unless ``sendwell`` says more."""
    with (
        fake(max_send_rate=rate, get_account="denied", get_send_quota="denied") as ses,
        mailer_settings(SES, **ses_options(ses)),
        override_settings(SENDWELL={**DEFAULTS, **sendwell}),
    ):
        yield ses


def send_loop(count: int, prefix: str = "user") -> list[int]:
    return [
        mail.send_mail(f"Loop {i}", "Body", SENDER, [f"{prefix}{i}@example.net"])
        for i in range(count)
    ]


# --- limits that cannot be read -----------------------------------------------------------------


def test_unreadable_limits_a_loop_of_send_mail_all_succeed_at_the_rate_ses_accepts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The guide's IAM policy (no ses:GetAccount), SES enforcing 20/s: 300 send_mail() calls."""
    caplog.set_level(logging.WARNING, logger="sendwell")
    with denied_account(20) as ses:
        results = send_loop(300)
        refused = ses.refused.get("rate", 0)
        requests = ses.send_requests
    assert results == [1] * 300  # nothing raised, nothing failed
    assert deliveries(ses) == {f"user{i}@example.net": 1 for i in range(300)}
    assert Message.objects.filter(status=MessageStatus.SENT).count() == 300
    # The rate was learned from SES's answers, close below what SES enforces.
    state = learned_state()
    assert state.measured is not None
    assert 0.8 * 20 <= state.rate <= 1.05 * 20  # held at 0.95-0.98 of a measure good to ~3 %
    # SES refused a few calls while sendwell learned (each retried at once, within the budget).
    assert refused <= 0.1 * requests
    # Said once, in one line, naming the cause and what sendwell does instead.
    warnings = [r.getMessage() for r in caplog.records if r.name == "sendwell.quota"]
    assert warnings == [
        "sendwell could not read the SES limits (AccessDeniedException: ses:GetAccount not "
        "allowed; AccessDenied: ses:GetSendQuota not allowed); learning the send rate from SES; "
        "no 24-hour cap"
    ]
    row = AccountQuota.objects.get()
    assert (row.max_send_rate, row.max_24_hour_send) == (None, None)


def test_learned_rate_is_kept_for_the_next_process() -> None:
    with denied_account(20) as ses:
        send_loop(120)
        learned = learned_state()
        pacing.clear_pacers()  # as a new process: only the stored state is left
        assert pacing.pacer_for(options_for(ses)).learned().rate == learned.rate
    assert learned.measured is not None


def test_not_implemented_get_account_falls_back_to_get_send_quota() -> None:
    """An endpoint without v2 GetAccount (an HTML 404 page): v1 GetSendQuota answers."""
    with fake(max_send_rate=14, get_account="missing") as ses, override_settings(SENDWELL={}):
        limits = quota.current_limits(options_for(ses))
    assert (limits.rate, limits.daily) == (14 * 0.97, 50_000)
    assert (limits.rate_source, limits.daily_source) == ("ses", "ses")
    assert AccountQuota.objects.get().error == ""


def test_an_html_page_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sendwell")
    with (
        fake(get_account="missing", get_send_quota="missing") as ses,
        override_settings(SENDWELL={}),
    ):
        limits = quota.current_limits(options_for(ses))
        quota.refresh(options_for(ses))  # the same cause again: not said twice
    assert limits.rate is None
    [line] = [r.getMessage() for r in caplog.records if r.name == "sendwell.quota"]
    assert "HTTP 404: the endpoint does not implement GetAccount" in line
    assert "GetSendQuota is not SES's" in line
    assert "<" not in line
    assert "\n" not in line


def test_denied_limits_are_not_the_sandbox_and_the_check_names_the_iam_action() -> None:
    with (
        fake(get_account="denied", get_send_quota="denied") as ses,
        override_settings(SENDWELL={}),
    ):
        limits = quota.current_limits(options_for(ses))
        [warning] = check_account_limits(databases=["default"])
    assert (limits.rate, limits.daily) == (None, None)  # not 1/s and 200 per 24 h
    assert warning.id == "sendwell.W003"
    assert "ses:GetAccount" in warning.hint
    assert "ses:GetSendQuota" in warning.hint
    assert "AccessDeniedException: ses:GetAccount not allowed" in warning.msg
    with override_settings(SENDWELL={"MAX_SEND_RATE": 20}):
        assert check_account_limits(databases=["default"]) == []  # the settings say it


def test_status_says_where_the_limits_come_from() -> None:
    with denied_account(20):
        send_loop(60)
        out, as_json = StringIO(), StringIO()
        call_command("sendwell", "status", stdout=out)
        call_command("sendwell", "status", "--json", stdout=as_json)
    text = out.getvalue()
    assert "sent: 60" in text
    assert "rate learned from SES:" in text
    assert "no 24-hour cap (unknown)" in text
    assert "limits unreadable: AccessDeniedException: ses:GetAccount not allowed" in text
    [account] = json.loads(as_json.getvalue())["accounts"]
    assert account["rate_source"] == "learned"
    assert account["rate_in_force"] == account["learned_rate"] == learned_state().rate
    assert account["daily"] is None


# --- limits SES reports -------------------------------------------------------------------------


def test_an_unlimited_24_hour_quota_is_no_cap() -> None:
    """Max24HourSend -1 at 14/s: a loop of sends, then 3 and 60 recipients at once."""
    with (
        fake(max_send_rate=14, max_24_hour_send=-1) as ses,
        mailer_settings(SES, **ses_options(ses)),
        override_settings(SENDWELL=DEFAULTS),
    ):
        sent = [mail.send_mail("Loop", "Body", SENDER, [f"loop{i}@example.net"]) for i in range(30)]
        three = [f"three{i}@example.net" for i in range(3)]
        sixty = [f"sixty{i}@example.net" for i in range(60)]
        sent.append(EmailMessage("Three", "Body", SENDER, three).send())
        sent.append(EmailMessage("Sixty", "Body", SENDER, sixty).send())
        limits = quota.current_limits(options_for(ses))
    assert sent == [1] * 32
    assert deliveries(ses) == collections.Counter(
        [f"loop{i}@example.net" for i in range(30)] + three + sixty
    )
    assert ses.refused == {}  # paced as SES counts: nothing refused
    assert (limits.daily, limits.daily_source) == (None, "unlimited")
    assert (limits.rate, limits.rate_source) == (14 * 0.97, "ses")


def _sandbox_with_199_sent() -> FakeSES:
    """A sandbox account (1/s, 200 per 24 h) on which another application sent 199 recipients."""
    ses = FakeSES(
        verified_identities={"example.com"},
        max_send_rate=1,
        max_24_hour_send=200,
        production_access=False,
    )
    client = boto3.client(
        "sesv2",
        endpoint_url=ses.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
    )
    for size in (50, 50, 50, 49):
        client.send_email(
            FromEmailAddress=SENDER,
            Destination={"ToAddresses": [f"other{i}@example.net" for i in range(size)]},
            Content={"Raw": {"Data": b"Subject: other\r\n\r\nBody"}},
        )
    ses.configure(enforce_rate="ses")
    return ses


def test_the_sandbox_is_honoured_exactly_the_201st_recipient_defers() -> None:
    with (
        _sandbox_with_199_sent() as ses,
        outbox_settings(ses),
        override_settings(SENDWELL=INLINE_WORKER),
    ):
        EmailMessage("200th", "Body", SENDER, ["a@example.net"]).send()
        EmailMessage("201st", "Body", SENDER, ["b@example.net"]).send()
        drain()
        limits = quota.current_limits(options_for(ses))
    assert (limits.rate, limits.daily, limits.production_access) == (0.97, 200, False)
    assert [m.destinations for m in ses.messages[-1:]] == [("a@example.net",)]
    deferred = Message.objects.get(subject="201st")
    assert deferred.status == MessageStatus.DEFERRED
    assert deferred.last_error_code == "sendwell.quota"
    assert deferred.attempt_count == 0  # waiting for room is not a failed attempt
    assert deferred.next_attempt_at is not None
    assert (deferred.next_attempt_at - deferred.updated_at).total_seconds() > 23 * 3600
    assert ses.refused == {}  # sendwell never asked SES to send the 201st


def test_the_sandbox_quota_refuses_the_synchronous_201st_with_the_remedy() -> None:
    with (
        _sandbox_with_199_sent() as ses,
        mailer_settings(SES, **ses_options(ses)),
        override_settings(SENDWELL=DEFAULTS),
    ):
        assert mail.send_mail("200th", "Body", SENDER, ["a@example.net"]) == 1
        with pytest.raises(ThrottledError) as excinfo:
            mail.send_mail("201st", "Body", SENDER, ["b@example.net"])
    assert "24-hour sending quota is reached" in str(excinfo.value)
    assert "EMAIL_QUEUE=True" in str(excinfo.value)
    assert ses.refused == {}


def test_daily_quota_exceeded_from_ses_pauses_the_whole_account() -> None:
    """Limits unknown: SES's own "Daily message quota exceeded" is the cap, and no reason to
    ask again soon: the next send is refused without a call to SES."""
    with denied_account(14) as ses:
        ses.inject("quota")
        with pytest.raises(QuotaExceededError):
            mail.send_mail("First", "Body", SENDER, ["a@example.net"])
        requests = ses.send_requests
        with pytest.raises(ThrottledError) as excinfo:
            mail.send_mail("Second", "Body", SENDER, ["b@example.net"])
        assert ses.send_requests == requests
    assert excinfo.value.code == "sendwell.quota"
    assert learned_state().paused_until > 0


def test_with_the_redis_limiter_the_learned_rate_lives_in_redis(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    import redis  # noqa: PLC0415

    settings = {"RATE_LIMITER": "redis", "REDIS_URL": redis_server.url}
    with denied_account(20, **settings) as ses:
        sent = send_loop(150, prefix="u")
        name = pacing.pacer_for(options_for(ses)).name
    assert sent == [1] * 150
    assert deliveries(ses) == {f"u{i}@example.net": 1 for i in range(150)}
    stored = redis.Redis.from_url(redis_server.url).get(f"sendwell:{name}:learned")
    state = RateState.from_json(stored)
    assert state.throttles > 0  # SES's answers reached the shared state in Redis
    assert 0.8 * 20 <= state.rate <= 1.05 * 20  # held at 0.95-0.98 of a measure good to ~3 %
    assert not RateBucket.objects.exclude(learned="").exists()  # not in the database


def test_a_transient_failure_keeps_the_limits_read_before() -> None:
    """One worker's throttled or failed GetAccount must not make every worker forget the
    account's limits: they stay, and are asked for again soon."""
    with fake(max_send_rate=14) as ses, override_settings(SENDWELL={}):
        quota.refresh(options_for(ses))
        ses.configure(get_account="error", get_send_quota="error")
        row = quota.refresh(options_for(ses))
    assert (row.max_send_rate, row.max_24_hour_send) == (14, 50_000)
    age = (timezone.now() - row.fetched_at).total_seconds()
    assert 300 - quota.RETRY_SECONDS - 5 <= age <= 300  # due again in about RETRY_SECONDS


def test_a_connection_dropped_after_the_request_is_not_sent_again() -> None:
    """SES may have accepted a call whose answer never came: send_mail() raises, it does not
    repeat the call (botocore used to, three times)."""
    from sendwell.exceptions import TransportConnectionError  # noqa: PLC0415

    with (
        fake(max_send_rate=14) as ses,
        mailer_settings(SES, **ses_options(ses)),
        override_settings(SENDWELL=DEFAULTS),
    ):
        ses.inject("drop_after_accept", times=3)
        with pytest.raises(TransportConnectionError) as excinfo:
            mail.send_mail("Once", "Body", SENDER, ["a@example.net"])
    assert excinfo.value.in_doubt
    assert len(ses.messages) == 1
    assert ses.send_requests == 1


def test_a_removed_setting_warns_and_is_ignored() -> None:
    from sendwell.settings_check import sendwell_setting_problems  # noqa: PLC0415

    with override_settings(SENDWELL={"FALLBACK_SEND_RATE": 1.0}):
        [problem] = sendwell_setting_problems()
    assert problem.id == "sendwell.W004"
    assert "learns the rate" in problem.hint
