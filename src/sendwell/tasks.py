"""``django.tasks`` tasks: deliver the outbox, and keep it moving (the sweep).

Users pick the engine with Django's standard ``TASKS`` setting: django-tasks-db's database backend
with ``db_worker`` on one machine, django-tasks-rq with Redis and ``rqworker`` on several. The
queue only carries wake-up calls: the outbox table is the truth, so a lost or duplicated job
costs nothing but a little latency (the sweep) or a query (claims).
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone

from sendwell import compat, conf, worker
from sendwell.models import Wakeup
from sendwell.ratelimit import prune_counters

logger = logging.getLogger("sendwell.tasks")


def drain_outbox() -> dict[str, int]:
    """Deliver due messages for up to TASK_TIME_BUDGET_SECONDS, then schedule what remains."""
    results = worker.drain()
    schedule_next()
    return results


# The module attribute ``drain_outbox`` is the Task (what workers import by its path,
# "sendwell.tasks.drain_outbox"), built by __getattr__ below on each use from the settings in force:
# TASK_QUEUE and TASK_BACKEND are read per call, as every sendwell setting is, and declaring the
# task at import would look up the task backend while apps are still being readied.
_drain_outbox = drain_outbox
del drain_outbox


@functools.cache
def _task(queue_name: str, backend: str) -> Any:
    # Declared on the configured backend and queue: the decorator validates the task against
    # that backend, which refuses a queue it lacks (TASK_QUEUE = "email", QUEUES = ["email"]
    # refuses "default").
    return compat.task(queue_name=queue_name, backend=backend)(_drain_outbox)


def __getattr__(name: str) -> Any:
    if name == "drain_outbox":
        return _task(conf.setting("TASK_QUEUE"), conf.setting("TASK_BACKEND"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def enqueue_drain(*, run_after: Any = None) -> None:
    """Wake a worker; never fails the caller (the sweep catches anything a lost job leaves)."""
    backend_alias = conf.setting("TASK_BACKEND")
    try:
        task = _task(conf.setting("TASK_QUEUE"), backend_alias)
        if run_after is not None and compat.task_backends[backend_alias].supports_defer:
            task = task.using(run_after=run_after)
        task.enqueue()
    except Exception:
        logger.exception("sendwell: could not enqueue a delivery task; the sweep will retry")


def schedule_next() -> None:
    """After a drain: wake a worker again when the next waiting message is due.

    Due now (the drain ran out of time): enqueue at once. Due later (a retry, quota room): one
    future task for the whole outbox, recorded in :class:`Wakeup` so that concurrent drains do
    not each schedule their own.
    """
    due = worker.next_due_at()
    if due is None:
        return
    now = timezone.now()
    if due <= now + timedelta(seconds=1):
        enqueue_drain()
        return
    wakeup, _ = Wakeup.objects.get_or_create(name="outbox")
    current = wakeup.run_after
    if current is not None and now < current <= due:
        return  # a task already wakes up in time
    if Wakeup.objects.filter(name="outbox", run_after=current).update(run_after=due):
        enqueue_drain(run_after=due)


def sweep() -> dict[str, int]:
    """Re-enqueue delivery for anything overdue (lost jobs, expired claims); prune old counters."""
    due = worker.next_due_at()
    woken = 0
    if due is not None and due <= timezone.now():
        enqueue_drain()
        woken = 1
    return {"woken": woken, "pruned_counters": prune_counters()}
