"""Client-side cost per message of each backend, without any SES server, and sendwell's breakdown.

Run from the repository root::

    .venv/bin/python benchmarks/client_cost.py [--messages 300] [--repeat 5] [--db file|memory]
        [--sync-concurrency 4]

``bench_backends.py`` measures throughput against moto, whose own per-request CPU time bounds
every backend and whose noise hides small differences. This script removes the server: every
boto3 client answers ``SendEmail`` in-process (botocore's ``before-send`` event returns a canned
``200 {"MessageId": ...}``), so what is left is each backend's own work per message: building the
MIME, botocore's serialising and signing, and, for sendwell, its records and rate limiter.

Then it times sendwell's stages (by wrapping the functions of ``sendwell.delivery``,
``sendwell.ratelimit`` and ``sendwell.transports.ses`` that exist in this version) to show where
its time goes (a stage that runs on sendwell's sending threads, ``SESTransport.send()``, then
also counts the time those threads wait for the GIL). Nothing leaves the process; no network is
used.
"""

from __future__ import annotations

import argparse
import collections
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_backends as bench  # (it sets the AWS_* environment first)


class _Body:
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield f'{{"MessageId": "{uuid.uuid4()}"}}'.encode()


def _answer(request: Any, **kwargs: Any) -> Any:
    import botocore.awsrequest  # noqa: PLC0415

    headers = {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}
    return botocore.awsrequest.AWSResponse(request.url, 200, headers, _Body())


def answer_in_process() -> None:
    """Make every botocore client created from now on answer its own requests."""
    import botocore.session  # noqa: PLC0415

    create_client = botocore.session.Session.create_client

    def create_answering_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-send", _answer)
        return client

    botocore.session.Session.create_client = create_answering_client  # type: ignore[method-assign]


def empty_sendwell_tables() -> None:
    from django.apps import apps  # noqa: PLC0415

    for model in apps.get_app_config("sendwell").get_models():
        model.objects.all().delete()


def per_message_us(backend: bench.Backend, count: int) -> tuple[float, float]:
    """(wall, CPU) microseconds per message for ``count`` messages over one connection."""
    from django.utils.module_loading import import_string  # noqa: PLC0415

    empty_sendwell_tables()
    backend_class = import_string(backend.path)
    messages = [bench.new_message(index) for index in range(count)]
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    with backend_class() as conn:
        sent = conn.send_messages(messages)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if sent != count:
        raise RuntimeError(f"{backend.name} sent {sent} of {count}")
    return 1e6 * wall / count, 1e6 * cpu / count


# sendwell's stages: (module, class or "", function, label); missing ones are skipped, since
# sendwell's code moves on and this script should keep working.
STAGES = [
    # The layout since issue 8 (a delivery package): wrapped where the callers look them up.
    ("sendwell.delivery.sync", "", "build_record", "build_record: prepare(), check, Message()"),
    ("sendwell.delivery.records", "", "prepare", "  of which prepare(): MIME + envelope addresses"),
    ("sendwell.delivery.records", "SyncRecords", "add", "SyncRecords.add(): build the rows"),
    ("sendwell.delivery.records", "SyncRecords", "flush", "SyncRecords.flush(): INSERTs"),
    ("sendwell.delivery.suppress", "", "split", "suppression: the one query per message"),
    ("sendwell.feedback", "", "link_early_events", "  of flush(): early SES events to link"),
    # Before it (delivery.py):
    ("sendwell.delivery", "", "build_record", "build_record: prepare(), size check, Message()"),
    ("sendwell.delivery", "", "prepare", "  of which prepare(): MIME + envelope addresses"),
    ("sendwell.pacing", "Pacer", "acquire", "pacing: Pacer.acquire() (limits, slot)"),
    ("sendwell.delivery", "", "wait_for_slot", "rate limiter: wait_for_slot()"),
    ("sendwell.ratelimit", "BlockLimiter", "reserve", "  BlockLimiter.reserve()"),
    ("sendwell.ratelimit", "DatabaseRateLimiter", "reserve", "  DatabaseRateLimiter.reserve()"),
    ("sendwell.ratelimit", "DatabaseRateLimiter", "refund", "  DatabaseRateLimiter.refund()"),
    ("sendwell.quota", "", "current_limits", "quota.current_limits()"),
    ("sendwell.transports.ses", "SESTransport", "send", "SESTransport.send(): botocore"),
    ("sendwell.delivery", "SyncRecords", "add", "SyncRecords.add(): build the rows"),
    ("sendwell.delivery", "SyncRecords", "flush", "SyncRecords.flush(): INSERTs, once per batch"),
    # Older layouts of the synchronous path (before its records were batched):
    ("sendwell.delivery", "", "save_records", "save_records: INSERT message, recipients"),
    ("sendwell.delivery", "", "deliver", "deliver(): limiter, send, record"),
    ("sendwell.delivery", "", "_record_chunk", "  _record_chunk: UPDATE recipients, INSERT"),
    ("sendwell.delivery", "", "_finish_sent", "  _finish_sent: UPDATE message"),
]


def wrap_stages(totals: dict[str, float]) -> None:
    import importlib  # noqa: PLC0415

    wrapped: set[Any] = set()
    for module_name, class_name, function_name, label in STAGES:
        try:
            owner: Any = importlib.import_module(module_name)
            if class_name:
                owner = getattr(owner, class_name)
            function = getattr(owner, function_name)
        except (ImportError, AttributeError):
            continue
        if function in wrapped:
            continue  # the same function under an older name (a package re-exports it)
        timed = _timed(function, label, totals)
        wrapped.add(timed)
        setattr(owner, function_name, timed)


def _timed(function: Callable[..., Any], label: str, totals: dict[str, float]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start

    return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", choices=["file", "memory"], default="file")
    parser.add_argument(
        "--sync-concurrency",
        type=int,
        default=4,
        help="sendwell's SES calls in flight (4, as shipped; 1: one after another). With answers "
        "in-process there is no wait to overlap: this shows what the thread pool costs.",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sendwell-cost-") as directory:
        name = str(Path(directory) / "cost.sqlite3") if args.db == "file" else ":memory:"
        # Nothing listens there: every client answers in-process.
        setup = bench.Setup(
            "http://127.0.0.1:9",
            bench.sqlite_database(name),
            sync_concurrency=args.sync_concurrency,
        )
        bench.configure_django(setup)
        bench.quiet_deprecations()
        answer_in_process()
        for backend in bench.BACKENDS:  # warm-up
            per_message_us(backend, 5)
        runs: dict[str, list[tuple[float, float]]] = {b.name: [] for b in bench.BACKENDS}
        for _ in range(args.repeat):
            for backend in bench.BACKENDS:
                runs[backend.name].append(per_message_us(backend, args.messages))
        print(
            f"Client-side cost per message, {args.messages} messages over one connection, "
            f"median of {args.repeat} (SendEmail answered in-process; sendwell's records in "
            f"SQLite {args.db}; sendwell's SES calls in flight: {args.sync_concurrency}):"
        )
        print(f"{'backend':<11} {'wall us/msg':>12} {'CPU us/msg':>11} {'vs sendwell':>12}")
        sendwell_wall = statistics.median(wall for wall, _ in runs["sendwell"])
        for backend in bench.BACKENDS:
            wall = statistics.median(w for w, _ in runs[backend.name])
            cpu = statistics.median(c for _, c in runs[backend.name])
            print(f"{backend.name:<11} {wall:>12.0f} {cpu:>11.0f} {wall / sendwell_wall:>11.2f}x")

        totals: dict[str, float] = collections.defaultdict(float)
        wrap_stages(totals)
        per_message_us(bench.BY_NAME["sendwell"], 5)
        stages: dict[str, list[float]] = collections.defaultdict(list)
        walls = []
        for _ in range(args.repeat):
            totals.clear()
            walls.append(per_message_us(bench.BY_NAME["sendwell"], args.messages)[0])
            for label, seconds in totals.items():
                if seconds:
                    stages[label].append(1e6 * seconds / args.messages)
        print()
        print(
            f"sendwell, where the time goes (median us/msg; total {statistics.median(walls):.0f}):"
        )
        for label in dict.fromkeys(label for *_, label in STAGES):  # each label once
            if label in stages:
                print(f"  {label:<58} {statistics.median(stages[label]):>7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
