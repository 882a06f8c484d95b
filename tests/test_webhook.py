"""The SNS webhook end to end: a message sent through sendwell, SES's feedback about it signed as
SNS signs it and posted to /ses/sns/, and what sendwell then knows and does.

Default settings except the two a user must give (SNS_TOPIC_ARNS) and the test's certificate
source (SNS_FETCHER serves the test CA's SNS certificate for SNS's own URL; sendwell checks the
URL before it asks). Sends go to FakeSES, which gives each call a real SES message id.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import send_mail
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendwell import signals
from sendwell.models import (
    Event,
    Message,
    Notification,
    Recipient,
    RecipientStatus,
    Suppression,
    SuppressionReason,
)
from tests.conftest import SENDER
from tests.sns_signing import OTHER_TOPIC, TOPIC, LocalSNSFetcher, sns_message
from testservers.fake_ses import FakeSES

URL = "/ses/sns/"
PAYLOADS = Path(__file__).resolve().parent / "ses_events"
FEEDBACK = {"SNS_TOPIC_ARNS": [TOPIC], "SNS_FETCHER": "tests.sns_signing.LocalSNSFetcher"}


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


@pytest.fixture(autouse=True)
def feedback_settings() -> Iterator[None]:
    LocalSNSFetcher.fetched.clear()
    LocalSNSFetcher.fail_confirmations = False
    with override_settings(SENDWELL=FEEDBACK, ROOT_URLCONF="tests.webhook_urls"):
        yield


def post(data: Any, client: Client | None = None, **headers: str) -> Any:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return (client or Client()).post(URL, body, content_type="text/plain", headers=headers)


def sent_to(address: str) -> Recipient:
    assert send_mail("Hello", "Body", SENDER, [address]) == 1
    return Recipient.objects.get(address=address)


def about(recipient: Recipient, name: str, **changes: Any) -> dict[str, Any]:
    """SES JSON ``name`` rewritten to be about ``recipient``'s send."""
    data = copy.deepcopy(payload(name))
    data["mail"]["messageId"] = recipient.ses_message_id
    data["mail"]["destination"] = [recipient.address]
    for key in ("bounce", "complaint", "delivery"):
        section = data.get(key)
        if section is None:
            continue
        for list_name in ("bouncedRecipients", "complainedRecipients"):
            if list_name in section:
                section[list_name] = [{**section[list_name][0], "emailAddress": recipient.address}]
        if "recipients" in section:
            section["recipients"] = [recipient.address]
        section.update(changes.get(key, {}))
    return data


# --- a bounce closes the loop ----------------------------------------------------------------


def test_a_permanent_bounce_is_recorded_linked_and_suppresses_the_address(
    ses_mailer: FakeSES,
) -> None:
    recipient = sent_to("gone@example.net")
    seen: list[Any] = []
    signals.bounce.connect(lambda sender, **kw: seen.append(kw), weak=False)
    try:
        response = post(sns_message(about(recipient, "ep-bounce-permanent-general")))
    finally:
        signals.bounce.receivers.clear()
    assert response.status_code == 200
    event = Event.objects.get()
    assert (event.type, event.address) == ("bounce", "gone@example.net")
    assert event.recipient == recipient
    assert event.message == recipient.message
    assert event.detail["bounce_subtype"] == "General"
    assert event.raw["mail"]["messageId"] == recipient.ses_message_id
    recipient.refresh_from_db()
    assert recipient.status == RecipientStatus.BOUNCED
    suppressed = Suppression.objects.get()
    assert (suppressed.address, suppressed.reason) == ("gone@example.net", "hard_bounce")
    assert suppressed.event == event
    [call] = seen
    assert call["event"].bounce_type == "Permanent"
    assert call["record"] == event
    # The next send to the address is refused and recorded as suppressed.
    assert send_mail("Again", "Body", SENDER, ["Gone@Example.net"]) == 0
    assert Message.objects.filter(status="suppressed").count() == 1
    assert len(ses_mailer.messages) == 1


def test_a_redelivery_is_processed_once(ses_mailer: FakeSES) -> None:
    recipient = sent_to("gone@example.net")
    message = sns_message(about(recipient, "ep-bounce-permanent-general"))
    assert post(message).status_code == 200
    assert post(message).status_code == 200
    assert Notification.objects.count() == 1
    assert Event.objects.count() == 1


def test_a_complaint_is_never_hidden_by_a_late_delivery(ses_mailer: FakeSES) -> None:
    recipient = sent_to("angry@example.net")
    assert post(sns_message(about(recipient, "ep-complaint"))).status_code == 200
    assert post(sns_message(about(recipient, "ep-delivery"))).status_code == 200
    recipient.refresh_from_db()
    assert recipient.status == RecipientStatus.COMPLAINED
    assert Suppression.objects.get().reason == SuppressionReason.COMPLAINT
    assert sorted(Event.objects.values_list("type", flat=True)) == ["complaint", "delivery"]


def test_a_delivery_moves_the_recipient_forward(ses_mailer: FakeSES) -> None:
    recipient = sent_to("fine@example.net")
    assert post(sns_message(about(recipient, "notification-delivery"))).status_code == 200
    recipient.refresh_from_db()
    assert recipient.status == RecipientStatus.DELIVERED
    assert not Suppression.objects.exists()


def test_transient_bounces_suppress_only_after_the_default_count(ses_mailer: FakeSES) -> None:
    recipient = sent_to("full@example.net")
    start = datetime.now(UTC) - timedelta(hours=5)
    for hour in range(5):
        stamp = (start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        data = about(recipient, "ep-bounce-transient-mailbox-full", bounce={"timestamp": stamp})
        assert post(sns_message(data)).status_code == 200
        suppressed = Suppression.objects.filter(address="full@example.net").first()
        assert (suppressed is not None) is (hour == 4), hour  # the fifth one suppresses
    assert suppressed is not None
    assert suppressed.reason == SuppressionReason.TRANSIENT_BOUNCES
    assert suppressed.expires_at is not None  # it expires (after 30 days by default)
    recipient.refresh_from_db()
    assert recipient.status == RecipientStatus.SENT  # a transient bounce is not a bounce


def test_an_on_account_suppression_list_bounce_is_recorded_as_suppressed_by_ses(
    ses_mailer: FakeSES,
) -> None:
    recipient = sent_to("listed@example.net")
    data = about(recipient, "ep-bounce-on-account-suppression-list")
    assert post(sns_message(data)).status_code == 200
    assert Suppression.objects.get(address="listed@example.net").reason == SuppressionReason.SES


def test_an_event_for_an_unknown_message_is_kept_unlinked(ses_mailer: FakeSES) -> None:
    assert post(sns_message(payload("ep-delivery"))).status_code == 200
    event = Event.objects.get()
    assert event.message is None
    assert event.recipient is None


# --- what is refused -------------------------------------------------------------------------


def test_a_tampered_message_is_refused_and_changes_nothing(ses_mailer: FakeSES) -> None:
    recipient = sent_to("gone@example.net")
    message = sns_message(about(recipient, "ep-bounce-permanent-general"))
    message["Message"] = message["Message"].replace("Permanent", "Transient")
    response = post(message)
    assert response.status_code == 400
    assert b"bad_signature" in response.content
    assert not Notification.objects.exists()
    assert not Suppression.objects.exists()


def test_an_unknown_topic_is_forbidden() -> None:
    response = post(sns_message(payload("ep-delivery"), topic=OTHER_TOPIC))
    assert response.status_code == 403
    assert LocalSNSFetcher.fetched == []  # refused before any certificate is fetched
    assert not Notification.objects.exists()


def test_no_topic_configured_refuses_everything() -> None:
    with override_settings(SENDWELL={**FEEDBACK, "SNS_TOPIC_ARNS": []}):
        assert post(sns_message(payload("ep-delivery"))).status_code == 403


def test_a_stale_message_is_refused() -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    assert post(sns_message(payload("ep-delivery"), timestamp=old)).status_code == 400


def test_only_post_is_allowed() -> None:
    assert Client().get(URL).status_code == 405


def test_an_oversized_body_is_refused() -> None:
    assert post(b"{" + b" " * (300 * 1024) + b"}").status_code == 413


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=2048) | st.text(max_size=500).map(str.encode))
def test_any_body_is_answered_4xx_and_changes_nothing(body: bytes) -> None:
    response = post(body)
    assert 400 <= response.status_code < 500
    assert not Notification.objects.exists()
    assert not Event.objects.exists()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(["Message", "MessageId", "Timestamp", "TopicArn", "Type"]))
def test_any_signed_field_changed_is_refused(field: str) -> None:
    message = sns_message(payload("ep-delivery"))
    message[field] = message[field][:-1] + ("x" if message[field][-1] != "x" else "y")
    assert post(message).status_code in (400, 403)
    assert not Notification.objects.exists()


# --- subscriptions ---------------------------------------------------------------------------


def test_a_subscription_to_an_accepted_topic_is_confirmed_once() -> None:
    message = sns_message(kind="SubscriptionConfirmation")
    assert post(message).status_code == 200
    assert post(message).status_code == 200  # SNS repeating itself
    confirmations = [url for url in LocalSNSFetcher.fetched if "ConfirmSubscription" in url]
    assert confirmations == [message["SubscribeURL"]]


def test_a_failed_confirmation_asks_sns_to_try_again() -> None:
    LocalSNSFetcher.fail_confirmations = True
    message = sns_message(kind="SubscriptionConfirmation")
    assert post(message).status_code == 502
    LocalSNSFetcher.fail_confirmations = False
    assert post(message).status_code == 200
    assert Notification.objects.get().processed_at is not None


def test_a_subscription_to_a_foreign_topic_is_not_confirmed() -> None:
    assert post(sns_message(kind="SubscriptionConfirmation", topic=OTHER_TOPIC)).status_code == 403
    assert not any("ConfirmSubscription" in url for url in LocalSNSFetcher.fetched)


def test_an_unsubscribe_confirmation_is_recorded_and_never_followed() -> None:
    assert post(sns_message(kind="UnsubscribeConfirmation")).status_code == 200
    assert Notification.objects.get().type == "UnsubscribeConfirmation"
    assert not any("ConfirmSubscription" in url for url in LocalSNSFetcher.fetched)


# --- basic auth in the endpoint URL ----------------------------------------------------------


def test_basic_auth_is_asked_for_and_checked() -> None:
    with override_settings(SENDWELL={**FEEDBACK, "SNS_BASIC_AUTH": "sns:s3cret"}):
        message = sns_message(payload("ep-delivery"))
        challenge = post(message)
        assert challenge.status_code == 401
        assert challenge["WWW-Authenticate"].startswith("Basic")
        wrong = "Basic " + base64.b64encode(b"sns:wrong").decode()
        assert post(message, Authorization=wrong).status_code == 401
        right = "Basic " + base64.b64encode(b"sns:s3cret").decode()
        assert post(message, Authorization=right).status_code == 200


def test_a_receiver_that_raises_gets_the_notification_delivered_again(ses_mailer: FakeSES) -> None:
    recipient = sent_to("gone@example.net")
    message = sns_message(about(recipient, "ep-bounce-permanent-general"))

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("the application's receiver has a bug")

    signals.bounce.connect(broken)
    try:
        assert post(message).status_code == 503  # SNS retries
    finally:
        signals.bounce.disconnect(broken)
    assert not Event.objects.exists()  # nothing was applied
    assert not Suppression.objects.exists()
    assert post(message).status_code == 200  # SNS's retry, after the fix
    assert Suppression.objects.get().address == "gone@example.net"


def test_a_certificate_that_cannot_be_fetched_asks_sns_to_try_again() -> None:
    """The message may be genuine (a network blip, a firewall): SNS retries a 5xx, not a 4xx."""
    elsewhere = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-unserved.pem"
    response = post(sns_message(payload("ep-delivery"), cert_url=elsewhere))
    assert response.status_code == 503
    assert elsewhere in LocalSNSFetcher.fetched
    assert not Notification.objects.exists()


def test_a_certificate_on_an_s3_bucket_named_sns_is_never_fetched() -> None:
    bucket = "https://sns.s3.amazonaws.com/SimpleNotificationService-1.pem"
    assert post(sns_message(payload("ep-delivery"), cert_url=bucket)).status_code == 400
    assert LocalSNSFetcher.fetched == []
