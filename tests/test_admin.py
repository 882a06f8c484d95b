"""The outbox in the Django admin: read-only pages, escaped content, and the retry/cancel actions.

Records are created directly with the ORM (the admin shows what delivery recorded); requests go
through Django's test client as a superuser.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import django
import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission, User
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sendwell import compat
from sendwell.models import (
    Attempt,
    AttemptOutcome,
    Message,
    MessageStatus,
    Recipient,
    RecipientStatus,
    Transport,
)

DUMMY_TASKS = (
    "django.tasks.backends.dummy.DummyBackend"
    if django.VERSION >= (6, 0)
    else "django_tasks.backends.dummy.DummyBackend"  # RemovedInSendwellDjango52
)
CHANGELIST = "admin:sendwell_message_changelist"
XSS = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def dummy_tasks() -> Iterator[Any]:
    with override_settings(TASKS={"default": {"BACKEND": DUMMY_TASKS}}):
        backend = compat.task_backends["default"]
        backend.clear()
        yield backend


def mime(subject: str = "Hello", body: str = "Plain body", html: str | None = None) -> bytes:
    email = EmailMultiAlternatives(subject, body, "sender@example.com", ["to@example.net"])
    if html is not None:
        email.attach_alternative(html, "text/html")
    return email.message().as_bytes()


def make_message(
    status: str = MessageStatus.QUEUED,
    recipients: dict[str, str] | None = None,
    *,
    subject: str = "Hello",
    attempts: int = 0,
    **fields: Any,
) -> Message:
    now = timezone.now()
    message = Message.objects.create(
        transport=Transport.SES,
        from_email="sender@example.com",
        subject=subject,
        raw=mime(subject, html=fields.pop("html", None)),
        status=status,
        attempt_count=attempts,
        next_attempt_at=fields.pop("next_attempt_at", now),
        **fields,
    )
    for address, recipient_status in (recipients or {"to@example.net": "queued"}).items():
        Recipient.objects.create(
            message=message,
            address=address,
            status=recipient_status,
            sent_at=now if recipient_status == RecipientStatus.SENT else None,
            ses_message_id=f"ses-{address}" if recipient_status == RecipientStatus.SENT else "",
        )
    for _ in range(attempts):
        Attempt.objects.create(
            message=message,
            started_at=now,
            finished_at=now,
            transport=Transport.SES,
            outcome=AttemptOutcome.RETRY,
            error_code="Throttling",
            error="Maximum sending rate exceeded.",
        )
    return message


def changelist(client: Client, **params: str) -> Any:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response


def result_ids(response: Any) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def run_action(client: Client, action: str, messages: list[Message]) -> Any:
    response = client.post(
        reverse(CHANGELIST),
        {"action": action, helpers.ACTION_CHECKBOX_NAME: [m.pk for m in messages]},
        follow=True,
    )
    assert response.status_code == 200
    return response


def reported(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def statuses(message: Message) -> dict[str, str]:
    return dict(message.recipients.values_list("address", "status"))


# --- pages ----------------------------------------------------------------------------------


def test_changelist_lists_and_filters_by_status(admin_client: Client) -> None:
    queued = make_message(
        MessageStatus.QUEUED, {"a@example.net": "queued", "b@example.net": "queued"}
    )
    failed = make_message(MessageStatus.FAILED, {"c@example.net": "failed"})
    sent = make_message(MessageStatus.SENT, {"d@example.net": "sent"})

    response = changelist(admin_client)
    assert result_ids(response) == {queued.pk, failed.pk, sent.pk}
    content = response.content.decode()
    assert "sendwell-badge sendwell-failed" in content
    # the recipient count column comes from the annotation
    by_pk = {obj.pk: obj.recipient_total for obj in response.context["cl"].result_list}
    assert by_pk == {queued.pk: 2, failed.pk: 1, sent.pk: 1}

    assert result_ids(changelist(admin_client, status__exact="failed")) == {failed.pk}
    assert result_ids(changelist(admin_client, status__exact="sent")) == {sent.pk}


def test_changelist_is_newest_first(admin_client: Client) -> None:
    now = timezone.now()
    old = make_message(created_at=now - timedelta(days=2))
    new = make_message(created_at=now)
    response = changelist(admin_client)
    assert [m.pk for m in response.context["cl"].result_list] == [new.pk, old.pk]


def test_search_by_recipient_address_and_ses_id(admin_client: Client) -> None:
    target = make_message(
        MessageStatus.SENT,
        {"alice@example.net": "sent", "alice.b@example.net": "sent"},
        ses_message_ids=["0100-abc-def"],
    )
    make_message(MessageStatus.QUEUED, {"bob@example.net": "queued"})

    # Both recipients match "alice": the message is listed once, with its true recipient count.
    response = changelist(admin_client, q="alice")
    assert [(m.pk, m.recipient_total) for m in response.context["cl"].result_list] == [
        (target.pk, 2)
    ]
    assert result_ids(changelist(admin_client, q="0100-abc")) == {target.pk}
    assert result_ids(changelist(admin_client, q="ses-alice@example.net")) == {target.pk}
    assert result_ids(changelist(admin_client, q="bob@example.net")) != {target.pk}


def test_detail_shows_recipients_attempts_and_escapes_content(admin_client: Client) -> None:
    message = make_message(
        MessageStatus.DEFERRED,
        {"sent@example.net": "sent", "waiting@example.net": "deferred"},
        subject=f"Hi {XSS}",
        html=f"<p>Hello</p>{XSS}",
        attempts=2,
        last_error="Maximum sending rate exceeded.",
    )
    response = admin_client.get(reverse("admin:sendwell_message_change", args=[message.pk]))
    assert response.status_code == 200
    content = response.content.decode()

    assert "sent@example.net" in content
    assert "waiting@example.net" in content
    assert "ses-sent@example.net" in content
    assert content.count("Maximum sending rate exceeded.") >= 2  # the message and its attempts
    assert "Throttling" in content
    assert "MIME size" in content
    assert f"{len(message.raw):,} bytes" in content
    assert "text/html" in content  # listed as a part, never rendered

    # The subject (in the title, the fields and the Subject header) and the HTML body are text.
    assert XSS not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<p>Hello</p>" not in content

    # Read-only: no form fields, no save button.
    assert 'name="_save"' not in content
    assert 'name="subject"' not in content


@pytest.mark.parametrize(
    "raw",
    [
        b"not a MIME message at all \xff\xfe",
        b"Subject: =?x-unknown?q?odd?=\r\nContent-Type: text/plain; charset=x-unknown\r\n"
        b"\r\nbody <script>alert(1)</script>\r\n",
        b"",
    ],
    ids=["garbage", "unknown-charset", "empty"],
)
def test_detail_survives_odd_mime(admin_client: Client, raw: bytes) -> None:
    message = make_message(MessageStatus.FAILED, {"a@example.net": "failed"})
    Message.objects.filter(pk=message.pk).update(raw=raw)
    response = admin_client.get(reverse("admin:sendwell_message_change", args=[message.pk]))
    assert response.status_code == 200
    assert XSS not in response.content.decode()


def test_detail_page_cannot_be_saved(admin_client: Client) -> None:
    message = make_message(MessageStatus.FAILED, {"a@example.net": "failed"})
    url = reverse("admin:sendwell_message_change", args=[message.pk])
    response = admin_client.post(url, {"subject": "changed", "status": "queued"})
    assert response.status_code == 403
    message.refresh_from_db()
    assert (message.subject, message.status) == ("Hello", MessageStatus.FAILED)


def test_no_add_or_delete(admin_client: Client) -> None:
    assert admin_client.get(reverse("admin:sendwell_message_add")).status_code == 403
    message = make_message()
    url = reverse("admin:sendwell_message_delete", args=[message.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()
    actions = changelist(admin_client).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions if name] == ["retry_selected", "cancel_selected"]


def test_view_only_staff_sees_the_outbox_but_no_actions(client: Client) -> None:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="sendwell",
            codename__in=["view_message", "view_recipient", "view_attempt"],
        )
    )
    client.force_login(user)
    message = make_message(MessageStatus.FAILED, {"a@example.net": "failed"})
    response = changelist(client)
    assert result_ids(response) == {message.pk}
    assert response.context["action_form"] is None
    response = client.post(
        reverse(CHANGELIST),
        {"action": "retry_selected", helpers.ACTION_CHECKBOX_NAME: [message.pk]},
    )
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED


def test_changelist_query_count_does_not_grow_with_the_page(admin_client: Client) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = changelist(admin_client)
        assert len(response.context["cl"].result_list) == Message.objects.count()
        return len(captured)

    for _ in range(5):
        make_message(
            MessageStatus.SENT, {"a@example.net": "sent", "b@example.net": "sent"}, attempts=1
        )
    with_5 = queries()
    for _ in range(45):
        make_message(
            MessageStatus.SENT, {"a@example.net": "sent", "b@example.net": "sent"}, attempts=1
        )
    assert queries() == with_5
    with_search = changelist(admin_client, q="a@example.net")  # the search joins recipients
    assert len(with_search.context["cl"].result_list) == 50


def test_recipient_and_attempt_pages(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    message = make_message(
        MessageStatus.DEFERRED,
        {"x@example.net": "sent", "waiting@example.net": "deferred"},
        attempts=1,
    )
    other = make_message(MessageStatus.QUEUED, {"z@example.net": "queued"})
    for _ in range(30):
        make_message(MessageStatus.SENT, {"many@example.net": "sent"}, attempts=1)

    url = reverse("admin:sendwell_recipient_changelist")
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert response.status_code == 200
    response = admin_client.get(url, {"q": "waiting@example"})
    assert [r.address for r in response.context["cl"].result_list] == ["waiting@example.net"]
    response = admin_client.get(url, {"status__exact": "queued"})
    assert [r.message_id for r in response.context["cl"].result_list] == [other.pk]
    response = admin_client.get(url, {"message__id__exact": message.pk})
    assert {r.address for r in response.context["cl"].result_list} == {
        "x@example.net",
        "waiting@example.net",
    }

    url = reverse("admin:sendwell_attempt_changelist")
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 31
    response = admin_client.get(url, {"outcome__exact": "sent"})
    assert response.context["cl"].result_list.count() == 0

    recipient = message.recipients.get(address="waiting@example.net")
    detail = admin_client.get(reverse("admin:sendwell_recipient_change", args=[recipient.pk]))
    assert detail.status_code == 200
    assert admin_client.get(reverse("admin:sendwell_recipient_add")).status_code == 403
    assert admin_client.get(reverse("admin:sendwell_attempt_add")).status_code == 403


# --- actions --------------------------------------------------------------------------------


def test_retry_requeues_only_failed_and_deferred_never_sent_recipients(
    admin_client: Client, dummy_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    failed = make_message(
        MessageStatus.FAILED,
        {"sent@example.net": "sent", "failed@example.net": "failed"},
        attempts=3,
        next_attempt_at=None,
        last_error="Maximum sending rate exceeded.",
    )
    deferred = make_message(
        MessageStatus.DEFERRED,
        {"d1@example.net": "deferred", "d2@example.net": "queued", "bounce@example.net": "bounced"},
        attempts=1,
        next_attempt_at=long_ago + timedelta(hours=3),
    )
    sent = make_message(MessageStatus.SENT, {"s@example.net": "sent"}, attempts=1)
    sending = make_message(
        MessageStatus.SENDING, {"w@example.net": "queued"}, claimed_by="host:1:worker"
    )
    # Failed, but everyone was sent to or suppressed: nothing to retry.
    done = make_message(
        MessageStatus.FAILED, {"x@example.net": "sent", "y@example.net": "suppressed"}
    )

    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = run_action(
            admin_client, "retry_selected", [failed, deferred, sent, sending, done]
        )
    assert len(callbacks) == 1
    assert [r.task.name for r in dummy_tasks.results] == ["drain_outbox"]

    for message in (failed, deferred):
        message.refresh_from_db()
        assert message.status == MessageStatus.QUEUED
        assert message.attempt_count == 0
        assert message.claimed_by == ""
        assert message.next_attempt_at is not None
        assert before <= message.next_attempt_at <= timezone.now()
    assert statuses(failed) == {"sent@example.net": "sent", "failed@example.net": "queued"}
    assert statuses(deferred) == {
        "d1@example.net": "queued",
        "d2@example.net": "queued",
        "bounce@example.net": "bounced",
    }
    # The history of what went wrong stays.
    assert failed.attempts.count() == 3
    assert failed.last_error == "Maximum sending rate exceeded."

    for message, status in ((sent, "sent"), (sending, "sending"), (done, "failed")):
        old_updated_at = message.updated_at
        message.refresh_from_db()
        assert message.status == status
        assert message.updated_at == old_updated_at
    assert sending.claimed_by == "host:1:worker"
    assert statuses(sent) == {"s@example.net": "sent"}
    assert statuses(done) == {"x@example.net": "sent", "y@example.net": "suppressed"}

    [text] = reported(response)
    assert text.startswith("Queued 2 messages for another attempt. Skipped 3:")
    assert "1 sent" in text
    assert "1 sending" in text
    assert "1 failed, nothing left to send" in text


def test_retry_of_nothing_retryable_enqueues_nothing(
    admin_client: Client, dummy_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sent = make_message(MessageStatus.SENT, {"s@example.net": "sent"})
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "retry_selected", [sent])
    assert dummy_tasks.results == []
    assert reported(response) == ["Queued 0 messages for another attempt. Skipped 1: 1 sent."]


def test_retry_across_all_filtered_results(
    admin_client: Client, dummy_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """ "Select all" on a page filtered by status: the action must not lose rows it changes."""
    failed = [make_message(MessageStatus.FAILED, {"a@example.net": "failed"}) for _ in range(3)]
    make_message(MessageStatus.SENT, {"a@example.net": "sent"})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse(CHANGELIST) + "?status__exact=failed",
            {
                "action": "retry_selected",
                "select_across": "1",
                helpers.ACTION_CHECKBOX_NAME: [failed[0].pk],
            },
            follow=True,
        )
    assert reported(response) == ["Queued 3 messages for another attempt."]
    assert Message.objects.filter(status=MessageStatus.QUEUED).count() == 3
    assert len(dummy_tasks.results) == 1


def test_cancel_skips_sending_and_sent_messages(
    admin_client: Client, dummy_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    queued = make_message(
        MessageStatus.QUEUED, {"q1@example.net": "queued", "q2@example.net": "queued"}
    )
    deferred = make_message(
        MessageStatus.DEFERRED, {"sent@example.net": "sent", "later@example.net": "deferred"}
    )
    sending = make_message(
        MessageStatus.SENDING, {"w@example.net": "queued"}, claimed_by="host:1:worker"
    )
    sent = make_message(MessageStatus.SENT, {"s@example.net": "sent"})

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "cancel_selected", [queued, deferred, sending, sent])
    assert dummy_tasks.results == []  # nothing to wake a worker for

    for message in (queued, deferred):
        message.refresh_from_db()
        assert message.status == MessageStatus.CANCELLED
        assert message.next_attempt_at is None
        assert message.claimed_by == ""
    assert statuses(queued) == {"q1@example.net": "failed", "q2@example.net": "failed"}
    assert set(queued.recipients.values_list("error", flat=True)) == {"cancelled by admin"}
    assert statuses(deferred) == {"sent@example.net": "sent", "later@example.net": "failed"}
    assert deferred.recipients.get(address="sent@example.net").error == ""

    sending.refresh_from_db()
    assert (sending.status, sending.claimed_by) == (MessageStatus.SENDING, "host:1:worker")
    assert statuses(sending) == {"w@example.net": "queued"}
    sent.refresh_from_db()
    assert sent.status == MessageStatus.SENT

    assert reported(response) == ["Cancelled 2 messages. Skipped 2: 1 sending, 1 sent."]


def test_cancelled_message_is_not_picked_up_by_a_worker(admin_client: Client) -> None:
    from sendwell.delivery import claim  # noqa: PLC0415

    message = make_message(MessageStatus.QUEUED, {"a@example.net": "queued"})
    run_action(admin_client, "cancel_selected", [message])
    assert claim(10, "test-worker") == []
    # ... and a retry does not bring it back: only failed/deferred messages are retried.
    response = run_action(admin_client, "retry_selected", [message])
    assert reported(response) == ["Queued 0 messages for another attempt. Skipped 1: 1 cancelled."]


def test_retried_message_is_claimed_with_only_unsent_recipients(admin_client: Client) -> None:
    from sendwell.delivery import claim  # noqa: PLC0415

    message = make_message(
        MessageStatus.FAILED,
        {"sent@example.net": "sent", "failed@example.net": "failed"},
        next_attempt_at=None,
    )
    run_action(admin_client, "retry_selected", [message])
    [claimed] = claim(10, "test-worker")
    assert claimed.pk == message.pk
    pending = claimed.recipients.filter(status__in=["queued", "sending", "deferred"])
    assert list(pending.values_list("address", flat=True)) == ["failed@example.net"]
