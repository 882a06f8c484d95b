"""Rate precision of the outbox, and its throughput against django-ses, on one SES endpoint.

Run from the repository root::

    .venv/bin/python benchmarks/bench_outbox_rate.py [--messages 3000] [--workers 4]
        [--rate 100] [--latency 0.05] [--engines sqlite,postgres] [--django-ses-messages 500]

One fault-injecting SES endpoint (``python -m testservers.fake_ses``) answers every send
after ``--latency`` seconds and reports a ``MaxSendRate`` of ``--rate`` through ``GetAccount``.
It *enforces* that rate (``--enforce-rate``): a send that would make any rolling second hold more
than ``--rate`` recipients is refused with SES's own throttling error, and counted. sendwell is
not told the rate: it reads it from ``GetAccount``, as in production (``MAX_24_HOUR_SEND`` is
left to the endpoint too: 10 million).

For each engine, ``--messages`` messages (one recipient each) are queued through
``sendwell.backends.OutboxBackend`` (``--enqueue-batch`` per ``send_messages()``, so one delivery
task each) while ``--workers`` task-worker processes are running, and delivered by them:

* ``sqlite``: django-tasks-db's ``db_worker`` on SQLite (WAL, ``transaction_mode=IMMEDIATE``),
  the database rate limiter: the embedded default, one machine, no other service;
* ``postgres``: PostgreSQL for the outbox, Redis for the tasks (django-tasks-rq, ``rqworker``)
  and the rate limiter: the several-machine setup.

Every figure comes from the endpoint's own record (``received_at`` of each accepted message):
rates over the whole run (first to last arrival) and its steady part (the middle 80 % of the
arrivals), the largest count in a calendar second and in any rolling second, the seconds over
the limit, the endpoint's refusals, duplicates and losses (by recipient address).

Then django-ses 4 sends ``--django-ses-messages`` messages serially over one connection (its
``SESBackend``, SES v2, its default ``AWS_SES_AUTO_THROTTLE=0.5`` reading ``GetAccount``) to the
same endpoint: it is bounded by the latency, sendwell by the account's rate.

Targets (the exit status is 1 if any fails): for each engine, the steady rate is at least 95 % of
the limit; no calendar or rolling second holds more than the limit; the endpoint refused nothing;
no message is duplicated or lost and every outbox row ends ``sent``; and sendwell delivers faster
than django-ses.

This is a benchmark script, not a test; it needs the ``test`` and ``bench`` extras, and the
``redis-server`` and PostgreSQL binaries for the ``postgres`` engine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import outbox_harness as h

ENGINES = ("sqlite", "postgres")


def run_engine(
    engine: str, fake: h.FakeSESProcess, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """Queue and deliver ``args.messages`` with ``engine``; return the figures."""
    from testservers.postgres import PostgresServer  # noqa: PLC0415
    from testservers.redis import RedisServer  # noqa: PLC0415

    sendwell: dict[str, Any] = {}
    if args.rate_fraction is not None:
        sendwell["RATE_FRACTION"] = args.rate_fraction
    extra = {"SENDWELL_BENCH_SES_URL": fake.endpoint_url}
    servers: list[Any] = []
    with h.processes() as procs:
        try:
            if engine == "postgres":
                postgres = PostgresServer()
                servers.append(postgres)
                postgres.start()
                redis = RedisServer()
                servers.append(redis)
                redis.start()
                extra.update(
                    SENDWELL_BENCH_DATABASE=postgres.dsn,
                    SENDWELL_BENCH_TASKS="rq",
                    SENDWELL_BENCH_REDIS_URL=redis.url,
                )
                sendwell.update(RATE_LIMITER="redis", REDIS_URL=redis.url.removesuffix("/0") + "/1")
                kind = "rq"
            else:
                extra["SENDWELL_BENCH_DATABASE"] = f"sqlite:{tmp / 'outbox.sqlite3'}"
                kind = "db"
            extra["SENDWELL_BENCH_SENDWELL"] = json.dumps(sendwell)
            env = h.isolated_environ(extra)
            h.run_driver(["migrate"], env)
            fake.reset()
            workers = [
                procs.start(h.worker_command(kind), env, log=tmp / f"{engine}-worker-{i}.log")
                for i in range(args.workers)
            ]
            worker_pids = [w.pid for w in workers]
            time.sleep(args.warmup)  # let the workers import Django and start polling
            cpu_before = sum(h.cpu_seconds(w.pid) for w in workers)
            load_before = h.loadavg()
            enqueued = h.run_driver(
                ["enqueue", "--count", str(args.messages), "--batch", str(args.enqueue_batch)],
                env,
            )
            budget = args.messages / args.rate * 3 + 60
            fake.wait_for(args.messages, timeout=budget, idle=30)
            worker_cpu = sum(h.cpu_seconds(w.pid) for w in workers) - cpu_before
            peak_rss = max(h.proc_status(w.pid).get("VmHWM", 0) for w in workers)
            load_after = h.loadavg()
            outbox = h.run_driver(["outbox", "--settle", "15"], env)
        finally:
            procs.stop_all()
            for server in servers:
                server.stop()
    messages = fake.messages()
    stats = fake.stats()
    figures = h.arrival_figures([m.received_at for m in messages], args.rate)
    figures.update(h.delivery_figures(messages, set(h.recipients("user", args.messages))))
    figures.update(
        engine=engine,
        refused=sum(stats["refused"].values()),
        refused_by_reason=stats["refused"],
        send_requests=stats["send_requests"],
        statuses=outbox["statuses"],
        attempts=outbox["attempts"],
        enqueue_seconds=enqueued["finished"] - enqueued["started"],
        end_to_end_rate=figures["count"] / (figures["last"] - enqueued["started"]),
        worker_cpu_ms=1000 * worker_cpu / max(figures["count"], 1),
        peak_rss_mb=peak_rss / 1024,
        load=f"{load_before} -> {load_after}",
        # For analyses of the run (benchmarks/bench_learned_rate.py's ramp-up breakdown).
        enqueue_started=enqueued["started"],
        enqueue_batches=enqueued.get("batches", []),
        worker_pids=worker_pids,
        database=extra["SENDWELL_BENCH_DATABASE"],
    )
    return figures


def run_django_ses(fake: h.FakeSESProcess, args: argparse.Namespace) -> dict[str, Any]:
    fake.reset()
    env = h.isolated_environ({"SENDWELL_BENCH_SES_URL": fake.endpoint_url})
    result = h.run_driver(
        ["django-ses", "--count", str(args.django_ses_messages), "--url", fake.endpoint_url],
        env,
        timeout=args.django_ses_messages * (args.latency + 0.5) + 120,
    )
    messages = fake.messages()
    figures = h.arrival_figures([m.received_at for m in messages], args.rate)
    figures.update(h.delivery_figures(messages, set(h.recipients("djses", result["sent"]))))
    figures.update(
        engine="django-ses",
        refused=sum(fake.stats()["refused"].values()),
        wall_rate=result["sent"] / (result["finished"] - result["started"]),
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="the account's MaxSendRate")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per SES call")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--enqueue-batch", type=int, default=100)
    parser.add_argument("--django-ses-messages", type=int, default=500, help="0: skip django-ses")
    parser.add_argument(
        "--rate-fraction",
        type=float,
        default=None,
        help="SENDWELL['RATE_FRACTION'] for the workers (default: sendwell's own default)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds for workers to start")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the logs' temporary directory")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {sorted(unknown)}; choose from {ENGINES}")

    print("Outbox rate precision: sendwell vs django-ses on the fault-injecting SES endpoint")
    h.print_machine()
    from sendwell.conf import DEFAULTS  # noqa: PLC0415 - after the path is set up

    fraction = args.rate_fraction if args.rate_fraction is not None else DEFAULTS["RATE_FRACTION"]
    print(
        f"  endpoint: MaxSendRate {args.rate:g}/s enforced over every rolling second, "
        f"{args.latency * 1000:g} ms per send; {args.messages} messages, {args.workers} workers; "
        f"RATE_FRACTION {fraction:g}"
        + (" (sendwell's default)" if args.rate_fraction is None else "")
    )
    tmp = Path(tempfile.mkdtemp(prefix="sendwell-bench-rate-"))
    results: list[dict[str, Any]] = []
    with h.processes() as procs:
        try:
            fake = h.start_fake_ses(
                procs, rate=args.rate, quota=10_000_000, latency=args.latency, enforce_rate=True
            )
            for engine in engines:
                print(f"\n[{engine}] queueing and delivering {args.messages} messages", flush=True)
                results.append(run_engine(engine, fake, args, tmp))
            if args.django_ses_messages:
                print(f"\n[django-ses] sending {args.django_ses_messages} messages ...", flush=True)
                results.append(run_django_ses(fake, args))
        finally:
            procs.stop_all()
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
    return report(results, args)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    limit = args.rate
    rows = [
        (
            "run", "messages", "steady/s", "overall/s", "of limit", "max/s", "max rolling s",
            "s over", "refused", "dup", "lost",
        )
    ]  # fmt: skip
    for r in results:
        rows.append(
            (
                r["engine"],
                str(r["count"]),
                f"{r['steady_rate']:.1f}",
                f"{r['overall_rate']:.1f}",
                f"{r['steady_rate'] / limit:.1%}",
                str(r["max_per_second"]),
                str(r["max_sliding_second"]),
                str(r["seconds_over"] + r["sliding_windows_over"]),
                str(r["refused"]),
                str(r["duplicates"]),
                str(r["lost"]),
            )
        )
    h.print_table(f"Delivery at a limit of {limit:g}/s (figures from the endpoint's record)", rows)
    sendwell = [r for r in results if r["engine"] in ENGINES]
    if sendwell:
        details = [("run", "end-to-end/s", "enqueue s", "worker CPU/msg", "peak RSS", "statuses")]
        for r in sendwell:
            details.append(
                (
                    r["engine"],
                    f"{r['end_to_end_rate']:.1f}",
                    f"{r['enqueue_seconds']:.1f}",
                    f"{r['worker_cpu_ms']:.1f} ms",
                    f"{r['peak_rss_mb']:.0f} MB",
                    " ".join(f"{k}={v}" for k, v in sorted(r["statuses"].items()))
                    + " | attempts "
                    + " ".join(f"{k}={v}" for k, v in sorted(r["attempts"].items())),
                )
            )
        h.print_table("sendwell details (end-to-end: first enqueue to last arrival)", details)
        for r in sendwell:
            print(f"  load average during {r['engine']}: {r['load']}")

    checks: list[tuple[str, bool]] = []
    for r in sendwell:
        name = r["engine"]
        checks += [
            (f"{name}: steady rate >= 95% of the limit", r["steady_rate"] >= 0.95 * limit),
            (
                f"{name}: no second over the limit (calendar and rolling)",
                r["seconds_over"] == 0 and r["sliding_windows_over"] == 0,
            ),
            (f"{name}: the endpoint refused nothing", r["refused"] == 0),
            (
                f"{name}: every message exactly once, every row sent",
                r["duplicates"] == 0
                and r["lost"] == 0
                and r["statuses"] == {"sent": args.messages},
            ),
        ]
    djses = next((r for r in results if r["engine"] == "django-ses"), None)
    if djses is not None and sendwell:
        best = min(r["steady_rate"] for r in sendwell)
        ratio = best / djses["steady_rate"]
        print(
            f"\n  django-ses: {djses['steady_rate']:.1f}/s ({djses['wall_rate']:.1f}/s wall clock,"
            f" {djses['count']} messages, bounded by {args.latency * 1000:g} ms per call)"
        )
        print(f"  sendwell / django-ses: {ratio:.1f}x (slowest sendwell engine, steady rate)")
        checks.append(("sendwell delivers faster than django-ses", ratio > 1.0))
    print()
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        args.json.write_text(json.dumps({"machine": h.machine(), "results": results}, indent=2))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
