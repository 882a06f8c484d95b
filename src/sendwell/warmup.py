"""A task worker's first delivery, prepared while the worker starts.

django-tasks-db's ``db_worker`` imports a task's module only when its first task arrives. The
first email after a worker starts then pays for importing boto3 and sendwell's delivery code
(about 0.3 s of CPU) and for building the SES client (about 60 ms), on top of its own send; four
workers starting together on two cores took about a second. So a worker process does that work
while it starts (:meth:`sendwell.apps.SendwellConfig.ready`), before any task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger("sendwell.warmup")

# The Django management commands whose process runs delivery tasks itself. Not rq's rqworker:
# it forks a work horse per job and its scheduler into a process of its own, and a parent
# warmed up this way left rq's scheduler without scheduled jobs in about half of our test runs
# (tests/test_workers.py, the deferred retry), so rq workers start cold, as before.
WORKER_COMMANDS = frozenset({"db_worker"})


def is_worker(argv: Sequence[str]) -> bool:
    """``manage.py db_worker ...`` / ``python -m django rqworker ...``: a task worker."""
    return len(argv) > 1 and argv[1] in WORKER_COMMANDS


def warm_up() -> int:
    """Import what delivery needs (boto3, sendwell's delivery code) and build each configured
    mailer's SES client; returns the number of SES clients built. Never raises: a mailer that
    cannot be built fails again, with its reason, when the worker delivers through it."""
    from django.conf import settings  # noqa: PLC0415

    from sendwell import aws, conf  # noqa: PLC0415
    from sendwell.worker import route_for  # noqa: PLC0415

    # Not sendwell.tasks itself: declaring the task looks up the task backend, which must not
    # happen while apps are still being readied (the RQ backend then lost deferred tasks). The
    # cost is in what it imports, which building the mailers imports too.
    aliases = list(settings.MAILERS) if conf.uses_mailers() else ["default"]
    built = 0
    for alias in aliases:
        try:
            route = route_for(alias)
        except Exception:  # not a sendwell backend, or misconfigured: not ours to report here
            logger.debug("sendwell: no warm-up for mailer %r", alias, exc_info=True)
            continue
        for transport in route.transports:
            if transport.paced_by is None:  # not SES
                continue
            try:
                aws.ses_client(transport.paced_by)
            except Exception:
                logger.debug("sendwell: could not build the SES client of %r", alias, exc_info=True)
                continue
            built += 1
    return built
