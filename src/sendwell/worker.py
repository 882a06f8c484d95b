"""The outbox worker: claim due messages in batches and deliver them on a few threads.

A delivery task (``sendwell.tasks.drain_outbox``) runs :func:`drain`. Several tasks may drain at
once, in one process or on many machines: claims keep them apart and the shared rate limiter
paces them together. Threads, not processes, give each worker its concurrency, because sending is
waiting on the network.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from django.db import connections

from sendwell import compat, conf
from sendwell.delivery import Route, claim, deliver, worker_name
from sendwell.models import Message

logger = logging.getLogger("sendwell.worker")

# How long a worker thread may wait for its turn in the rate limiter before the message is
# deferred instead (a message waiting that long is better left to the next drain).
WORKER_MAX_WAIT = 5.0


def route_for(alias: str) -> Route:
    backend = compat.mailer(alias)
    route = getattr(backend, "route", None)
    if not isinstance(route, Route):
        raise TypeError(
            f"mailer {alias!r} ({type(backend).__name__}) is not a sendwell backend; the outbox "
            "can only deliver through sendwell.backends.OutboxBackend, SESBackend or SMTPBackend"
        )
    return route


class _Routes:
    """Routes by mailer alias, built once per drain (a route holds the shared boto3 client)."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()

    def get(self, alias: str) -> Route:
        with self._lock:
            if alias not in self._routes:
                self._routes[alias] = route_for(alias)
            return self._routes[alias]


def _deliver_one(message: Message, routes: _Routes, worker: str) -> str:
    try:
        outcome = deliver(
            message, routes.get(message.mailer), worker=worker, max_wait=WORKER_MAX_WAIT
        )
    except Exception:
        # An unexpected bug must not kill the worker; the claim expires and the message is
        # picked up again, and the traceback is in the log.
        logger.exception("sendwell: delivering message %s failed unexpectedly", message.pk)
        return "error"
    return outcome.status


def drain(
    *,
    time_budget: float | None = None,
    batch_size: int | None = None,
    concurrency: int | None = None,
) -> dict[str, int]:
    """Deliver due messages until none are due or ``time_budget`` seconds have passed.

    Returns counts of outcomes (``sent``, ``deferred``, ``failed``, ...) and ``claimed``.
    """
    budget = float(
        time_budget if time_budget is not None else conf.setting("TASK_TIME_BUDGET_SECONDS")
    )
    batch = int(batch_size or conf.setting("BATCH_SIZE"))
    threads_wanted = max(1, int(concurrency or conf.setting("CONCURRENCY")))
    worker = worker_name()
    routes = _Routes()
    if threads_wanted == 1:
        return _drain_inline(budget, batch, worker, routes)
    work: queue.Queue[Message | None] = queue.Queue()
    results: dict[str, int] = {"claimed": 0}
    results_lock = threading.Lock()

    def run() -> None:
        try:
            while (message := work.get()) is not None:
                try:
                    status = _deliver_one(message, routes, worker)
                    with results_lock:
                        results[status] = results.get(status, 0) + 1
                finally:
                    work.task_done()
        finally:
            work.task_done()
            # Each thread has its own database connection; close it, or it leaks.
            connections.close_all()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(threads_wanted)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget
    try:
        while time.monotonic() < deadline:
            claimed = claim(batch, worker)
            if not claimed:
                break
            results["claimed"] += len(claimed)
            for message in claimed:
                work.put(message)
            work.join()
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
    return results


def _drain_inline(budget: float, batch: int, worker: str, routes: _Routes) -> dict[str, int]:
    """CONCURRENCY=1: deliver in the calling thread, on its database connection."""
    results: dict[str, int] = {"claimed": 0}
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        claimed = claim(batch, worker)
        if not claimed:
            break
        results["claimed"] += len(claimed)
        for message in claimed:
            status = _deliver_one(message, routes, worker)
            results[status] = results.get(status, 0) + 1
    return results


def next_due_at() -> Any:
    """When the earliest waiting message becomes due (None if nothing waits)."""
    # next_attempt_at is set exactly while a message waits (see the model): this condition is
    # what lets the partial index sendwell_message_due answer it.
    return (
        Message.objects.filter(next_attempt_at__isnull=False)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
