"""Sending limits as SES really keeps them: learned rate, synchronous wait, readable limits.

Run from the repository root::

    .venv/bin/python benchmarks/bench_learned_rate.py [--scenarios all] [--messages 3000]
        [--sync-messages 300] [--readable-messages 1000,3000] [--django-ses-messages 300]
        [--workers 4] [--json PATH] [--keep]

Every scenario talks to its own ``python -m testservers.fake_ses`` process; every figure of
delivery comes from that endpoint's record (``received_at`` of each accepted message, its counts
of send requests and refusals). sendwell runs with its DEFAULT settings (``SENDWELL = {}``:
nothing pins a rate or a 24-hour cap); where the account's limits are unreadable, both
``GetAccount`` and ``GetSendQuota`` answer IAM's AccessDenied.

``learned-outbox``
    SES-like accounting (``--enforce-ses``: a budget of one second of the rate, a call accepted
    while anything is left) at ``--learned-rate`` (50/s), 50 ms per send, limits unreadable.
    ``--messages`` single-recipient messages are queued through ``OutboxBackend`` and delivered
    by ``--workers`` django-tasks-db ``db_worker`` processes on SQLite. sendwell must learn the
    rate from SES's throttling. Targets: the whole run (first to last arrival) and its steady
    middle 80 % at >= 90 % of the rate; refusals <= 3 % of the send requests; none lost or
    duplicated. Also printed: the learned state (``sendwell_ratebucket.learned``, sampled every
    0.5 s from the SQLite file) at the end and in a timeline beside the arrivals, the refusals
    and how far ahead the shared schedule is booked (``next_free`` minus now: slots already
    handed out at the rate in force when they were taken), the workers' log lines, a ramp-up
    breakdown (as for ``readable``).

``learned-sync``
    ``--sync-messages`` calls of ``send_mail()`` (one recipient each, a new
    ``sendwell.backends.SESBackend`` per call) in one process, against SES-like accounting at
    ``--sync-rate`` (20/s), no added latency, limits unreadable. Targets: first-to-last arrival
    rate >= 85 % of the rate; no exception raised; every message arrived exactly once. SES's
    refusals are counted.

``readable``
    ``GetAccount`` readable at ``--readable-rate`` (100/s), the strict rolling-second check
    (``--enforce-rate``), 50 ms per send, ``--workers`` workers, one run per size of
    ``--readable-messages``: ``bench_outbox_rate.py``'s SQLite run as it is. Targets (as there):
    steady rate >= 95 % of the limit; no calendar or rolling second over it; no refusal; every
    message exactly once, every outbox row sent. Each run also gets a ramp-up breakdown: from
    the first enqueue commit to the first arrival, the rate in the first 1 s / 2 s after it, the
    seconds the head and tail cost against the steady rate, when each delivery task was picked
    up and when each worker process sent its first message (``sendwell_attempt.worker``, the SES
    message ids matched to the endpoint's arrivals), the timeline, and the steps of one fresh
    process's first delivery timed alone before the runs (importing ``sendwell.tasks``, the
    route, the boto3 client, the account limits, the first slot, the first SES calls).

``django-ses``
    django-ses 4's ``SESBackend`` (SES v2) on the same endpoints, for comparison (no targets):
    the ``learned-sync`` loop of ``send_mail()`` against the 20/s endpoint, and
    ``--django-ses-messages`` messages serially over one connection against the
    ``learned-outbox`` endpoint (50/s, 50 ms), each twice: with its default
    ``AWS_SES_AUTO_THROTTLE`` (0.5, which reads the rate with ``GetAccount``: denied here) and
    with it off (``None``). Every exception is caught and reported, with the messages sent, the
    rate and SES's refusals (botocore's own retries of throttling included).

The exit status is 1 if any target fails (or a scenario could not run). This is a benchmark
script, not a test; it needs the ``test`` and ``bench`` extras.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_outbox_rate as rate_bench
import outbox_harness as h

SCENARIOS = ("learned-outbox", "learned-sync", "readable", "django-ses")
QUOTA = 10_000_000  # the endpoint's Max24HourSend: never the limit here


@dataclass
class Check:
    scenario: str
    target: str
    value: str
    ok: bool


# --- the tree and the machine ---------------------------------------------------------------


def revision() -> str:
    """``git rev-parse --short HEAD``, plus ``+dirty`` and the changed tracked files."""

    def git(*command: str) -> str:
        result = subprocess.run(
            ["git", *command], cwd=h.REPO, capture_output=True, text=True, check=False
        )
        return result.stdout.rstrip("\n")

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [
        line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    if not changed:
        return head
    shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
    return f"{head}+dirty ({shown})"


# --- reading a run's SQLite database (without Django) ----------------------------------------


@contextlib.contextmanager
def sqlite_reader(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        yield connection
    finally:
        connection.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the run's database; [] if it (or the table) does not exist yet."""
    if not path.exists():
        return []
    try:
        with sqlite_reader(path) as connection:
            return list(connection.execute(sql).fetchall())
    except sqlite3.Error:
        return []


def unix(text: str | None) -> float | None:
    """A Django DateTimeField as SQLite stores it (naive UTC text) as Unix seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def learned_state(path: Path) -> dict[str, Any] | None:
    """The learned-rate state (``RateState`` as JSON) of the run's only SES account, if any."""
    for _, text in query(path, "SELECT name, learned FROM sendwell_ratebucket ORDER BY name"):
        if text:
            return dict(json.loads(text))
    return None


def account_rows(path: Path) -> list[dict[str, Any]]:
    rows = query(
        path,
        "SELECT name, max_send_rate, max_24_hour_send, fetched_at, error "
        "FROM sendwell_accountquota ORDER BY name",
    )
    return [
        {
            "name": r[0],
            "max_send_rate": r[1],
            "max_24_hour_send": r[2],
            "fetched_at": unix(r[3]),
            "error": r[4],
        }
        for r in rows
    ]


def attempt_rows(path: Path) -> list[dict[str, Any]]:
    rows = query(
        path,
        "SELECT worker, started_at, finished_at, outcome, error_code, ses_message_ids, recipients "
        "FROM sendwell_attempt",
    )
    return [
        {
            "worker": r[0],
            "started": unix(r[1]),
            "finished": unix(r[2]),
            "outcome": r[3],
            "error_code": r[4],
            "ses_ids": json.loads(r[5] or "[]"),
            "recipients": r[6],
        }
        for r in rows
    ]


def task_rows(path: Path) -> list[dict[str, Any]]:
    rows = query(
        path,
        "SELECT enqueued_at, started_at, finished_at, status, worker_ids, return_value "
        "FROM django_tasks_database_dbtaskresult ORDER BY enqueued_at",
    )
    return [
        {
            "enqueued": unix(r[0]),
            "started": unix(r[1]),
            "finished": unix(r[2]),
            "status": r[3],
            "workers": json.loads(r[4] or "[]"),
            "result": json.loads(r[5]) if r[5] else None,
        }
        for r in rows
    ]


# --- sampling during a run -------------------------------------------------------------------


class Sampler:
    """Every ``interval`` s: the endpoint's counters and the learned state in the database."""

    def __init__(self, fake: h.FakeSESProcess, database: Path, interval: float = 0.5) -> None:
        self.fake, self.database, self.interval = fake, database, interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                stats = self.fake.stats()
            except OSError:
                continue
            now = time.time()
            rows = query(self.database, "SELECT next_free FROM sendwell_ratebucket")
            ahead = max((float(r[0]) - now for r in rows if r[0] is not None), default=None)
            self.samples.append(
                {
                    "t": now,
                    # How far ahead the shared schedule is booked: slots already handed out at
                    # the rate in force when they were taken.
                    "schedule_ahead": ahead,
                    "accepted": stats["accepted"],
                    "send_requests": stats["send_requests"],
                    "refused": stats["refused"].get("rate", 0),
                    "budget": stats.get("rate_budget"),
                    "learned": learned_state(self.database),
                }
            )


# --- analyses ---------------------------------------------------------------------------------


def pid_of(worker: str) -> str:
    parts = worker.split(":")
    return parts[1] if len(parts) >= 3 else worker


def per_worker(
    attempts: list[dict[str, Any]], messages: list[h.AcceptedMessage], t0: float
) -> list[dict[str, Any]]:
    """Per worker process (the pid in ``sendwell_attempt.worker``): its drains, attempts, first
    send and arrivals, times relative to ``t0``."""
    arrival = {m.message_id: m.received_at for m in messages}
    workers: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        pid = pid_of(attempt["worker"] or "?")
        entry = workers.setdefault(
            pid,
            {
                "pid": pid,
                "drains": set(),
                "attempts": 0,
                "not_sent": 0,
                "started": [],
                "arrivals": [],
            },
        )
        entry["drains"].add(attempt["worker"])
        entry["attempts"] += 1
        if attempt["outcome"] != "sent":
            entry["not_sent"] += 1
        if attempt["started"] is not None:
            entry["started"].append(attempt["started"])
        entry["arrivals"] += [arrival[i] for i in attempt["ses_ids"] if i in arrival]
    result = []
    for entry in workers.values():
        arrivals = sorted(entry["arrivals"])
        result.append(
            {
                "pid": entry["pid"],
                "drains": len(entry["drains"]),
                "attempts": entry["attempts"],
                "not_sent": entry["not_sent"],
                "first_attempt": min(entry["started"]) - t0 if entry["started"] else None,
                "first_arrival": arrivals[0] - t0 if arrivals else None,
                "last_arrival": arrivals[-1] - t0 if arrivals else None,
                "arrived": len(arrivals),
            }
        )
    return sorted(
        result, key=lambda w: w["first_attempt"] if w["first_attempt"] is not None else 1e9
    )


def rampup(
    figures: dict[str, Any], messages: list[h.AcceptedMessage], database: Path, limit: float
) -> dict[str, Any]:
    """What the start of an outbox run costs: times relative to the first enqueue commit."""
    times = sorted(m.received_at for m in messages)
    batches = figures.get("enqueue_batches") or [figures["enqueue_started"]]
    t0 = batches[0]
    n = len(times)
    if n < 2:
        return {"t0": t0}
    first, last = times[0], times[-1]
    steady = figures["steady_rate"]
    lo, hi = n // 10, n - 1 - n // 10

    def within(seconds: float) -> int:
        return sum(1 for t in times if t < first + seconds)

    # When the rolling second first reaches 90 % of the steady rate.
    reached, i = None, 0
    for j, t in enumerate(times):
        while times[i] <= t - 1.0:
            i += 1
        if t - first >= 1.0 and j - i + 1 >= 0.9 * steady:
            reached = t - first
            break
    buckets = [
        sum(1 for t in times if first + k * 0.25 <= t < first + (k + 1) * 0.25) / 0.25
        for k in range(12)
    ]
    tasks = task_rows(database)
    accounts = account_rows(database)
    return {
        "t0": t0,
        "enqueue_first_commit": t0 - figures["enqueue_started"],
        "enqueue_last_commit": batches[-1] - figures["enqueue_started"],
        "first_arrival_after_commit": first - t0,
        "rate_first_1s": within(1.0) / 1.0,
        "rate_first_2s": within(2.0) / 2.0,
        "rate_per_quarter_second": buckets,
        "steady_rate": steady,
        "overall_rate": figures["overall_rate"],
        "from_commit_rate": (n - 1) / (last - t0),
        "rolling_second_at_90pct_of_steady": reached,
        # Seconds lost against the steady rate, by the first and the last 10 % of the arrivals.
        "head_cost": (times[lo] - first) - lo / steady,
        "tail_cost": (last - times[hi]) - (n - 1 - hi) / steady,
        "start_cost": first - t0,
        "ideal_seconds": n / limit,
        "actual_seconds": last - t0,
        "account_fetched": [
            (a["fetched_at"] - t0 if a["fetched_at"] else None, a["error"]) for a in accounts
        ],
        "tasks": [
            {
                "enqueued": t["enqueued"] - t0 if t["enqueued"] else None,
                "started": t["started"] - t0 if t["started"] else None,
                "finished": t["finished"] - t0 if t["finished"] else None,
                "status": t["status"],
                "result": t["result"],
            }
            for t in tasks
        ],
        "workers": per_worker(attempt_rows(database), messages, t0),
    }


def timeline(
    samples: list[dict[str, Any]], messages: list[h.AcceptedMessage], t0: float
) -> list[dict[str, Any]]:
    """Arrivals, refusals and the learned rate per interval: 1 s for 10 s, then 5 s."""
    if not messages:
        return []
    times = sorted(m.received_at for m in messages)
    end = times[-1]
    edges = [t0 + k for k in range(11)]
    while edges[-1] < end:
        edges.append(edges[-1] + 5.0)
    rows = []
    for start, stop in itertools.pairwise(edges):
        before = [s for s in samples if s["t"] <= start]
        during = [s for s in samples if s["t"] <= stop]
        refused_before = before[-1]["refused"] if before else 0
        sample = during[-1] if during else None
        learned = (sample or {}).get("learned") or {}
        rows.append(
            {
                "from": start - t0,
                "to": stop - t0,
                "arrivals_per_s": sum(1 for t in times if start <= t < stop) / (stop - start),
                "refused": (sample["refused"] if sample else 0) - refused_before,
                "learned_rate": learned.get("rate"),
                "phase": learned.get("phase"),
                "measured": learned.get("measured"),
                "throttles": learned.get("throttles"),
                "schedule_ahead": max(
                    (
                        x["schedule_ahead"]
                        for x in samples
                        if start < x["t"] <= stop and x.get("schedule_ahead") is not None
                    ),
                    default=None,
                ),
            }
        )
    return rows


def worker_logs(run_dir: Path) -> dict[str, Any]:
    """The sendwell log lines (WARNING and up) of the workers, counted and a few shown."""
    lines: list[str] = []
    for log in sorted(run_dir.glob("*-worker-*.log")):
        lines += [line.rstrip() for line in log.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line.strip()]
    distinct = list(dict.fromkeys(lines))
    return {
        "lines": len(lines),
        "tracebacks": sum(1 for line in lines if line.startswith("Traceback")),
        "examples": distinct[:10],
    }


def endpoint_figures(
    fake: h.FakeSESProcess, prefix: str, count: int, limit: float
) -> tuple[dict[str, Any], list[h.AcceptedMessage]]:
    """The endpoint's figures of a run (to ``prefix`` addresses), and its accepted messages."""
    messages = fake.messages()
    stats = fake.stats()
    figures = h.arrival_figures([m.received_at for m in messages], limit)
    figures.update(h.delivery_figures(messages, set(h.recipients(prefix, count))))
    figures.update(
        send_requests=stats["send_requests"],
        account_requests=stats["account_requests"],
        refused=sum(stats["refused"].values()),
        refused_by_reason=stats["refused"],
    )
    return figures, messages


def durations(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max": ordered[-1],
    }


# --- scenarios --------------------------------------------------------------------------------


def outbox_args(args: argparse.Namespace, *, messages: int, rate: float) -> argparse.Namespace:
    """What ``bench_outbox_rate.run_engine`` reads; ``rate_fraction`` None: sendwell's default."""
    return argparse.Namespace(
        messages=messages,
        workers=args.workers,
        rate=rate,
        warmup=args.warmup,
        enqueue_batch=args.enqueue_batch,
        rate_fraction=None,
    )


def cold_start(fake: h.FakeSESProcess, run_dir: Path) -> dict[str, Any]:
    """One fresh process's first delivery steps, alone on the machine, against ``fake`` (on a
    database of its own; the caller resets the endpoint afterwards)."""
    database = run_dir / "cold-start.sqlite3"
    env = h.isolated_environ(
        {
            "SENDWELL_BENCH_SES_URL": fake.endpoint_url,
            "SENDWELL_BENCH_DATABASE": f"sqlite:{database}",
            "SENDWELL_BENCH_SENDWELL": "{}",
        }
    )
    h.run_driver(["migrate"], env)
    result: dict[str, Any] = h.run_driver(["cold-start"], env)
    return result


def run_learned_outbox(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_dir = tmp / "learned-outbox"
    run_dir.mkdir()
    database = run_dir / "outbox.sqlite3"
    with h.processes() as procs:
        fake = h.start_fake_ses(
            procs,
            rate=args.learned_rate,
            quota=QUOTA,
            latency=args.latency,
            enforce_rate="ses",
            get_account="denied",
            get_send_quota="denied",
        )
        cold = cold_start(fake, run_dir)
        with Sampler(fake, database) as sampler:
            figures = rate_bench.run_engine(
                "sqlite",
                fake,
                outbox_args(args, messages=args.messages, rate=args.learned_rate),
                run_dir,
            )
        messages = fake.messages()
    ramp = rampup(figures, messages, database, args.learned_rate)
    figures.update(
        scenario="learned-outbox",
        limit=args.learned_rate,
        cold_start=cold,
        learned=learned_state(database),
        accounts=account_rows(database),
        rampup=ramp,
        timeline=timeline(sampler.samples, messages, ramp["t0"]),
        samples=sampler.samples,
        logs=worker_logs(run_dir),
        attempt_errors=attempt_errors(attempt_rows(database)),
    )
    return figures


def attempt_errors(attempts: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attempt in attempts:
        key = f"{attempt['outcome']} {attempt['error_code'] or ''}".strip()
        counts[key] = counts.get(key, 0) + 1
    return counts


def run_learned_sync(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_dir = tmp / "learned-sync"
    run_dir.mkdir()
    database = run_dir / "sync.sqlite3"
    count = args.sync_messages
    with h.processes() as procs:
        fake = h.start_fake_ses(
            procs,
            rate=args.sync_rate,
            quota=QUOTA,
            latency=0.0,
            enforce_rate="ses",
            get_account="denied",
            get_send_quota="denied",
        )
        env = h.isolated_environ(
            {
                "SENDWELL_BENCH_SES_URL": fake.endpoint_url,
                "SENDWELL_BENCH_DATABASE": f"sqlite:{database}",
                "SENDWELL_BENCH_BACKEND": "ses",
                "SENDWELL_BENCH_SENDWELL": "{}",  # sendwell's defaults
            }
        )
        h.run_driver(["migrate"], env)
        fake.reset()
        load_before = h.loadavg()
        with Sampler(fake, database) as sampler:
            loop = h.run_driver(
                ["send-mail-loop", "--count", str(count), "--prefix", "sync"],
                env,
                timeout=count * 12 + 120,
            )
        figures, messages = endpoint_figures(fake, "sync", count, args.sync_rate)
    t0 = loop["started"]
    figures.update(
        scenario="learned-sync",
        limit=args.sync_rate,
        loop={k: v for k, v in loop.items() if k != "durations"},
        call_seconds=durations(loop["durations"]),
        wall_rate=loop["sent"] / max(loop["finished"] - loop["started"], 1e-9),
        first_arrival_after_start=(figures["first"] - t0) if figures.get("first") else None,
        learned=learned_state(database),
        accounts=account_rows(database),
        attempt_errors=attempt_errors(attempt_rows(database)),
        timeline=timeline(sampler.samples, messages, t0),
        samples=sampler.samples,
        load=f"{load_before} -> {h.loadavg()}",
    )
    return figures


def run_readable(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    results = []
    with h.processes() as procs:
        fake = h.start_fake_ses(
            procs, rate=args.readable_rate, quota=QUOTA, latency=args.latency, enforce_rate=True
        )
        cold = cold_start(fake, tmp)
        for count in args.readable_messages:
            run_dir = tmp / f"readable-{count}"
            run_dir.mkdir()
            print(f"  [readable] {count} messages ...", flush=True)
            with Sampler(fake, run_dir / "outbox.sqlite3") as sampler:
                figures = rate_bench.run_engine(
                    "sqlite",
                    fake,
                    outbox_args(args, messages=count, rate=args.readable_rate),
                    run_dir,
                )
            messages = fake.messages()
            database = Path(figures["database"].removeprefix("sqlite:"))
            ramp = rampup(figures, messages, database, args.readable_rate)
            figures.update(
                scenario=f"readable-{count}",
                limit=args.readable_rate,
                messages_wanted=count,
                cold_start=cold,
                rampup=ramp,
                timeline=timeline(sampler.samples, messages, ramp["t0"]),
                samples=sampler.samples,
                accounts=account_rows(database),
                logs=worker_logs(run_dir),
                attempt_errors=attempt_errors(attempt_rows(database)),
            )
            results.append(figures)
    return results


def run_django_ses(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """django-ses's send_mail() loop on the learned-sync endpoint and its serial sends on the
    learned-outbox endpoint, with its default AUTO_THROTTLE and with it off."""
    results = []
    database = tmp / "django-ses.sqlite3"  # configured, never used by django-ses
    runs = [
        ("sync", args.sync_rate, 0.0, args.sync_messages),
        ("serial", args.learned_rate, args.latency, args.django_ses_messages),
    ]
    with h.processes() as procs:
        for kind, limit, latency, count in runs:
            fake = h.start_fake_ses(
                procs,
                rate=limit,
                quota=QUOTA,
                latency=latency,
                enforce_rate="ses",
                get_account="denied",
                get_send_quota="denied",
            )
            for throttle in ("default", "off"):
                setting = "0.5 (default)" if throttle == "default" else "None"
                name = f"django-ses {kind} AUTO_THROTTLE={setting}"
                print(f"  [{name}] {count} messages ...", flush=True)
                extra = {
                    "SENDWELL_BENCH_SES_URL": fake.endpoint_url,
                    "SENDWELL_BENCH_DATABASE": f"sqlite:{database}",
                    "SENDWELL_BENCH_BACKEND": "django-ses",
                }
                if throttle == "off":
                    extra["SENDWELL_BENCH_DJANGO_SES_THROTTLE"] = "off"
                env = h.isolated_environ(extra)
                prefix = f"djses{kind}{throttle}"
                if kind == "sync":
                    command = ["send-mail-loop", "--count", str(count), "--prefix", prefix]
                else:
                    command = [
                        "django-ses",
                        "--count",
                        str(count),
                        "--url",
                        fake.endpoint_url,
                        "--prefix",
                        prefix,
                        "--each",
                    ]
                fake.reset()
                loop = h.run_driver(command, env, timeout=count * (latency + 2) + 180)
                figures, _ = endpoint_figures(fake, prefix, count, limit)
                figures.update(
                    scenario=name,
                    limit=limit,
                    loop={k: v for k, v in loop.items() if k != "durations"},
                    call_seconds=durations(loop["durations"]),
                    wall_rate=loop["sent"] / max(loop["finished"] - loop["started"], 1e-9),
                    messages_wanted=count,
                )
                results.append(figures)
            procs.stop(fake.process)
    return results


# --- report -----------------------------------------------------------------------------------


def pct(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def num(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_learned(state: dict[str, Any] | None) -> None:
    if state is None:
        print("  learned state: none (sendwell_ratebucket.learned is empty)")
        return
    print(
        f"  learned state at the end: rate {state['rate']:.2f}/s, phase {state['phase']}, "
        f"measured {num(state.get('measured'), '.2f')}/s, throttles {state.get('throttles')}, "
        f"epoch {state.get('epoch')}"
    )
    print(f"  learned JSON: {json.dumps(state, separators=(',', ':'))}")


def print_timeline(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    table: list[tuple[str, ...]] = [
        (
            "from s",
            "to s",
            "arrivals/s",
            "refused",
            "learned/s",
            "phase",
            "measured/s",
            "throttles",
            "booked ahead s",
        )
    ]
    for r in rows:
        table.append(
            (
                f"{r['from']:.0f}",
                f"{r['to']:.0f}",
                f"{r['arrivals_per_s']:.1f}",
                str(r["refused"]),
                num(r["learned_rate"]),
                str(r["phase"] or "-"),
                num(r["measured"]),
                str(r["throttles"] if r["throttles"] is not None else "-"),
                num(r["schedule_ahead"], ".2f"),
            )
        )
    h.print_table(
        "  timeline (s from the start; learned state as last sampled; booked ahead: the most the"
        " shared schedule's next free slot was ahead of the clock)",
        table,
    )


def print_rampup(name: str, ramp: dict[str, Any]) -> None:
    if "first_arrival_after_commit" not in ramp:
        return
    print(f"\n  ramp-up of {name} (times in s from the first enqueue commit):")
    print(
        f"    enqueue: first batch committed {ramp['enqueue_first_commit']:.3f} s after it began,"
        f" last {ramp['enqueue_last_commit']:.3f} s"
    )
    for fetched, error in ramp["account_fetched"]:
        print(
            f"    account limits fetched at {num(fetched, '.3f')}"
            + (f" ({error})" if error else "")
        )
    print(
        f"    first SES arrival at {ramp['first_arrival_after_commit']:.3f}; rate in the first"
        f" 1 s after it {ramp['rate_first_1s']:.1f}/s, first 2 s {ramp['rate_first_2s']:.1f}/s,"
        f" steady {ramp['steady_rate']:.1f}/s, overall {ramp['overall_rate']:.1f}/s,"
        f" from the commit {ramp['from_commit_rate']:.1f}/s"
    )
    quarters = " ".join(f"{v:.0f}" for v in ramp["rate_per_quarter_second"])
    print(f"    rate per 0.25 s after the first arrival (/s): {quarters}")
    print(
        "    rolling second at 90 % of steady after"
        f" {num(ramp['rolling_second_at_90pct_of_steady'], '.2f')} s;"
        f" seconds lost against the steady rate: start {ramp['start_cost']:.2f}, head (first 10 %)"
        f" {ramp['head_cost']:.2f}, tail (last 10 %) {ramp['tail_cost']:.2f};"
        f" {ramp['actual_seconds']:.2f} s in all for {ramp['ideal_seconds']:.2f} s at the limit"
    )
    tasks: list[tuple[str, ...]] = [
        ("task", "enqueued", "picked up", "finished", "wait", "status", "result")
    ]
    for index, t in enumerate(ramp["tasks"][:16]):
        wait = (
            t["started"] - t["enqueued"]
            if t["started"] is not None and t["enqueued"] is not None
            else None
        )
        result = t["result"] if isinstance(t["result"], dict) else {"value": t["result"]}
        tasks.append(
            (
                str(index),
                num(t["enqueued"], ".3f"),
                num(t["started"], ".3f"),
                num(t["finished"], ".3f"),
                num(wait, ".3f"),
                str(t["status"]),
                " ".join(f"{k}={v}" for k, v in sorted(result.items())),
            )
        )
    if len(ramp["tasks"]) > 16:
        tasks.append((f"+{len(ramp['tasks']) - 16} more", "", "", "", "", "", ""))
    h.print_table("    delivery tasks (django-tasks-db), by enqueue time", tasks)
    workers: list[tuple[str, ...]] = [
        (
            "worker pid",
            "drains",
            "attempts",
            "not sent",
            "first attempt",
            "first arrival",
            "last arrival",
            "arrived",
        )
    ]
    for w in ramp["workers"]:
        workers.append(
            (
                w["pid"],
                str(w["drains"]),
                str(w["attempts"]),
                str(w["not_sent"]),
                num(w["first_attempt"], ".3f"),
                num(w["first_arrival"], ".3f"),
                num(w["last_arrival"], ".3f"),
                str(w["arrived"]),
            )
        )
    h.print_table("    worker processes (sendwell_attempt.worker), by first attempt", workers)


def print_cold_start(cold: dict[str, Any] | None) -> None:
    if not cold:
        return
    rows: list[tuple[str, ...]] = [("step", "wall ms", "CPU ms", "error")]
    for step in cold["steps"]:
        rows.append(
            (
                step["step"],
                f"{step['wall'] * 1000:.0f}",
                f"{step['cpu'] * 1000:.0f}",
                (step["error"] or "")[:60],
            )
        )
    total = sum(step["wall"] for step in cold["steps"][:-1])
    rows.append(("until the first SES answer", f"{total * 1000:.0f}", "", ""))
    h.print_table(
        "    a worker's first delivery, measured alone in a fresh process (Django set up)", rows
    )


def print_logs(logs: dict[str, Any] | None) -> None:
    if not logs:
        return
    print(f"  worker log: {logs['lines']} lines, {logs['tracebacks']} tracebacks")
    for line in logs["examples"]:
        print(f"    | {line[:220]}")


def check_learned_outbox(r: dict[str, Any]) -> list[Check]:
    limit, name = r["limit"], r["scenario"]
    return [
        Check(
            name,
            f"whole run >= 90% of {limit:g}/s",
            f"{r['overall_rate']:.1f}/s ({pct(r['overall_rate'], limit)})",
            r["overall_rate"] >= 0.9 * limit,
        ),
        Check(
            name,
            f"steady 80% >= 90% of {limit:g}/s",
            f"{r['steady_rate']:.1f}/s ({pct(r['steady_rate'], limit)})",
            r["steady_rate"] >= 0.9 * limit,
        ),
        Check(
            name,
            "refused <= 3% of send requests",
            f"{r['refused']} of {r['send_requests']} ({pct(r['refused'], r['send_requests'])})",
            r["refused"] <= 0.03 * r["send_requests"],
        ),
        Check(name, "0 lost", str(r["lost"]), r["lost"] == 0),
        Check(name, "0 duplicates", str(r["duplicates"]), r["duplicates"] == 0),
    ]


def check_learned_sync(r: dict[str, Any], count: int) -> list[Check]:
    limit, name = r["limit"], r["scenario"]
    overall = r.get("overall_rate", 0.0)
    loop = r["loop"]
    return [
        Check(
            name,
            f"first to last arrival >= 85% of {limit:g}/s",
            f"{overall:.1f}/s ({pct(overall, limit)})",
            overall >= 0.85 * limit,
        ),
        Check(
            name,
            "no exception raised",
            f"{loop['exceptions']} ({loop['errors'] or 'none'})",
            loop["exceptions"] == 0,
        ),
        Check(
            name,
            "every message arrived exactly once",
            f"{r['count']} arrived, lost {r['lost']}, dup {r['duplicates']}",
            r["count"] == count and r["lost"] == 0 and r["duplicates"] == 0,
        ),
    ]


def check_readable(r: dict[str, Any]) -> list[Check]:
    limit, name = r["limit"], r["scenario"]
    return [
        Check(
            name,
            f"steady >= 95% of {limit:g}/s",
            f"{r['steady_rate']:.1f}/s ({pct(r['steady_rate'], limit)})",
            r["steady_rate"] >= 0.95 * limit,
        ),
        Check(
            name,
            "0 s over (calendar and rolling)",
            f"{r['seconds_over']} calendar, {r['sliding_windows_over']} rolling windows",
            r["seconds_over"] == 0 and r["sliding_windows_over"] == 0,
        ),
        Check(name, "the endpoint refused nothing", str(r["refused"]), r["refused"] == 0),
        Check(
            name,
            "every message once, every row sent",
            f"{r['count']} arrived, lost {r['lost']}, dup {r['duplicates']}, {r['statuses']}",
            r["duplicates"] == 0
            and r["lost"] == 0
            and r["statuses"] == {"sent": r["messages_wanted"]},
        ),
    ]


def summary_row(r: dict[str, Any]) -> tuple[str, ...]:
    limit = r["limit"]
    exceptions = r.get("loop", {}).get("exceptions")
    learned = r.get("learned") or {}
    return (
        r["scenario"],
        f"{limit:g}",
        str(r.get("count", 0)),
        num(r.get("overall_rate")),
        pct(r["overall_rate"], limit) if "overall_rate" in r else "-",
        num(r.get("steady_rate")),
        pct(r["steady_rate"], limit) if "steady_rate" in r else "-",
        f"{r['refused']}/{r['send_requests']}",
        "-" if exceptions is None else str(exceptions),
        str(r.get("duplicates", "-")),
        str(r.get("lost", "-")),
        (
            f"{learned['rate']:.1f} ({learned['phase']}, measured {num(learned.get('measured'))})"
            if learned
            else "-"
        ),
    )


def report(results: dict[str, Any], args: argparse.Namespace) -> list[Check]:
    checks: list[Check] = []
    rows: list[tuple[str, ...]] = [
        (
            "scenario",
            "limit/s",
            "arrived",
            "overall/s",
            "of limit",
            "steady/s",
            "of limit",
            "refused/requests",
            "exceptions",
            "dup",
            "lost",
            "learned/s",
        )
    ]
    flat: list[dict[str, Any]] = []
    for key in SCENARIOS:
        value = results.get(key)
        if isinstance(value, dict) and "error" not in value:
            flat.append(value)
        elif isinstance(value, list):
            flat += value
    for r in flat:
        rows.append(summary_row(r))
    if len(rows) > 1:
        h.print_table("Summary (figures from each endpoint's record)", rows)

    outbox = results.get("learned-outbox")
    if isinstance(outbox, dict) and "error" not in outbox:
        checks += check_learned_outbox(outbox)
    sync = results.get("learned-sync")
    if isinstance(sync, dict) and "error" not in sync:
        checks += check_learned_sync(sync, args.sync_messages)
    for r in results.get("readable") or []:
        if isinstance(r, dict):
            checks += check_readable(r)
    for key in SCENARIOS:
        value = results.get(key)
        if isinstance(value, dict) and "error" in value:
            checks.append(Check(key, "the scenario ran", value["error"][:80], False))

    djses = [r for r in results.get("django-ses") or [] if isinstance(r, dict)]
    if djses:
        print("\nRatios against django-ses (same endpoint configuration, limits unreadable)")
        sync_rate = sync.get("overall_rate") if isinstance(sync, dict) else None
        outbox_rate = outbox.get("overall_rate") if isinstance(outbox, dict) else None
        for r in djses:
            ours = sync_rate if " sync " in r["scenario"] else outbox_rate
            theirs = r.get("overall_rate")
            mine = "learned-sync" if " sync " in r["scenario"] else "learned-outbox"
            if not ours:
                ratio = f"n/a ({mine} not run)"
            elif not theirs:
                ratio = "n/a (django-ses delivered fewer than 2 messages)"
            else:
                ratio = f"{ours / theirs:.1f}x"
            print(
                f"  {mine} / {r['scenario']}: {ratio}  (django-ses: {r['loop']['sent']} of "
                f"{r['messages_wanted']} sent, {r['loop']['exceptions']} exceptions, "
                f"{r['refused']} refused of {r['send_requests']} send requests, "
                f"{r['account_requests']} account queries)"
            )
    if checks:
        table: list[tuple[str, ...]] = [("scenario", "target", "value", "")]
        for c in checks:
            table.append((c.scenario, c.target, c.value[:110], "PASS" if c.ok else "FAIL"))
        h.print_table("Targets", table)
    return checks


def print_details(key: str, value: Any) -> None:
    """The scenario's own figures, printed as soon as it has run."""
    if isinstance(value, dict) and "error" in value:
        print(f"  FAILED to run: {value['error']}")
        return
    if key == "learned-outbox":
        r = value
        print(
            f"  {r['count']} arrived: overall {r['overall_rate']:.1f}/s, steady"
            f" {r['steady_rate']:.1f}/s (limit {r['limit']:g}/s); refused {r['refused']} of"
            f" {r['send_requests']} send requests; max calendar s {r['max_per_second']}, max"
            f" rolling s {r['max_sliding_second']};"
            f" statuses {r['statuses']}; attempts {r['attempt_errors']}"
        )
        print(f"  worker CPU {r['worker_cpu_ms']:.1f} ms/msg; load {r['load']}")
        for a in r["accounts"]:
            print(f"  account {a['name']}: max_send_rate {a['max_send_rate']}, error: {a['error']}")
        print_learned(r["learned"])
        print_timeline(r["timeline"])
        print_rampup("learned-outbox", r["rampup"])
        print_cold_start(r.get("cold_start"))
        print_logs(r["logs"])
    elif key == "learned-sync":
        r = value
        loop = r["loop"]
        print(
            f"  {loop['calls']} send_mail() calls: {loop['sent']} returned 1, {loop['exceptions']}"
            f" raised {loop['errors'] or ''}; {r.get('count', 0)} arrived, overall"
            f" {num(r.get('overall_rate'))}/s, steady {num(r.get('steady_rate'))}/s (limit"
            f" {r['limit']:g}/s), loop wall clock {r['wall_rate']:.1f}/s; first arrival"
            f" {num(r['first_arrival_after_start'], '.3f')} s after the first call"
        )
        calls = r["call_seconds"]
        print(
            f"  send_mail() seconds: median {num(calls.get('median'), '.3f')}, p95"
            f" {num(calls.get('p95'), '.3f')}, max {num(calls.get('max'), '.3f')};"
            f" SES refused {r['refused']} of {r['send_requests']} send requests;"
            f" {r['account_requests']} account queries; attempts {r['attempt_errors']};"
            f" load {r['load']}"
        )
        for example in loop["error_examples"]:
            print(f"    exception: {example}")
        for line in loop["log_examples"]:
            print(f"    log ({loop['log_lines']} lines): {line[:200]}")
        print_learned(r["learned"])
        print_timeline(r["timeline"])
    elif key == "readable":
        for r in value:
            print(
                f"\n  {r['scenario']}: overall {r['overall_rate']:.1f}/s, steady"
                f" {r['steady_rate']:.1f}/s (limit {r['limit']:g}/s); max calendar s"
                f" {r['max_per_second']}, max rolling s {r['max_sliding_second']}; refused"
                f" {r['refused']}; statuses {r['statuses']}; load {r['load']}"
            )
            print_timeline(r["timeline"])
            print_rampup(r["scenario"], r["rampup"])
            if r is value[0]:
                print_cold_start(r.get("cold_start"))
            print_logs(r["logs"])
    elif key == "django-ses":
        for r in value:
            loop = r["loop"]
            calls = r["call_seconds"]
            print(
                f"\n  {r['scenario']}: {loop['sent']} of {r['messages_wanted']} sent,"
                f" {loop['exceptions']} exceptions {loop['errors'] or ''}; {r.get('count', 0)}"
                f" arrived, overall {num(r.get('overall_rate'))}/s (limit {r['limit']:g}/s), wall"
                f" clock {r['wall_rate']:.1f}/s; SES refused {r['refused']} of"
                f" {r['send_requests']} send requests, {r['account_requests']} account queries;"
                f" dup {r.get('duplicates')}, lost {r.get('lost')}; call seconds median"
                f" {num(calls.get('median'), '.3f')}, max {num(calls.get('max'), '.3f')}"
            )
            if loop["first_error_index"] is not None:
                print(f"    first exception at message #{loop['first_error_index']}")
            for example in loop["error_examples"]:
                print(f"    exception: {example}")
            for line in loop["log_examples"]:
                print(f"    log ({loop['log_lines']} lines): {line[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="all", help=f"comma-separated of {SCENARIOS}")
    parser.add_argument("--messages", type=int, default=3000, help="learned-outbox messages")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--learned-rate", type=float, default=50.0)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per SES send")
    parser.add_argument("--sync-messages", type=int, default=300)
    parser.add_argument("--sync-rate", type=float, default=20.0)
    parser.add_argument("--readable-messages", default="1000,3000")
    parser.add_argument("--readable-rate", type=float, default=100.0)
    parser.add_argument("--django-ses-messages", type=int, default=300)
    parser.add_argument("--enqueue-batch", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds for workers to start")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    chosen = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    args.readable_messages = [int(n) for n in args.readable_messages.split(",") if n]

    from sendwell.conf import DEFAULTS  # noqa: PLC0415 - after the path is set up

    started = time.time()
    print("Sending limits as SES keeps them: learned rate, synchronous wait, readable limits")
    print(f"  revision: {revision()}")
    h.print_machine()
    load_before = h.loadavg()
    print(f"  load average before: {load_before}")
    print(
        "  sendwell settings: SENDWELL = {} (defaults: MAX_SEND_RATE "
        f"{DEFAULTS['MAX_SEND_RATE']}, MAX_24_HOUR_SEND {DEFAULTS['MAX_24_HOUR_SEND']}, "
        f"RATE_FRACTION {DEFAULTS['RATE_FRACTION']}, SYNC_MAX_WAIT {DEFAULTS['SYNC_MAX_WAIT']}, "
        f"CONCURRENCY {DEFAULTS['CONCURRENCY']}, BATCH_SIZE {DEFAULTS['BATCH_SIZE']})"
    )
    tmp = Path(tempfile.mkdtemp(prefix="sendwell-bench-learned-"))
    runners: dict[str, Callable[[argparse.Namespace, Path], Any]] = {
        "learned-outbox": run_learned_outbox,
        "learned-sync": run_learned_sync,
        "readable": run_readable,
        "django-ses": run_django_ses,
    }
    descriptions = {
        "learned-outbox": f"{args.messages} messages, {args.workers} db_workers on SQLite, SES-like"
        f" {args.learned_rate:g}/s, {args.latency * 1000:g} ms, GetAccount+GetSendQuota denied",
        "learned-sync": f"{args.sync_messages} send_mail() in one process, SES-like"
        f" {args.sync_rate:g}/s, no latency, GetAccount+GetSendQuota denied",
        "readable": f"{args.readable_messages} messages, {args.workers} db_workers on SQLite,"
        f" GetAccount {args.readable_rate:g}/s, rolling-second enforcement,"
        f" {args.latency * 1000:g} ms",
        "django-ses": f"django-ses SESBackend: {args.sync_messages} send_mail() on the"
        f" learned-sync endpoint, {args.django_ses_messages} serial on the learned-outbox one",
    }
    results: dict[str, Any] = {}
    try:
        for key in chosen:
            print(f"\n[{key}] {descriptions[key]}", flush=True)
            begun = time.monotonic()
            try:
                results[key] = runners[key](args, tmp)
            except Exception as exc:
                traceback.print_exc()
                results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  ({time.monotonic() - begun:.0f} s)")
            print_details(key, results[key])
    finally:
        if args.keep:
            print(f"\n  logs and databases kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    checks = report(results, args)
    load_after = h.loadavg()
    print(
        f"\n  load average before {load_before}, after {load_after}; {time.time() - started:.0f} s"
    )
    failed = [c for c in checks if not c.ok]
    if not checks:
        print("  no targets for the scenarios run")
    elif failed:
        names = ", ".join(f"{c.scenario}: {c.target}" for c in failed)
        print(f"  {len(checks) - len(failed)} of {len(checks)} targets met; FAILED: {names}")
    else:
        print(f"  all {len(checks)} targets met")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "revision": revision(),
                    "machine": h.machine(),
                    "load_before": load_before,
                    "load_after": load_after,
                    "arguments": {k: v for k, v in vars(args).items() if k != "json"},
                    "results": results,
                    "checks": [asdict(c) for c in checks],
                },
                indent=2,
                default=str,
            )
        )
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
