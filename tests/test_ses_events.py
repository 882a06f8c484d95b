"""sendwell.events: SES's feedback JSON to SESEvents.

The payloads are in tests/ses_events/ (their sources, AWS's documented examples, are listed in its
README.md): event publishing from
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html, identity
notifications from https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendwell.events import EventParseError, EventType, SESEvent, parse_ses_message

PAYLOADS = Path(__file__).resolve().parent / "ses_events"
DOCS_MESSAGE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def text(name: str) -> str:
    return (PAYLOADS / f"{name}.json").read_text()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def parse_one(name: str) -> SESEvent:
    events = parse_ses_message(text(name))
    assert len(events) == 1
    return events[0]


ALL_PAYLOADS = sorted(path.stem for path in PAYLOADS.glob("*.json"))


# -- every payload, both ways in ------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_PAYLOADS)
def test_message_as_string_and_as_object_give_the_same_events(name: str) -> None:
    """SNS's Message is a string (with a trailing newline, as anymail's tests have it); an
    emulator may send the object itself."""
    from_text = parse_ses_message(text(name) + "\n")
    from_bytes = parse_ses_message(text(name).encode())
    from_object = parse_ses_message(load(name))
    assert from_text == from_bytes == from_object
    assert from_text


@pytest.mark.parametrize("name", ALL_PAYLOADS)
def test_every_event_is_normalized(name: str) -> None:
    data = load(name)
    for event in parse_ses_message(data):
        assert event.ses_message_id == data["mail"]["messageId"]
        assert event.timestamp.tzinfo is UTC
        assert event.mail_timestamp.tzinfo is UTC
        assert event.recipient == event.recipient.strip().lower()
        assert "<" not in event.recipient
        assert event.raw == data  # the whole object, unknown fields included
        assert event.source_format == (
            "event_publishing" if "eventType" in data else "notification"
        )
        hash(event)  # frozen and hashable, mappings aside


# -- bounces ---------------------------------------------------------------------------------


def test_event_publishing_bounce() -> None:
    event = parse_one("ep-bounce-permanent-general")
    assert event == SESEvent(
        type=EventType.BOUNCE,
        type_name="Bounce",
        ses_message_id=DOCS_MESSAGE_ID,
        recipient="recipient@example.com",
        timestamp=at("2017-08-05T00:41:02.669Z"),
        mail_timestamp=at("2017-08-05T00:40:02.012Z"),
        source_format="event_publishing",
        feedback_id="01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
        bounce_type="Permanent",
        bounce_subtype="General",
        dsn_action="failed",
        dsn_status="5.1.1",
        diagnostic_code="smtp; 550 5.1.1 user unknown",
        reporting_mta="dsn; mta.example.com",
        tags={
            "ses:configuration-set": ("ConfigSet",),
            "ses:source-ip": ("192.0.2.0",),
            "ses:from-domain": ("example.com",),
            "ses:caller-identity": ("ses_user",),
        },
    )


def test_notification_bounce_with_a_dsn_concerns_only_the_bounced_recipient() -> None:
    """Three destinations, one bounced: one event, not three."""
    event = parse_one("notification-bounce-dsn")
    assert (event.type, event.source_format) == (EventType.BOUNCE, "notification")
    assert event.recipient == "jane@example.com"
    assert (event.bounce_type, event.bounce_subtype) == ("Permanent", "General")
    assert event.diagnostic_code == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert (event.reporting_mta, event.remote_mta_ip) == ("dns; email.example.com", "127.0.2.0")
    assert event.tags == {}  # identity notifications carry no tags


def test_notification_bounce_without_a_dsn_has_no_dsn_fields() -> None:
    events = parse_ses_message(text("notification-bounce-no-dsn"))
    assert [e.recipient for e in events] == ["jane@example.com", "richard@example.com"]
    assert {(e.dsn_action, e.dsn_status, e.diagnostic_code) for e in events} == {("", "", "")}


def test_batch_bounce_on_the_account_suppression_list() -> None:
    events = parse_ses_message(text("ep-bounce-on-account-suppression-list"))
    assert [e.recipient for e in events] == [
        "jane@example.com",
        "mary@example.com",
        "richard@example.com",
    ]
    for event in events:
        assert (event.bounce_type, event.bounce_subtype) == (
            "Permanent",
            "OnAccountSuppressionList",
        )
        assert event.diagnostic_code.startswith("Amazon SES did not send the message")
        assert event.reporting_mta == ""
    assert len({e.dedup_key for e in events}) == 3


def test_transient_bounce_recipients_with_display_names_and_mixed_case() -> None:
    events = parse_ses_message(text("ep-bounce-transient-mailbox-full"))
    assert [(e.recipient, e.dsn_status) for e in events] == [
        ("jane.doe@example.com", "4.2.2"),
        ("mary@example.com", "5.2.2"),
    ]
    assert {(e.bounce_type, e.bounce_subtype) for e in events} == {("Transient", "MailboxFull")}
    # The original spelling stays in raw.
    raw_recipients = events[0].raw["bounce"]["bouncedRecipients"]
    assert raw_recipients[0]["emailAddress"] == '"Jane Doe" <Jane.Doe@Example.COM>'


def test_undetermined_bounce() -> None:
    events = parse_ses_message(text("notification-bounce-undetermined"))
    assert len(events) == 2
    assert {(e.bounce_type, e.bounce_subtype) for e in events} == {("Undetermined", "Undetermined")}


def test_unknown_bounce_subtype_is_kept_verbatim_and_unknown_fields_stay_in_raw() -> None:
    event = parse_one("ep-bounce-unknown-subtype")
    assert (event.bounce_type, event.bounce_subtype) == ("Permanent", "SomeFutureSubType")
    assert event.raw["bounce"]["someFutureField"] == {"nested": [1, 2]}


@pytest.mark.parametrize(
    ("bounce_type", "subtype"),
    [
        ("Permanent", "NoEmail"),
        ("Permanent", "Suppressed"),
        ("Transient", "General"),
        ("Transient", "MessageTooLarge"),
        ("Transient", "ContentRejected"),
        ("Transient", "AttachmentRejected"),
        ("SomeFutureType", "General"),
    ],
)
def test_every_documented_bounce_subtype(bounce_type: str, subtype: str) -> None:
    data = load("ep-bounce-permanent-general")
    data["bounce"].update(bounceType=bounce_type, bounceSubType=subtype)
    [event] = parse_ses_message(data)
    assert (event.bounce_type, event.bounce_subtype) == (bounce_type, subtype)


def test_the_same_recipient_twice_is_one_event() -> None:
    data = load("notification-bounce-no-dsn")
    data["bounce"]["bouncedRecipients"] = [
        {"emailAddress": "Jane <JANE@example.com>"},
        {"emailAddress": "jane@example.com"},
    ]
    assert [e.recipient for e in parse_ses_message(data)] == ["jane@example.com"]


def test_a_bounce_without_recipients_is_kept_with_no_recipient() -> None:
    """Never attributed to mail.destination (that would suppress addresses that did not
    bounce), never dropped."""
    data = load("notification-bounce-dsn")
    del data["bounce"]["bouncedRecipients"]
    [event] = parse_ses_message(data)
    assert (event.type, event.recipient, event.bounce_type) == (EventType.BOUNCE, "", "Permanent")


# -- complaints ------------------------------------------------------------------------------


def test_complaint_with_a_feedback_report_and_two_recipients() -> None:
    events = parse_ses_message(text("notification-complaint-feedback-two-recipients"))
    assert [e.recipient for e in events] == ["richard@example.com", "mary@example.com"]
    for event in events:
        assert event.type is EventType.COMPLAINT
        assert event.complaint_type == "abuse"
        assert event.user_agent == "AnyCompany Feedback Loop (V0.01)"
        assert event.feedback_id == "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"
        assert event.timestamp == at("2016-01-27T14:59:38.237Z")


def test_complaint_without_a_feedback_report() -> None:
    event = parse_one("notification-complaint-no-feedback")
    assert (event.recipient, event.complaint_type, event.user_agent) == (
        "richard@example.com",
        "",
        "",
    )


def test_event_publishing_complaint_and_its_subtype() -> None:
    event = parse_one("ep-complaint")
    assert (event.complaint_type, event.complaint_subtype) == ("abuse", "")
    data = load("ep-complaint")
    data["complaint"]["complaintSubType"] = "OnAccountSuppressionList"
    assert parse_ses_message(data)[0].complaint_subtype == "OnAccountSuppressionList"
    data["complaint"]["complaintSubType"] = None  # "can either be null or ..."
    assert parse_ses_message(data)[0].complaint_subtype == ""


# -- delivery, send, reject, open, click, rendering failure, delay, subscription -----------


def test_deliveries() -> None:
    event = parse_one("ep-delivery")
    assert (event.type, event.recipient) == (EventType.DELIVERY, "recipient@example.com")
    assert event.timestamp == at("2016-10-19T23:21:04.133Z")
    assert (event.smtp_response, event.processing_time_ms) == ("250 2.6.0 Message received", 11893)
    assert event.reporting_mta == "mta.example.com"
    assert event.tags["myCustomTag1"] == ("myCustomTagValue1",)
    event = parse_one("notification-delivery")
    assert (event.recipient, event.processing_time_ms, event.remote_mta_ip) == (
        "jane@example.com",
        546,
        "127.0.2.0",
    )


def test_send_and_reject_concern_every_destination() -> None:
    event = parse_one("ep-send")
    assert (event.type, event.recipient) == (EventType.SEND, "recipient@example.com")
    assert event.timestamp == event.mail_timestamp == at("2016-10-14T05:02:16.645Z")
    data = load("ep-reject")
    data["mail"]["destination"] = ["A <a@example.com>", "B@example.com"]
    events = parse_ses_message(data)
    assert [(e.type, e.recipient, e.reject_reason) for e in events] == [
        (EventType.REJECT, "a@example.com", "Bad content"),
        (EventType.REJECT, "b@example.com", "Bad content"),
    ]


def test_rendering_failure() -> None:
    event = parse_one("ep-rendering-failure")
    assert (event.type, event.type_name) == (EventType.RENDERING_FAILURE, "Rendering Failure")
    assert event.template_name == "MyTemplate"
    assert (
        event.rendering_error == "Attribute 'attributeName' is not present in the rendering data."
    )


@pytest.mark.parametrize("spelling", ["RenderingFailure", "RENDERING_FAILURE"])
def test_other_spellings_of_a_type(spelling: str) -> None:
    data = load("ep-rendering-failure")
    data["eventType"] = spelling
    assert parse_ses_message(data)[0].type is EventType.RENDERING_FAILURE


def test_open() -> None:
    event = parse_one("ep-open")
    assert (event.type, event.recipient, event.ip_address) == (
        EventType.OPEN,
        "recipient@example.com",
        "192.0.2.1",
    )
    assert event.timestamp == at("2017-08-09T22:00:19.652Z")
    assert event.user_agent.startswith("Mozilla/5.0 (iPhone")


def test_an_open_of_a_message_to_several_recipients_names_none() -> None:
    """SES does not say which reader opened it: one event, recipient ""."""
    data = load("ep-open")
    data["mail"]["destination"] = ["a@example.com", "b@example.com"]
    [event] = parse_ses_message(data)
    assert event.recipient == ""


def test_click_with_link_tags() -> None:
    event = parse_one("ep-click")
    assert event.type is EventType.CLICK
    assert event.link == "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"
    assert event.link_tags == {"samplekey0": ("samplevalue0",), "samplekey1": ("samplevalue1",)}
    assert event.timestamp == at("2017-08-09T23:51:25.570Z")
    other = load("ep-click")
    other["click"]["link"] = "https://example.com/other"
    assert parse_ses_message(other)[0].dedup_key != event.dedup_key


def test_delivery_delay_with_its_expiry() -> None:
    event = parse_one("ep-delivery-delay")
    assert (event.type, event.recipient) == (EventType.DELIVERY_DELAY, "recipient@example.com")
    assert event.delay_type == "TransientCommunicationFailure"
    assert event.delay_expires == at("2020-06-16T00:25:40.914Z")
    assert event.timestamp == at("2020-06-16T00:25:40.095Z")
    assert (event.dsn_status, event.diagnostic_code) == (
        "4.4.1",
        "smtp; 421 4.4.1 Unable to connect to remote host",
    )


def test_subscription_with_topic_preferences() -> None:
    event = parse_one("ep-subscription")
    assert (event.type, event.recipient) == (EventType.SUBSCRIPTION, "recipient@example.com")
    assert (event.contact_list, event.subscription_source) == (
        "ContactListName",
        "UnsubscribeHeader",
    )
    assert event.unsubscribe_all is True
    assert event.topic_preferences == {"ExampleTopicName": "OptOut"}
    assert event.raw["subscription"]["oldTopicPreferences"]["unsubscribeAll"] is False


# -- unknown types ---------------------------------------------------------------------------


def test_an_unknown_type_is_one_unknown_event_with_its_name() -> None:
    event = parse_one("ep-unknown-type")
    assert (event.type, event.type_name, event.recipient) == (EventType.UNKNOWN, "Quarantine", "")
    assert event.timestamp == event.mail_timestamp
    assert event.raw["quarantine"]["reason"] == "made up for the test"


def test_inbound_received_is_unknown_but_kept() -> None:
    event = parse_one("notification-received")
    assert (event.type, event.type_name, event.source_format) == (
        EventType.UNKNOWN,
        "Received",
        "notification",
    )
    assert event.ses_message_id == "d6iitobk75ur44p8kdnnp7g2n800"


# -- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2016-01-27T14:59:38.237Z", datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)),
        ("2016-01-27T14:59:38Z", datetime(2016, 1, 27, 14, 59, 38, tzinfo=UTC)),
        ("2018-10-08T14:05:45 +0000", datetime(2018, 10, 8, 14, 5, 45, tzinfo=UTC)),
        ("2016-01-27T16:59:38.237+02:00", datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)),
        ("2016-01-27T14:59:38.237", datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)),
    ],
)
def test_timestamps(value: str, expected: datetime) -> None:
    data = load("ep-open")
    data["open"]["timestamp"] = value
    assert parse_ses_message(data)[0].timestamp == expected


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2016-01-27", "2016-13-27T14:59:38Z", "0001-01-01T00:00:00+01:00", 1453906778],
)
def test_a_bad_timestamp_is_an_error(value: object) -> None:
    data = load("ep-open")
    data["open"]["timestamp"] = value
    with pytest.raises(EventParseError, match=r"^open\.timestamp "):
        parse_ses_message(data)


def test_an_event_without_its_own_time_has_the_mails() -> None:
    data = load("ep-delivery")
    del data["delivery"]["timestamp"]
    assert parse_ses_message(data)[0].timestamp == at("2016-10-19T23:20:52.240Z")


# -- malformed input -------------------------------------------------------------------------


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    data = load("ep-bounce-permanent-general")
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


def _with(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    data = load("ep-bounce-permanent-general")
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        ("[" * 100_000, "nested too deeply"),
        ("[]", "is an array, not a JSON object"),
        ('"a string"', "is a string, not a JSON object"),
        ("null", "is null, not a JSON object"),
        (_without(("eventType",)), "neither eventType nor notificationType"),
        (_with(("eventType",), ["Bounce"]), "eventType is an array"),
        (_without(("mail",)), "no mail object"),
        (_with(("mail",), "mail"), "mail is a string, not an object"),
        (_without(("mail", "messageId")), "mail.messageId is missing"),
        (_with(("mail", "messageId"), ""), "mail.messageId is missing or empty"),
        (_with(("mail", "messageId"), 12), "mail.messageId is a number"),
        (_without(("mail", "timestamp")), "mail.timestamp is missing"),
        (_with(("mail", "destination"), "a@example.com"), "mail.destination is a string"),
        (
            _with(("mail", "tags", "ses:source-ip"), [1]),
            r"mail\.tags\.ses:source-ip\[0\] is a number",
        ),
        (_with(("bounce",), []), "bounce is an array, not an object"),
        (_with(("bounce", "bounceType"), True), "bounce.bounceType is true/false"),
        (_with(("bounce", "bouncedRecipients"), {}), "bounce.bouncedRecipients is an object"),
        (_with(("bounce", "bouncedRecipients", 0), "x@y"), r"bouncedRecipients\[0\] is a string"),
        (
            _with(("bounce", "bouncedRecipients", 0, "emailAddress"), None),
            None,  # null reads as absent: recipient "" (not an error)
        ),
    ],
)
def test_malformed_input_is_an_event_parse_error(message: Any, error: str | None) -> None:
    if error is None:
        assert parse_ses_message(message)[0].recipient == ""
        return
    with pytest.raises(EventParseError, match=error) as raised:
        parse_ses_message(message)
    assert len(str(raised.value)) <= EventParseError.MAX_LENGTH


def test_errors_never_echo_the_input() -> None:
    huge = "x" * 10_000
    for message in (huge, json.dumps({"eventType": "Open", "mail": {"messageId": [huge]}})):
        with pytest.raises(EventParseError) as raised:
            parse_ses_message(message)
        assert huge[:50] not in str(raised.value)
    long_path = {"eventType": "Open", huge: 1, "mail": {"messageId": "m", "timestamp": huge}}
    with pytest.raises(EventParseError) as raised:
        parse_ses_message(long_path)
    assert len(str(raised.value)) <= EventParseError.MAX_LENGTH


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("delivery", "processingTimeMillis"), "546"),
        (("delivery", "processingTimeMillis"), True),
        (("delivery", "processingTimeMillis"), 5.5),
        (("delivery", "recipients"), [None]),
    ],
)
def test_wrong_types_in_a_delivery(path: tuple[str, ...], value: object) -> None:
    data = load("ep-delivery")
    data[path[0]][path[1]] = value
    with pytest.raises(EventParseError, match=path[1]):
        parse_ses_message(data)


def test_events_are_immutable() -> None:
    event = parse_one("ep-click")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.recipient = "someone@else"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.link_tags["x"] = ()  # type: ignore[index]
    with pytest.raises(TypeError):
        event.raw["eventType"] = "Open"  # type: ignore[index]


# -- properties ------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# Keys SES does not send (none of its field names start with "x-").
UNKNOWN_KEY = st.text(max_size=10).map(lambda key: "x-" + key)
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _parses_or_refuses(message: Any) -> None:
    try:
        events = parse_ses_message(message)
    except EventParseError:
        return
    assert events
    assert all(isinstance(event, SESEvent) for event in events)


@PROPERTY_SETTINGS
@given(st.text())
def test_any_text_is_events_or_an_event_parse_error(message: str) -> None:
    _parses_or_refuses(message)


@PROPERTY_SETTINGS
@given(JSON)
def test_any_json_value_is_events_or_an_event_parse_error(value: Any) -> None:
    _parses_or_refuses(json.dumps(value))
    if isinstance(value, dict):
        _parses_or_refuses(value)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indexes)."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _nodes(child, (*path, index))
    return found


@PROPERTY_SETTINGS
@given(st.sampled_from(ALL_PAYLOADS), st.data(), JSON)
def test_any_field_of_a_real_payload_replaced_by_any_json_is_events_or_an_error(
    name: str, data: st.DataObject, replacement: Any
) -> None:
    payload = load(name)
    path = data.draw(st.sampled_from(_nodes(payload)[1:]))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    _parses_or_refuses(payload)
    _parses_or_refuses(json.dumps(payload))


@PROPERTY_SETTINGS
@given(st.sampled_from(ALL_PAYLOADS), st.data())
def test_unknown_keys_anywhere_leave_the_events_unchanged(name: str, data: st.DataObject) -> None:
    payload = load(name)
    expected = parse_ses_message(copy.deepcopy(payload))
    # Not inside a map of tags: there every name is data, not a field.
    objects = [
        path
        for path in _nodes(payload)
        if isinstance(_get(payload, path), dict) and not {"tags", "linkTags"} & set(path)
    ]
    for path in data.draw(st.lists(st.sampled_from(objects), min_size=1, max_size=5)):
        _get(payload, path)[data.draw(UNKNOWN_KEY)] = data.draw(JSON)
    assert parse_ses_message(payload) == expected


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value
