"""Memory and scale of the outbox: a worker's RSS while it drains 20,000 messages, and the cost and
query plan of the queries that pick work at 1,000 and 50,000 rows.

Run from the repository root::

    .venv/bin/python benchmarks/bench_outbox_scale.py [--messages 20000]
        [--sizes 1000,50000] [--databases sqlite,postgres] [--skip-memory] [--skip-claim]

Memory: ``--messages`` messages (one recipient each) are queued through
``sendwell.backends.OutboxBackend`` on SQLite (WAL), then one django-tasks-db ``db_worker``
process with sendwell's default ``CONCURRENCY`` (8 threads) and ``BATCH_SIZE`` (50) delivers them
to the fake SES endpoint (no latency, no enforced rate; ``MAX_SEND_RATE`` 2000/s). Its resident
memory is read from ``/proc/<pid>/status`` twice a second: ``VmHWM`` (the peak) and ``VmRSS``
against the number of messages delivered so far.

Claim queries: the ``sendwell_message`` table is filled to each of ``--sizes`` rows: 100 due
(``queued``, ``next_attempt_at`` in the past), 100 ``deferred`` to the future, the rest ``sent``.
``sendwell.delivery.claim(50, ...)`` (the query that picks work) and
``sendwell.worker.next_due_at()`` (the one that schedules the next wake-up) are timed
(``--repeat`` times, the claimed rows put back after each), and every statement they run is
explained with its real parameters (``EXPLAIN QUERY PLAN`` on SQLite; ``EXPLAIN`` on PostgreSQL,
after ``ANALYZE`` as autovacuum would have run it).

Targets (the exit status is 1 if any fails): the worker's peak RSS stays under 150 MB and grows by
less than 15 MB from 10 % to 100 % of the drain; every message is delivered once; at every size
and on every database the due-picking queries use the partial index ``sendwell_message_due``, and
the median claim at the largest size takes at most twice as long as at the smallest.

This is a benchmark script, not a test; it needs the ``test`` extra, and the PostgreSQL binaries
for ``--databases postgres``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import outbox_harness as h

RSS_LIMIT_MB = 150.0
RSS_GROWTH_MB = 15.0
DUE_INDEX = "sendwell_message_due"


# --- memory ---------------------------------------------------------------------------------


def run_memory(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    samples: list[tuple[float, int, int]] = []  # (seconds, delivered, VmRSS kB)
    with h.processes() as procs:
        fake = h.start_fake_ses(
            procs, rate=100_000, quota=100_000_000, latency=0.0, enforce_rate=False
        )
        env = h.isolated_environ(
            {
                "SENDWELL_BENCH_SES_URL": fake.endpoint_url,
                "SENDWELL_BENCH_DATABASE": f"sqlite:{tmp / 'memory.sqlite3'}",
                "SENDWELL_BENCH_SENDWELL": json.dumps(
                    {"MAX_SEND_RATE": 2000, "MAX_24_HOUR_SEND": 100_000_000}
                ),
            }
        )
        h.run_driver(["migrate"], env)
        enqueued = h.run_driver(
            ["enqueue", "--count", str(args.messages), "--batch", str(args.enqueue_batch)], env
        )
        worker = procs.start(h.worker_command("db"), env, log=tmp / "memory-worker.log")
        started = time.monotonic()
        deadline = started + args.timeout
        delivered = 0
        while time.monotonic() < deadline and worker.poll() is None:
            delivered = int(fake.stats()["accepted"])
            status = h.proc_status(worker.pid)
            samples.append((time.monotonic() - started, delivered, status.get("VmRSS", 0)))
            if delivered >= args.messages:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        final = h.proc_status(worker.pid)
        cpu = h.cpu_seconds(worker.pid)
        outbox = h.run_driver(["outbox", "--settle", "15"], env)
        messages = fake.messages()
    figures = h.delivery_figures(messages, set(h.recipients("user", args.messages)))

    def rss_at(fraction: float) -> float:
        wanted = fraction * args.messages
        for _, done, rss in samples:
            if done >= wanted and rss:
                return rss / 1024
        return samples[-1][2] / 1024 if samples else 0.0

    arrivals = h.arrival_figures([m.received_at for m in messages], 1e9)
    return {
        "messages": args.messages,
        "delivered": len(messages),
        "enqueue_seconds": enqueued["finished"] - enqueued["started"],
        "drain_seconds": elapsed,
        "drain_rate": arrivals.get("overall_rate", 0.0),
        "worker_cpu_ms": 1000 * cpu / max(len(messages), 1),
        "peak_rss_mb": final.get("VmHWM", 0) / 1024,
        "rss_mb": {f"{p:.0%}": rss_at(p) for p in (0.01, 0.1, 0.25, 0.5, 0.75, 1.0)},
        "threads": final.get("Threads", 0),
        "statuses": outbox["statuses"],
        **figures,
    }


# --- claim queries (the child process) ------------------------------------------------------


def _child_claim(argv: list[str]) -> int:
    """In a child with Django configured: fill, time and explain each scenario; print JSON.

    Scenarios, in order (each builds on the table the previous one left): the table at each of
    ``--sizes`` rows with 100 due; then at the largest size a backlog (20,000 due); then, on
    SQLite, the 100-due table again after ``ANALYZE`` (which a site may run, e.g. through
    ``PRAGMA optimize``; PostgreSQL is always measured with statistics, as autovacuum keeps them).
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--backlog", type=int, default=20_000)
    args = parser.parse_args(argv)

    import django  # noqa: PLC0415

    django.setup()
    from django.core.management import call_command  # noqa: PLC0415
    from django.db import connection  # noqa: PLC0415

    call_command("migrate", verbosity=0, interactive=False)
    sqlite = connection.vendor == "sqlite"
    sizes = sorted(int(s) for s in args.sizes.split(","))
    results = []
    for size in sizes:
        _fill(size, due=100, future=100)
        results.append(_measure(f"{size} rows", args.repeat, gate=True))
    if args.backlog:
        _set_backlog(args.backlog)
        results.append(_measure(f"{sizes[-1]} rows, {args.backlog} due", args.repeat, gate=False))
        _set_backlog(0)
    if sqlite:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        results.append(_measure(f"{sizes[-1]} rows, after ANALYZE", args.repeat, gate=False))
    print(json.dumps(results))
    return 0


def _fill(total: int, due: int, future: int) -> None:
    from datetime import timedelta  # noqa: PLC0415

    from django.utils import timezone  # noqa: PLC0415

    from sendwell.models import Message, MessageStatus  # noqa: PLC0415

    existing = Message.objects.count()
    now = timezone.now()
    raw = b"From: sender@example.com\r\nTo: user@example.net\r\nSubject: receipt\r\n\r\n" + (
        b"x" * 700
    )
    rows = []
    for index in range(existing, total):
        created = now - timedelta(seconds=(total - index) * 5)
        if index < due:
            status, next_at = MessageStatus.QUEUED, now - timedelta(seconds=60 - index % 60)
        elif index < due + future:
            status, next_at = MessageStatus.DEFERRED, now + timedelta(hours=1, seconds=index)
        else:
            status, next_at = MessageStatus.SENT, None
        rows.append(
            Message(
                created_at=created,
                mailer="default",
                transport="ses",
                from_email="sender@example.com",
                subject=f"Receipt {index}",
                raw=raw,
                status=status,
                next_attempt_at=next_at,
                sent_at=created if status == MessageStatus.SENT else None,
                delivered_by="ses" if status == MessageStatus.SENT else "",
                ses_message_ids=["0100-bench"] if status == MessageStatus.SENT else [],
            )
        )
    Message.objects.bulk_create(rows, batch_size=2000)


def _set_backlog(extra: int) -> None:
    """Turn ``extra`` sent rows into due ones (a backlog), or (0) turn them back."""
    from datetime import timedelta  # noqa: PLC0415

    from django.utils import timezone  # noqa: PLC0415

    from sendwell.models import Message, MessageStatus  # noqa: PLC0415

    backlog = Message.objects.filter(subject__startswith="Backlog ")
    if not extra:
        backlog.update(status=MessageStatus.SENT, next_attempt_at=None, subject="Receipt")
        return
    sent = Message.objects.filter(status=MessageStatus.SENT)
    ids = list(sent.values_list("pk", flat=True)[: extra - 100])
    Message.objects.filter(pk__in=ids).update(
        status=MessageStatus.QUEUED,
        next_attempt_at=timezone.now() - timedelta(minutes=5),
        subject="Backlog ",
    )


def _explain(sql: str, params: Any) -> list[str]:
    from django.db import connection, transaction  # noqa: PLC0415

    # EXPLAIN of SELECT ... FOR UPDATE wants a transaction; EXPLAIN (no ANALYZE) runs nothing.
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return [str(row[-1]) for row in cursor.fetchall()]
        cursor.execute(f"EXPLAIN {sql}", params)
        return [str(row[0]) for row in cursor.fetchall()]


def _measure(label: str, repeat: int, *, gate: bool) -> dict[str, Any]:
    from datetime import timedelta  # noqa: PLC0415

    from django.db import connection  # noqa: PLC0415
    from django.utils import timezone  # noqa: PLC0415

    from sendwell.delivery import claim  # noqa: PLC0415
    from sendwell.models import Message, MessageStatus  # noqa: PLC0415
    from sendwell.worker import next_due_at  # noqa: PLC0415

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE sendwell_message")

    def put_back(ids: list[int]) -> None:
        Message.objects.filter(pk__in=ids).update(
            status=MessageStatus.QUEUED,
            claimed_by="",
            next_attempt_at=timezone.now() - timedelta(seconds=30),
        )

    claim_times, due_times = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        claimed = claim(50, "bench")
        claim_times.append(time.perf_counter() - started)
        assert len(claimed) == 50, len(claimed)
        put_back([m.pk for m in claimed])
        started = time.perf_counter()
        next_due_at()
        due_times.append(time.perf_counter() - started)

    statements: list[tuple[str, Any, bool]] = []  # (sql, params, picks work)

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        # What picks work: claim()'s statements with the due condition, and next_due_at().
        picks = picking_due or '"next_attempt_at" <=' in sql
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
            statements.append((sql, params, picks))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        picking_due = False
        claimed = claim(50, "bench")
        picking_due = True
        next_due_at()
    put_back([m.pk for m in claimed])
    plans = [
        {"sql": sql, "plan": _explain(sql, params), "picks_work": picks}
        for sql, params, picks in statements
    ]
    return {
        "label": label,
        "gate": gate,
        "vendor": connection.vendor,
        "rows": Message.objects.count(),
        "due": Message.objects.filter(next_attempt_at__lte=timezone.now()).count(),
        "claim_ms": [t * 1000 for t in claim_times],
        "next_due_ms": [t * 1000 for t in due_times],
        "plans": plans,
    }


def run_claims(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from testservers.postgres import PostgresServer  # noqa: PLC0415

    results: list[dict[str, Any]] = []
    for database in args.databases.split(","):
        server = None
        try:
            if database == "postgres":
                server = PostgresServer()
                server.start()
                url = server.dsn
            else:
                url = f"sqlite:{tmp / 'claim.sqlite3'}"
            command = [
                "_claim",
                "--sizes", args.sizes,
                "--repeat", str(args.repeat),
                "--backlog", str(args.backlog),
            ]  # fmt: skip
            output = h.run_driver(
                command,
                h.isolated_environ({"SENDWELL_BENCH_DATABASE": url}),
                script=Path(__file__).resolve(),
            )
            for result in output:
                result["database"] = database
                results.append(result)
        finally:
            if server is not None:
                server.stop()
    return results


# --- the report -----------------------------------------------------------------------------


def report(memory: dict[str, Any] | None, claims: list[dict[str, Any]]) -> int:
    checks: list[tuple[str, bool]] = []
    if memory is not None:
        rows = [("delivered", "RSS at " + " / ".join(memory["rss_mb"]), "peak RSS", "drain")]
        rows.append(
            (
                f"{memory['delivered']} of {memory['messages']}",
                " / ".join(f"{v:.0f}" for v in memory["rss_mb"].values()) + " MB",
                f"{memory['peak_rss_mb']:.1f} MB",
                f"{memory['drain_rate']:.0f} msg/s, {memory['worker_cpu_ms']:.1f} ms CPU/msg, "
                f"{memory['threads']} threads",
            )
        )
        h.print_table("Memory: one db_worker draining the outbox (SQLite)", rows)
        print(
            f"  enqueue: {memory['enqueue_seconds']:.1f} s for {memory['messages']} messages; "
            f"statuses: {memory['statuses']}; duplicates {memory['duplicates']}, "
            f"lost {memory['lost']}"
        )
        growth = memory["rss_mb"]["100%"] - memory["rss_mb"]["10%"]
        checks += [
            (
                f"worker peak RSS {memory['peak_rss_mb']:.0f} MB < {RSS_LIMIT_MB:.0f} MB",
                memory["peak_rss_mb"] < RSS_LIMIT_MB,
            ),
            (
                f"worker RSS flat: +{growth:.1f} MB from 10% to 100% (< {RSS_GROWTH_MB:.0f} MB)",
                growth < RSS_GROWTH_MB,
            ),
            (
                "every message delivered exactly once",
                memory["duplicates"] == 0
                and memory["lost"] == 0
                and memory["statuses"] == {"sent": memory["messages"]},
            ),
        ]
    if claims:
        rows = [("database", "table", "due", "claim(50) median", "p90", "next_due_at", "plan")]
        for c in claims:
            picking = [p for p in c["plans"] if p["picks_work"]]
            c["uses_index"] = bool(picking) and all(
                DUE_INDEX in " ".join(p["plan"]) for p in picking
            )
            claim_ms = sorted(c["claim_ms"])
            rows.append(
                (
                    c["database"],
                    c["label"],
                    str(c["due"]),
                    f"{statistics.median(claim_ms):.2f} ms",
                    f"{claim_ms[int(len(claim_ms) * 0.9)]:.2f} ms",
                    f"{statistics.median(c['next_due_ms']):.2f} ms",
                    "uses " + DUE_INDEX if c["uses_index"] else _plan_summary(picking),
                )
            )
        h.print_table("Claim queries (the claimed rows are put back after each run)", rows)
        for c in claims:
            print(f"\n  {c['database']}, {c['label']}: query plans")
            for p in c["plans"]:
                sql = " ".join(p["sql"].split())
                mark = "picks work: " if p["picks_work"] else ""
                print(f"    {mark}{sql[:140]}{' ...' if len(sql) > 140 else ''}")
                for line in p["plan"]:
                    print(f"      | {line}")
        for database in dict.fromkeys(c["database"] for c in claims):
            gated = [c for c in claims if c["database"] == database and c["gate"]]
            small, large = gated[0], gated[-1]
            ratio = statistics.median(large["claim_ms"]) / statistics.median(small["claim_ms"])
            checks += [
                (
                    f"{database}: the queries that pick work use {DUE_INDEX} "
                    f"({', '.join(c['label'] for c in gated)})",
                    all(c["uses_index"] for c in gated),
                ),
                (
                    f"{database}: claim at {large['label']} takes {ratio:.2f}x its time at "
                    f"{small['label']} (<= 2x)",
                    ratio <= 2.0,
                ),
            ]
    print()
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(ok for _, ok in checks) else 1


def _plan_summary(plans: list[dict[str, Any]]) -> str:
    """What the work-picking statements use instead of the partial index."""
    used = []
    for plan in plans:
        for line in plan["plan"]:
            for word in ("USING INDEX ", "using ", "SCAN "):
                if word in line:
                    used.append(line.split(word, 1)[1].split()[0])
    return "NOT the partial index: " + ", ".join(dict.fromkeys(used))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_claim"]:
        return _child_claim(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--enqueue-batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=600.0, help="for the drain")
    parser.add_argument("--sizes", default="1000,50000")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--backlog", type=int, default=20_000, help="0: skip that scenario")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-claim", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    print("Outbox memory and scale")
    h.print_machine()
    print(f"  load average at start: {h.loadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="sendwell-bench-scale-"))
    memory = None
    claims: list[dict[str, Any]] = []
    try:
        if not args.skip_memory:
            print(f"\n[memory] queueing {args.messages} messages, then draining", flush=True)
            memory = run_memory(args, tmp)
        if not args.skip_claim:
            print(f"\n[claim] {args.databases} at {args.sizes} rows ...", flush=True)
            claims = run_claims(args, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"  load average at end: {h.loadavg()}")
    code = report(memory, claims)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": h.machine(), "memory": memory, "claims": claims}, indent=2)
        )
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
