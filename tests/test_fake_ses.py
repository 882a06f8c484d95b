"""FakeSES answers real boto3 clients as SES does, and misbehaves exactly when told to."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from testservers.fake_ses import AcceptedMessage, FakeSES
from testservers.fake_ses import cli as fake_ses

RAW = (
    b"From: Sender <sender@example.com>\r\n"
    b"To: to@example.com\r\n"
    b"Cc: cc@example.com\r\n"
    b"Subject: Hello\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Body \xe2\x9c\x93 bytes kept exactly.\r\n"
)
# botocore's "max_attempts" counts retries (1 means two requests); total_max_attempts=1 is one.
NO_RETRY = Config(retries={"total_max_attempts": 1}, read_timeout=1, connect_timeout=1)


def client(fake: FakeSES, api: int) -> Any:
    return boto3.client(
        "sesv2" if api == 2 else "ses",
        region_name="us-east-1",
        endpoint_url=fake.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=NO_RETRY,
    )


def send(ses_client: Any, api: int, source: str = "sender@example.com", to: int = 1) -> str:
    destinations = [f"r{i}@example.net" for i in range(to)]
    if api == 2:
        response = ses_client.send_email(
            FromEmailAddress=source,
            Destination={"ToAddresses": destinations},
            Content={"Raw": {"Data": RAW}},
        )
    else:
        response = ses_client.send_raw_email(
            Source=source, Destinations=destinations, RawMessage={"Data": RAW}
        )
    return str(response["MessageId"])


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response = exc.value.response
    error = response["Error"]
    return response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["Message"]


def control(fake: FakeSES, path: str, payload: Any = None) -> Any:
    """GET (no payload) or POST a control endpoint, as a benchmark in another process does."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(fake.endpoint_url + path, data=data)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def freeze_budget_clock(fake: FakeSES) -> list[float]:
    """Stop the clock of the "ses" budget (refilled to full): tests move ``now[0]`` themselves.

    Times and rates are chosen so that every budget is exact in binary floating point.
    """
    now = [1000.0]
    fake._clock = lambda: now[0]
    fake.reset()
    return now


@pytest.fixture
def fake() -> Iterator[FakeSES]:
    with FakeSES(timeout_seconds=1.5) as server:
        yield server


def test_v2_raw_send_is_recorded_exactly(fake: FakeSES) -> None:
    before = time.time()
    response = client(fake, 2).send_email(
        FromEmailAddress="sender@example.com",
        Destination={
            "ToAddresses": ["to@example.com"],
            "CcAddresses": ["cc@example.com"],
            "BccAddresses": ["hidden@example.org"],
        },
        Content={"Raw": {"Data": RAW}},
        ConfigurationSetName="transactional",
        EmailTags=[{"Name": "kind", "Value": "welcome"}, {"Name": "tenant", "Value": "t-1"}],
    )
    [message] = fake.messages
    assert message.message_id == response["MessageId"]
    assert message.api == 2
    assert message.source == "sender@example.com"
    assert message.destinations == ("to@example.com", "cc@example.com", "hidden@example.org")
    assert message.raw == RAW
    assert message.configuration_set == "transactional"
    assert message.tags == {"kind": "welcome", "tenant": "t-1"}
    assert before <= message.received_at <= time.time()
    assert message.parsed["Subject"] == "Hello"
    assert fake.requests == fake.send_requests == 1


def test_v1_raw_send_is_recorded_exactly(fake: FakeSES) -> None:
    response = client(fake, 1).send_raw_email(
        Source="Sender <sender@example.com>",
        Destinations=["b@example.com", "a@example.com"],
        RawMessage={"Data": RAW},
        ConfigurationSetName="bulk",
        Tags=[{"Name": "kind", "Value": "digest"}],
    )
    [message] = fake.messages
    assert message.message_id == response["MessageId"]
    assert (message.api, message.source) == (1, "Sender <sender@example.com>")
    assert message.destinations == ("b@example.com", "a@example.com")  # order kept
    assert message.raw == RAW
    assert (message.configuration_set, message.tags) == ("bulk", {"kind": "digest"})


def test_without_envelope_the_headers_give_sender_and_recipient_count(fake: FakeSES) -> None:
    client(fake, 1).send_raw_email(RawMessage={"Data": RAW})
    [message] = fake.messages
    assert (message.source, message.destinations) == ("Sender <sender@example.com>", ())
    assert fake.sent_last_24_hours == 2  # To + Cc, as SES counts them


def test_v2_simple_and_template_content_are_rejected(fake: FakeSES) -> None:
    v2 = client(fake, 2)
    simple = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
    with pytest.raises(ClientError) as exc:
        v2.send_email(FromEmailAddress="sender@example.com", Content={"Simple": simple})
    assert error_of(exc)[:2] == (400, "BadRequestException")
    with pytest.raises(ClientError) as exc:
        v2.send_email(
            FromEmailAddress="sender@example.com",
            Content={"Template": {"TemplateName": "t", "TemplateData": "{}"}},
        )
    assert error_of(exc)[:2] == (400, "BadRequestException")
    assert fake.messages == []


def test_account_queries_report_quota_in_ses_shapes() -> None:
    with FakeSES(max_send_rate=14, max_24_hour_send=200, production_access=False) as fake:
        send(client(fake, 2), 2, to=3)
        account = client(fake, 2).get_account()
        assert account["SendQuota"] == {
            "Max24HourSend": 200.0,
            "MaxSendRate": 14.0,
            "SentLast24Hours": 3.0,
        }
        assert account["ProductionAccessEnabled"] is False
        assert account["SendingEnabled"] is True
        assert account["EnforcementStatus"] == "HEALTHY"
        assert account["DedicatedIpAutoWarmupEnabled"] is False
        quota = client(fake, 1).get_send_quota()
        assert (quota["Max24HourSend"], quota["MaxSendRate"], quota["SentLast24Hours"]) == (
            200.0,
            14.0,
            3.0,
        )
        assert fake.requests == 3
        assert fake.send_requests == 1
        assert fake.account_requests == fake.stats()["account_requests"] == 2


DENIED = "User: arn:aws:iam::123456789012:user/sendwell-app is not authorized to perform: ses:{}"
ACCOUNT_ERRORS = {  # (answer, api) -> (HTTP status, code, message)
    ("denied", 2): (403, "AccessDeniedException", DENIED.format("GetAccount on resource: *")),
    ("denied", 1): (403, "AccessDenied", DENIED.format("GetSendQuota on resource: *")),
    ("error", 2): (500, "InternalFailure", "An internal failure occurred."),
    ("error", 1): (500, "InternalFailure", "An internal failure occurred."),
}


def query_account(fake: FakeSES, api: int) -> Any:
    return client(fake, 2).get_account() if api == 2 else client(fake, 1).get_send_quota()


@pytest.mark.parametrize(("answer", "api"), sorted(ACCOUNT_ERRORS))
def test_account_queries_fail_as_configured(answer: str, api: int) -> None:
    with FakeSES(get_account=answer, get_send_quota=answer) as fake:
        with pytest.raises(ClientError) as exc:
            query_account(fake, api)
        assert error_of(exc) == ACCOUNT_ERRORS[answer, api]
        if api == 1:
            expected_type = "Sender" if answer == "denied" else "Receiver"
            assert dict(exc.value.response["Error"])["Type"] == expected_type
        assert (fake.requests, fake.account_requests, fake.send_requests) == (1, 1, 0)


def test_each_account_query_has_its_own_setting() -> None:
    with FakeSES(get_account="denied", max_24_hour_send=200) as fake:
        assert client(fake, 1).get_send_quota()["Max24HourSend"] == 200.0
        with pytest.raises(ClientError) as exc:
            client(fake, 2).get_account()
        assert error_of(exc)[:2] == (403, "AccessDeniedException")
        fake.get_account, fake.get_send_quota = "ok", "error"
        assert client(fake, 2).get_account()["SendQuota"]["Max24HourSend"] == 200.0
        with pytest.raises(ClientError) as exc:
            client(fake, 1).get_send_quota()
        assert error_of(exc)[:2] == (500, "InternalFailure")
        assert fake.account_requests == 4
        send(client(fake, 2), 2)  # sending is not affected
        assert fake.account_requests == 4


def test_missing_get_account_is_a_404_html_page() -> None:
    with FakeSES(get_account="missing") as fake:
        with pytest.raises(ClientError) as exc:
            client(fake, 2).get_account()
        # botocore's rest-json parser makes the status the code and the whole page the message
        status, code, message = error_of(exc)
        assert (status, code) == (404, "404")
        headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
        assert headers["content-type"] == "text/html"
        assert "x-amzn-requestid" not in headers  # not an answer of SES
        assert message.startswith("<!DOCTYPE HTML")
        assert "<title>404 Not Found</title>" in message
        assert len(message) > 300
        assert str(exc.value).startswith(
            "An error occurred (404) when calling the GetAccount operation"
        )
        assert fake.account_requests == 1


def test_missing_get_send_quota_is_a_404_html_page_botocore_cannot_parse() -> None:
    with FakeSES(get_send_quota="missing") as fake:
        # The query protocol's parser expects XML and gives up on an HTML page: no ClientError.
        with pytest.raises(ResponseParserError) as exc:
            client(fake, 1).get_send_quota()
        assert "invalid XML received" in str(exc.value)
        assert "<title>404 Not Found</title>" in str(exc.value)  # the raw page, in the message
        assert fake.account_requests == 1
        request = urllib.request.Request(fake.endpoint_url, data=b"Action=GetSendQuota")
        with pytest.raises(urllib.error.HTTPError) as http_error:
            urllib.request.urlopen(request, timeout=5)
        assert http_error.value.code == 404
        assert http_error.value.headers["Content-Type"] == "text/html"
        body = http_error.value.read()
        assert body.startswith(b"<!DOCTYPE HTML")
        assert len(body) > 300
        http_error.value.close()


def test_account_query_settings_are_validated(fake: FakeSES) -> None:
    with pytest.raises(ValueError, match="account query answer"):
        FakeSES(get_account="forbidden")
    with pytest.raises(ValueError, match="account query answer"):
        fake.get_send_quota = "nope"
    assert (fake.get_account, fake.get_send_quota) == ("ok", "ok")


@pytest.mark.parametrize("mode", [True, "ses"])
def test_unlimited_daily_quota_is_reported_as_minus_one_and_not_enforced(
    mode: bool | str,
) -> None:
    with FakeSES(max_send_rate=1000, max_24_hour_send=-1, enforce_rate=mode) as fake:
        assert client(fake, 2).get_account()["SendQuota"]["Max24HourSend"] == -1.0
        assert client(fake, 1).get_send_quota()["Max24HourSend"] == -1.0
        fake.max_24_hour_send = 3
        send(client(fake, 2), 2, to=3)
        with pytest.raises(ClientError) as exc:
            send(client(fake, 2), 2)
        assert error_of(exc) == ERRORS["quota"][2]
        fake.max_24_hour_send = -1  # the same 3 recipients sent: no cap any more
        for _ in range(3):
            send(client(fake, 2), 2, to=50)
        assert fake.sent_last_24_hours == 153
        assert fake.refused == {"quota": 1}


ERRORS = {  # fault -> {api: (HTTP status, code, message)}
    "throttle": {
        1: (400, "Throttling", "Maximum sending rate exceeded."),
        2: (429, "TooManyRequestsException", "Maximum sending rate exceeded."),
    },
    "quota": {
        1: (400, "Throttling", "Daily message quota exceeded."),
        2: (429, "TooManyRequestsException", "Daily message quota exceeded."),
    },
    "429": {
        1: (400, "Throttling", "Rate exceeded"),
        2: (429, "TooManyRequestsException", "Rate exceeded"),
    },
    "500": {
        1: (500, "InternalFailure", "An internal failure occurred."),
        2: (500, "InternalFailure", "An internal failure occurred."),
    },
    "503": {
        1: (503, "ServiceUnavailable", "Service is unavailable."),
        2: (503, "ServiceUnavailable", "Service is unavailable."),
    },
}


@pytest.mark.parametrize("api", [1, 2])
@pytest.mark.parametrize("fault", sorted(ERRORS))
def test_error_faults_answer_as_ses_does(fake: FakeSES, fault: str, api: int) -> None:
    ses_client = client(fake, api)
    fake.inject(fault)
    with pytest.raises(ClientError) as exc:
        send(ses_client, api)
    assert error_of(exc) == ERRORS[fault][api]
    if api == 1:
        expected_type = "Sender" if ERRORS[fault][1][0] < 500 else "Receiver"
        assert dict(exc.value.response["Error"])["Type"] == expected_type  # v1's extra field
    assert fake.messages == []
    send(ses_client, api)  # the fault was used up
    assert len(fake.messages) == 1
    assert fake.faults_served == {fault: 1}
    assert (fake.requests, fake.send_requests) == (2, 2)


@pytest.mark.parametrize("api", [1, 2])
def test_timeout_fault_outlasts_the_read_timeout_and_records_nothing(
    fake: FakeSES, api: int
) -> None:
    ses_client = client(fake, api)
    fake.inject("timeout")
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        send(ses_client, api)
    assert 0.9 < time.monotonic() - started < fake.timeout_seconds
    time.sleep(0.7)  # past timeout_seconds: the late answer has been written (and lost)
    assert fake.messages == []
    assert fake.faults_served == {"timeout": 1}


@pytest.mark.parametrize("api", [1, 2])
def test_accept_on_timeout_records_the_in_doubt_message(api: int) -> None:
    with FakeSES(timeout_seconds=1.5, accept_on_timeout=True) as fake:
        fake.inject("timeout")
        with pytest.raises(ReadTimeoutError):
            send(client(fake, api), api)
        [message] = fake.wait_for(1)
        assert message.destinations == ("r0@example.net",)


@pytest.mark.parametrize("api", [1, 2])
def test_drop_closes_the_connection_without_recording(fake: FakeSES, api: int) -> None:
    ses_client = client(fake, api)
    fake.inject("drop")
    with pytest.raises(ConnectionClosedError):
        send(ses_client, api)
    assert fake.messages == []
    send(ses_client, api)  # the client recovers on a new connection
    assert len(fake.messages) == 1


@pytest.mark.parametrize("api", [1, 2])
def test_drop_after_accept_records_but_loses_the_answer(fake: FakeSES, api: int) -> None:
    fake.inject("drop_after_accept")
    with pytest.raises(ConnectionClosedError):
        send(client(fake, api), api)
    [message] = fake.messages
    assert message.destinations == ("r0@example.net",)
    assert fake.faults_served == {"drop_after_accept": 1}


def test_injected_faults_are_used_in_order_then_fault_plan(fake: FakeSES) -> None:
    fake.fault_plan = lambda number: "500" if number % 2 == 0 else None
    fake.inject("503")
    fake.inject("throttle", times=2)
    assert fake.pending_faults == ["503", "throttle", "throttle"]
    v2 = client(fake, 2)
    outcomes = []
    for _ in range(6):
        try:
            send(v2, 2)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes == [
        "ServiceUnavailable",
        "TooManyRequestsException",
        "TooManyRequestsException",
        "InternalFailure",  # request 4: fault_plan
        "ok",
        "InternalFailure",
    ]
    assert fake.faults_served == {"503": 1, "throttle": 2, "500": 2}
    assert len(fake.messages) == 1


def test_unknown_fault_is_refused(fake: FakeSES) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake.inject("explode")


@pytest.mark.parametrize("mode", [True, "rolling"])
@pytest.mark.parametrize("api", [1, 2])
def test_enforced_rate_counts_recipients_in_a_rolling_second(api: int, mode: bool | str) -> None:
    with FakeSES(max_send_rate=3, enforce_rate=mode) as fake:
        ses_client = client(fake, api)
        send(ses_client, api, to=3)  # fills the second's budget in one call
        with pytest.raises(ClientError) as exc:
            send(ses_client, api)  # the 4th recipient within one second
        assert error_of(exc) == ERRORS["throttle"][api]
        assert fake.refused == {"rate": 1}
        time.sleep(1.05)
        send(ses_client, api, to=2)
        with pytest.raises(ClientError):
            send(ses_client, api, to=2)  # 2 + 2 > 3
        assert [len(m.destinations) for m in fake.messages] == [3, 2]


@pytest.mark.parametrize("mode", [True, "ses"])
@pytest.mark.parametrize("api", [1, 2])
def test_enforced_daily_quota(api: int, mode: bool | str) -> None:
    with FakeSES(max_send_rate=100, max_24_hour_send=2, enforce_rate=mode) as fake:
        ses_client = client(fake, api)
        send(ses_client, api, to=2)
        with pytest.raises(ClientError) as exc:
            send(ses_client, api)
        assert error_of(exc) == ERRORS["quota"][api]
        assert fake.refused == {"quota": 1}
        assert client(fake, 1).get_send_quota()["SentLast24Hours"] == 2.0


def test_rate_is_not_enforced_unless_asked() -> None:
    with FakeSES(max_send_rate=1) as fake:
        ses_client = client(fake, 2)
        for _ in range(3):
            send(ses_client, 2, to=2)
        assert len(fake.messages) == 3
        assert fake.rate_mode == "off"
        assert fake.stats()["rate_budget"] is None


def test_rolling_mode_refuses_a_call_larger_than_the_rate_that_ses_mode_accepts() -> None:
    with FakeSES(max_send_rate=1, enforce_rate="rolling") as fake:
        with pytest.raises(ClientError) as exc:
            send(client(fake, 2), 2, to=50)
        assert error_of(exc) == ERRORS["throttle"][2]
        fake.enforce_rate = "ses"
        send(client(fake, 2), 2, to=50)
        assert [len(m.destinations) for m in fake.messages] == [50]


@pytest.mark.parametrize("api", [1, 2])
def test_ses_mode_accepts_one_call_over_the_rate_then_throttles(api: int) -> None:
    with FakeSES(max_send_rate=1, enforce_rate="ses") as fake:
        ses_client = client(fake, api)
        send(ses_client, api, to=50)  # a full budget lets any call through
        with pytest.raises(ClientError) as exc:
            send(ses_client, api)  # 49 recipients of debt: about 49 s to pay back at 1/s
        assert error_of(exc) == ERRORS["throttle"][api]
        assert fake.refused == {"rate": 1}
        assert fake.stats()["rate_budget"] < -48
        assert [len(m.destinations) for m in fake.messages] == [50]


@pytest.mark.parametrize("api", [1, 2])
def test_ses_mode_accepts_again_once_the_debt_is_refilled(api: int) -> None:
    with FakeSES(max_send_rate=20, enforce_rate="ses") as fake:
        ses_client = client(fake, api)
        send(ses_client, api, to=30)  # budget 20 - 30: 10 in debt, refilled in 0.5 s
        with pytest.raises(ClientError) as exc:
            send(ses_client, api)
        assert error_of(exc) == ERRORS["throttle"][api]
        time.sleep(0.6)  # at least 12 refilled: the budget is above 0 again
        send(ses_client, api, to=2)
        assert [len(m.destinations) for m in fake.messages] == [30, 2]
        assert fake.refused == {"rate": 1}


@pytest.mark.parametrize("api", [1, 2])
def test_ses_mode_lets_a_burst_of_the_rate_through_a_full_budget(api: int) -> None:
    with FakeSES(max_send_rate=4, enforce_rate="ses") as fake:
        now = freeze_budget_clock(fake)
        ses_client = client(fake, api)
        for _ in range(4):
            send(ses_client, api)
        assert fake.stats()["rate_budget"] == 0.0
        with pytest.raises(ClientError) as exc:
            send(ses_client, api)  # nothing left at all
        assert error_of(exc) == ERRORS["throttle"][api]
        now[0] += 1 / 32  # an eighth of a recipient refilled: enough for a call of any size
        send(ses_client, api, to=10)
        assert fake.stats()["rate_budget"] == 0.125 - 10
        assert len(fake.messages) == 5


@pytest.mark.parametrize("api", [1, 2])
def test_ses_mode_refused_calls_spend_nothing(api: int) -> None:
    with FakeSES(max_send_rate=4, enforce_rate="ses") as fake:
        now = freeze_budget_clock(fake)
        ses_client = client(fake, api)
        send(ses_client, api, to=6)  # 2 in debt
        for _ in range(3):
            with pytest.raises(ClientError):
                send(ses_client, api, to=5)
        assert fake.refused == {"rate": 3}
        assert fake.stats()["rate_budget"] == -2.0
        now[0] += 0.5  # refills exactly the debt: still nothing left
        with pytest.raises(ClientError):
            send(ses_client, api)
        now[0] += 0.25
        send(ses_client, api, to=3)  # had the refusals spent, this would be 15 in debt
        assert [len(m.destinations) for m in fake.messages] == [6, 3]
        assert fake.stats()["rate_budget"] == 1.0 - 3


def test_ses_mode_budget_follows_a_changed_rate() -> None:
    with FakeSES(max_send_rate=8, enforce_rate="ses") as fake:
        now = freeze_budget_clock(fake)
        fake.max_send_rate = 2  # the full budget of 8 is clamped to the new capacity
        assert fake.stats()["rate_budget"] == 2.0
        v2 = client(fake, 2)
        send(v2, 2)
        send(v2, 2)
        with pytest.raises(ClientError):
            send(v2, 2)
        fake.configure(rate=16)
        now[0] += 0.125  # refilled at the new rate
        assert fake.stats()["rate_budget"] == 2.0
        now[0] += 10
        assert fake.stats()["rate_budget"] == 16.0  # at most one second's worth


def test_ses_mode_starts_full_when_switched_on_and_after_reset() -> None:
    with FakeSES(max_send_rate=4) as fake:
        freeze_budget_clock(fake)
        v2 = client(fake, 2)
        send(v2, 2, to=100)  # not enforced, not spent
        fake.enforce_rate = "ses"
        assert fake.stats()["rate_budget"] == 4.0
        send(v2, 2, to=100)
        assert fake.stats()["rate_budget"] == -96.0
        fake.configure(enforce_rate="ses")  # already on: the debt stays
        assert fake.stats()["rate_budget"] == -96.0
        fake.reset()
        assert fake.stats()["rate_budget"] == 4.0


@pytest.mark.parametrize("value", ["fast", "SES", 1, None, "true"])
def test_enforce_rate_is_validated(fake: FakeSES, value: Any) -> None:
    with pytest.raises(ValueError, match="enforce_rate must be"):
        FakeSES(enforce_rate=value)
    with pytest.raises(ValueError, match="enforce_rate must be"):
        fake.enforce_rate = value
    assert fake.enforce_rate is False


@pytest.mark.parametrize(
    ("value", "mode"), [(False, "off"), (True, "rolling"), ("rolling", "rolling"), ("ses", "ses")]
)
def test_rate_mode_names_the_enforcement(value: bool | str, mode: str) -> None:
    with FakeSES(enforce_rate=value) as fake:
        assert fake.enforce_rate == value
        assert fake.rate_mode == fake.stats()["config"]["rate_mode"] == mode
        assert fake.stats()["config"]["enforce_rate"] == value


@pytest.mark.parametrize("api", [1, 2])
def test_unverified_sender_is_rejected(api: int) -> None:
    with FakeSES(verified_identities={"example.com", "Solo@Example.org"}) as fake:
        ses_client = client(fake, api)
        send(ses_client, api, source="anyone@example.com")  # domain identity
        send(ses_client, api, source="Solo <solo@example.org>")  # address identity
        with pytest.raises(ClientError) as exc:
            send(ses_client, api, source="other@example.org")
        assert error_of(exc) == (
            400,
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in "
            "region US-EAST-1: other@example.org",
        )
        assert len(fake.messages) == 2
        assert fake.refused == {"unverified": 1}


def test_latency_delays_every_send(fake: FakeSES) -> None:
    fake.latency = 0.3
    v2 = client(fake, 2)
    started = time.monotonic()
    send(v2, 2)
    assert time.monotonic() - started >= 0.3


def test_concurrent_clients_are_all_recorded(fake: FakeSES) -> None:
    fake.latency = 0.01
    errors: list[BaseException] = []

    def worker(ses_client: Any) -> None:
        try:
            for _ in range(10):
                send(ses_client, 2)
        except BaseException as exc:
            errors.append(exc)

    # Clients are made here: creating them through boto3's default session is not thread-safe.
    threads = [threading.Thread(target=worker, args=(client(fake, 2),)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(fake.messages) == fake.requests == 200
    assert len({m.message_id for m in fake.messages}) == 200


def test_reset_forgets_messages_faults_and_counters(fake: FakeSES) -> None:
    send(client(fake, 2), 2)
    fake.inject("500")
    fake.reset()
    assert (fake.messages, fake.pending_faults, fake.requests, fake.faults_served) == (
        [],
        [],
        0,
        {},
    )
    assert fake.sent_last_24_hours == 0


def test_control_endpoints_over_http(fake: FakeSES) -> None:
    v1 = client(fake, 1)
    send(v1, 1, to=2)
    [listed] = control(fake, "/_fake/messages")
    assert listed["raw"] is None
    assert listed["destinations"] == ["r0@example.net", "r1@example.net"]
    assert listed["received_at"] == fake.messages[0].received_at
    [with_raw] = control(fake, "/_fake/messages?raw=1")
    assert base64.b64decode(with_raw["raw"]) == RAW
    assert AcceptedMessage.from_json(with_raw) == fake.messages[0]
    assert control(fake, "/_fake/messages?since=1") == []

    stats = control(fake, "/_fake/inject", {"fault": "503", "times": 2})
    assert stats["pending_faults"] == ["503", "503"]
    for _ in range(2):
        with pytest.raises(ClientError):
            send(v1, 1)
    stats = control(fake, "/_fake/stats")
    assert stats["requests"] == stats["send_requests"] == 3
    assert stats["accepted"] == 1
    assert stats["sent_last_24_hours"] == 2
    assert stats["faults_served"] == {"503": 2}

    control(fake, "/_fake/config", {"rate": 1, "quota": 10, "enforce_rate": True, "latency": 0})
    assert (fake.max_send_rate, fake.max_24_hour_send, fake.enforce_rate) == (1.0, 10, True)
    with pytest.raises(ClientError) as exc:
        send(v1, 1)  # 2 recipients already sent within the second
    assert error_of(exc)[1] == "Throttling"

    control(fake, "/_fake/reset", {})
    assert control(fake, "/_fake/messages") == []
    assert control(fake, "/_fake/stats")["requests"] == 0


def test_config_over_http_switches_rate_modes_and_account_answers(fake: FakeSES) -> None:
    v2 = client(fake, 2)
    stats = control(fake, "/_fake/config", {"enforce_rate": "ses", "rate": 1})
    assert stats["config"]["enforce_rate"] == "ses"
    assert stats["config"]["rate_mode"] == "ses"
    assert stats["rate_budget"] == pytest.approx(1.0)
    assert fake.enforce_rate == "ses"
    send(v2, 2, to=5)  # accepted from the full budget, 4 in debt
    with pytest.raises(ClientError) as exc:
        send(v2, 2)
    assert error_of(exc) == ERRORS["throttle"][2]
    assert control(fake, "/_fake/stats")["refused"] == {"rate": 1}

    stats = control(fake, "/_fake/config", {"enforce_rate": "rolling", "rate": 10})
    assert (stats["config"]["rate_mode"], stats["rate_budget"]) == ("rolling", None)
    with pytest.raises(ClientError):
        send(v2, 2, to=6)  # 5 + 6 > 10 within the second
    for value, mode in [(False, "off"), (True, "rolling"), ("off", "off")]:
        stats = control(fake, "/_fake/config", {"enforce_rate": value})
        assert stats["config"]["rate_mode"] == mode
    assert fake.enforce_rate is False
    send(v2, 2, to=50)

    stats = control(fake, "/_fake/config", {"get_account": "denied", "get_send_quota": "missing"})
    assert (stats["config"]["get_account"], stats["config"]["get_send_quota"]) == (
        "denied",
        "missing",
    )
    with pytest.raises(ClientError) as exc:
        v2.get_account()
    assert error_of(exc)[:2] == (403, "AccessDeniedException")
    with pytest.raises(ResponseParserError):
        client(fake, 1).get_send_quota()
    stats = control(fake, "/_fake/config", {"get_account": "error", "get_send_quota": "ok"})
    with pytest.raises(ClientError) as exc:
        v2.get_account()
    assert error_of(exc)[:2] == (500, "InternalFailure")
    assert client(fake, 1).get_send_quota()["MaxSendRate"] == 10.0
    assert control(fake, "/_fake/stats")["account_requests"] == 4


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/_fake/inject", {"fault": "explode"}),
        ("/_fake/inject", {}),
        ("/_fake/config", {"colour": "blue"}),
        ("/_fake/config", {"enforce_rate": "fast"}),
        ("/_fake/config", {"enforce_rate": 1}),
        ("/_fake/config", {"get_account": "forbidden"}),
        ("/_fake/config", {"get_send_quota": None}),
    ],
)
def test_bad_control_requests_get_400(fake: FakeSES, path: str, payload: Any) -> None:
    with pytest.raises(urllib.error.HTTPError) as exc:
        control(fake, path, payload)
    assert exc.value.code == 400


def test_cli_serves_another_process_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "testservers.fake_ses", "--rate", "5", "--quota", "99"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        endpoint_url = process.stdout.readline().strip()
        assert endpoint_url.startswith("http://127.0.0.1:")
        ses_client = boto3.client(
            "sesv2",
            region_name="us-east-1",
            endpoint_url=endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=NO_RETRY,
        )
        assert ses_client.get_account()["SendQuota"]["Max24HourSend"] == 99.0
        send(ses_client, 2, to=2)
        with urllib.request.urlopen(endpoint_url + "/_fake/messages", timeout=5) as response:
            [message] = json.loads(response.read())
        assert message["destinations"] == ["r0@example.net", "r1@example.net"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_cli_flags_parse_into_settings() -> None:
    defaults = fake_ses._settings([])
    assert defaults["enforce_rate"] is False
    assert (defaults["get_account"], defaults["get_send_quota"]) == ("ok", "ok")
    assert fake_ses._settings(["--enforce-rate"])["enforce_rate"] is True
    settings = fake_ses._settings(
        ["--enforce-ses", "--get-account", "denied", "--get-send-quota", "missing", "--quota", "-1"]
    )
    assert settings["enforce_rate"] == "ses"
    assert (settings["get_account"], settings["get_send_quota"]) == ("denied", "missing")
    assert settings["max_24_hour_send"] == -1
    for answer in fake_ses.ACCOUNT_ANSWERS:
        assert fake_ses._settings(["--get-send-quota", answer])["get_send_quota"] == answer
    with FakeSES(**settings) as fake:  # the settings are FakeSES's arguments
        assert (fake.rate_mode, fake.get_account) == ("ses", "denied")


@pytest.mark.parametrize(
    "argv",
    [
        ["--enforce-rate", "--enforce-ses"],
        ["--get-account", "forbidden"],
        ["--get-send-quota"],
    ],
)
def test_cli_rejects_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        fake_ses._settings(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_serves_ses_mode_and_failing_account_queries() -> None:
    command = [sys.executable, "-m", "testservers.fake_ses", "--rate", "1", "--enforce-ses"]
    command += ["--get-account", "denied", "--get-send-quota", "error"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        endpoint_url = process.stdout.readline().strip()
        v2, v1 = (
            boto3.client(
                service,
                region_name="us-east-1",
                endpoint_url=endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=NO_RETRY,
            )
            for service in ("sesv2", "ses")
        )
        with pytest.raises(ClientError) as exc:
            v2.get_account()
        assert error_of(exc)[:2] == (403, "AccessDeniedException")
        with pytest.raises(ClientError) as exc:
            v1.get_send_quota()
        assert error_of(exc)[:2] == (500, "InternalFailure")
        send(v2, 2, to=5)
        with pytest.raises(ClientError) as exc:
            send(v2, 2)
        assert error_of(exc) == ERRORS["throttle"][2]
        with urllib.request.urlopen(endpoint_url + "/_fake/stats", timeout=5) as response:
            stats = json.loads(response.read())
        assert stats["config"]["rate_mode"] == "ses"
        assert (stats["config"]["get_account"], stats["config"]["get_send_quota"]) == (
            "denied",
            "error",
        )
        assert (stats["account_requests"], stats["refused"]) == (2, {"rate": 1})
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
