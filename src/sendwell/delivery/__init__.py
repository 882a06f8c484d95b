"""Delivery: the one pipeline every message takes, queued or not.

    backend -> build_record (prepare, check) -> [outbox: saved, claimed by a worker]
            -> choose transport -> pace -> hand over -> record -> retry policy

- :mod:`~sendwell.delivery.route`: a mailer's transports in order, and whether to fail over;
- :mod:`~sendwell.delivery.sync`: the synchronous backends (``send_now``);
- :mod:`~sendwell.delivery.queued`: the outbox worker (``deliver`` a claimed message);
- :mod:`~sendwell.delivery.claims`: which worker holds a queued message, and its lease;
- :mod:`~sendwell.delivery.circuit`: the failover circuit breaker;
- :mod:`~sendwell.delivery.suppress`: the suppression step every message takes;
- :mod:`~sendwell.delivery.records`: the recorder, the one writer of the delivery's rows.

Pacing (:mod:`sendwell.pacing`), error classification (the transports), the retry decision
(:mod:`sendwell.retry`) and recording therefore exist once.
"""

from sendwell.delivery.claims import claim, worker_name
from sendwell.delivery.queued import CLAIM_LOST, Outcome, deliver
from sendwell.delivery.records import Queued, SyncRecords, build_record, save_queued
from sendwell.delivery.route import Route
from sendwell.delivery.sync import SyncSend, begin_send, send_now

__all__ = [
    "CLAIM_LOST",
    "Outcome",
    "Queued",
    "Route",
    "SyncRecords",
    "SyncSend",
    "begin_send",
    "build_record",
    "claim",
    "deliver",
    "save_queued",
    "send_now",
    "worker_name",
]
