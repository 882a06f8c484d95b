"""Claims and leases: which worker may send a queued message, and for how long.

A claim is a token in ``Message.claimed_by`` with a lease end in ``next_attempt_at``; a worker
that dies leaves a lease that expires, and the message is claimed again. Every write a worker
makes to a claimed message goes through :func:`release` or :func:`renew`, which check the token,
so a worker whose lease was taken over cannot overwrite the new holder's work.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from sendwell import conf
from sendwell.models import Message, MessageStatus

WORKER_PREFIX = f"{socket.gethostname()}:{os.getpid()}"


def worker_name() -> str:
    return f"{WORKER_PREFIX}:{uuid.uuid4().hex[:8]}"


def claim(limit: int, worker: str) -> list[Message]:
    """Claim up to ``limit`` due messages for ``worker``: no other worker can have them.

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so that concurrent workers take different
    rows without waiting. SQLite allows one writer at a time, so a single ``UPDATE`` whose
    condition re-checks the status is already exclusive.
    """
    now = timezone.now()
    lease_end = now + timedelta(seconds=float(conf.setting("LEASE_SECONDS")))
    token = f"{worker}:{uuid.uuid4().hex[:8]}"
    # next_attempt_at is set exactly while a message is due (see the model): this condition alone
    # is what lets SQLite and PostgreSQL use the partial index sendwell_message_due.
    due = Message.objects.filter(next_attempt_at__lte=now)
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            ids = list(
                due.order_by("next_attempt_at")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:limit]
            )
            if ids:
                Message.objects.filter(pk__in=ids).update(
                    status=MessageStatus.SENDING, claimed_by=token, next_attempt_at=lease_end
                )
    else:
        oldest = due.order_by("next_attempt_at").values("pk")[:limit]
        # The outer filter repeats the condition, so a row claimed meanwhile is not taken again.
        due.filter(pk__in=oldest).update(
            status=MessageStatus.SENDING, claimed_by=token, next_attempt_at=lease_end
        )
    # Found again through the index: our rows are exactly those with our lease end and token.
    return list(
        Message.objects.filter(
            next_attempt_at=lease_end, claimed_by=token, status=MessageStatus.SENDING
        ).order_by()
    )


def renew(message: Message) -> bool:
    """Extend our lease on ``message`` for one send; False if we no longer hold it.

    A claim covers a whole batch, and a slow batch can outlast the lease: a message still
    waiting its turn in this worker then looks abandoned, and another worker takes it over.
    Checking and extending the claim before each send means that only its holder sends,
    provided the wait for the rate limiter (at most the worker's max wait) plus one send
    (connect + read timeouts) is shorter than ``LEASE_SECONDS``.
    """
    lease = timedelta(seconds=float(conf.setting("LEASE_SECONDS")))
    now = timezone.now()
    if message.next_attempt_at is not None and message.next_attempt_at - now > lease / 2:
        # More than half the lease left: nobody else can have taken the message, and one
        # limiter wait plus one send fit in what is left. Saves a write per message.
        return True
    lease_end = now + lease
    renewed = Message.objects.filter(
        pk=message.pk, claimed_by=message.claimed_by, status=MessageStatus.SENDING
    ).update(next_attempt_at=lease_end)
    if renewed:
        message.next_attempt_at = lease_end
    return bool(renewed)


def release(message: Message, **fields: object) -> bool:
    """Update ``message`` (and end the claim) only while we still hold its claim."""
    fields.setdefault("claimed_by", "")
    updated = Message.objects.filter(pk=message.pk, claimed_by=message.claimed_by).update(
        **fields, updated_at=timezone.now()
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return bool(updated)
