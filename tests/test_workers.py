"""The outbox with real worker processes: the engines the issue names, rate limits, faults, crashes.

Every test runs real subprocesses against real servers on 127.0.0.1: Django's task workers
(django-tasks-db's ``db_worker`` on SQLite; django-tasks-rq's ``rqworker`` on PostgreSQL and
Redis), ``manage.py sendwell sweep``, and FakeSES (the fault-injecting SES endpoint) as a CLI
process or, where a test needs its ``fault_plan``, served from this process. Messages are queued
by a subprocess through the OutboxBackend, as an application queues them; the workers' settings
come from ``tests/worker_project/settings.py`` through environment variables.

What is measured (throughput, the busiest one-second window, duplicates per fault, the in-doubt
window of a killed worker) is printed; run with ``-s`` to see it. Nothing asserts wall-clock
time: only counts (messages, duplicates, recipients per one-second window).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sendwell.conf import DEFAULTS
from tests.server_fixtures import postgres_server, redis_server  # noqa: F401
from testservers.fake_ses import AcceptedMessage, FakeSES, FakeSESProcess
from testservers.postgres import PostgresServer
from testservers.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "tests.worker_project.settings"
# Where a worker's own output goes; shown when a test fails.
LOG_TAIL = 3000


# --- processes --------------------------------------------------------------------------------


class Processes:
    """Subprocesses of one test, each in its own process group, all SIGKILLed at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own group: a kill reaches its children too (rq's work horses).
            start_new_session=True,
        )
        log.close()
        self.started.append((name, process))
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def logs(self) -> str:
        parts = []
        for path in sorted(self.directory.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name} (last {LOG_TAIL} chars) ---\n{text[-LOG_TAIL:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for _, process in self.started:
            self.kill(process)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.close()


def start_fake_ses(processes: Processes, **settings: Any) -> FakeSESProcess:
    """``python -m testservers.fake_ses`` with ``settings`` (FakeSESProcess's), its stderr in the
    test's logs, killed with the test's other processes at teardown."""
    ses = FakeSESProcess(log_file=processes.directory / "fake_ses.log", **settings)
    ses.start()
    assert ses.process is not None
    processes.started.append(("fake_ses", ses.process))
    return ses


# --- the outbox database, seen from the test ----------------------------------------------------


class OutboxDB:
    """Read the workers' database directly (SQLite file or PostgreSQL), not through Django:
    this process's Django is configured for the rest of the test suite."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:"):
            path = self.url.removeprefix("sqlite://")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
                return connection.execute(sql).fetchall()
        import psycopg  # noqa: PLC0415 - the PostgreSQL tests only

        with psycopg.connect(self.url, autocommit=True) as connection:
            return connection.execute(sql).fetchall()

    def execute(self, sql: str) -> None:
        if self.url.startswith("sqlite:"):
            path = self.url.removeprefix("sqlite://")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
                connection.execute(sql)
                connection.commit()
            return
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql)

    def statuses(self) -> dict[str, int]:
        return dict(self.rows("SELECT status, COUNT(*) FROM sendwell_message GROUP BY status"))

    def finished(self) -> int:
        [(count,)] = self.rows(
            "SELECT COUNT(*) FROM sendwell_message WHERE status IN ('sent', 'failed')"
        )
        return int(count)


# --- a worker deployment --------------------------------------------------------------------------


class Deployment:
    """One outbox database, one task engine, one FakeSES; workers and commands as subprocesses."""

    def __init__(
        self,
        processes: Processes,
        *,
        database_url: str,
        ses_endpoint: str,
        tasks: str = "database",
        redis_url: str | None = None,
        queue: str = "default",
        sendwell: dict[str, Any] | None = None,
        ses_options: dict[str, Any] | None = None,
    ) -> None:
        self.processes = processes
        self.db = OutboxDB(database_url)
        self.tasks = tasks
        self.queue = queue
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "SENDWELL_WORKER_DATABASE": database_url,
            "SENDWELL_WORKER_TASKS": tasks,
            "SENDWELL_WORKER_QUEUE": queue,
            "SENDWELL_WORKER_SES_ENDPOINT": ses_endpoint,
            "SENDWELL_WORKER_SENDWELL": json.dumps(sendwell or {}),
            "SENDWELL_WORKER_SES_OPTIONS": json.dumps(ses_options or {}),
            "PYTHONUNBUFFERED": "1",
        }
        if redis_url:
            self.env["SENDWELL_WORKER_REDIS_URL"] = redis_url
        self.workers: list[subprocess.Popen[bytes]] = []

    def manage(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def enqueue(self, prefix: str, count: int, per_call: int = 20) -> list[int]:
        arguments = ["--prefix", prefix, "--count", str(count), "--per-call", str(per_call)]
        result = subprocess.run(
            [sys.executable, "-m", "tests.worker_project.enqueue", *arguments],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"enqueue failed:\n{result.stdout}{result.stderr}"
        ids = [int(line) for line in result.stdout.split()]
        assert len(ids) == count
        return ids

    def start_worker(self) -> subprocess.Popen[bytes]:
        number = len(self.workers) + 1
        if self.tasks == "database":
            command = ["db_worker", "--interval", "0.1", "--no-startup-delay"]
            command += ["--queue-name", self.queue, "--worker-id", f"test-worker-{number}"]
        else:
            command = ["rqworker", "--job-class", "django_tasks_rq.Job", "--with-scheduler"]
            command += ["--name", f"test-worker-{number}-{uuid.uuid4().hex[:6]}", self.queue]
        process = self.processes.start(
            f"worker-{number}", [sys.executable, "-m", "django", *command], self.env
        )
        self.workers.append(process)
        return process

    def start_sweeper(self, every: float) -> subprocess.Popen[bytes]:
        return self.processes.start(
            "sweeper",
            [sys.executable, "-m", "django", "sendwell", "sweep", "--every", str(every)],
            self.env,
        )

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        """Poll ``condition``; on timeout fail with the outbox state and the workers' logs."""
        deadline = time.monotonic() + timeout
        while not condition():
            for process in self.workers:
                if process.poll() not in (None, -signal.SIGKILL):
                    raise AssertionError(
                        f"a worker exited ({process.returncode}) while waiting for {what}\n"
                        f"{self.processes.logs()}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"gave up after {timeout}s waiting for {what}; outbox: {self.db.statuses()}\n"
                    f"{self.processes.logs()}"
                )
            time.sleep(0.1)

    def wait_all_finished(self, count: int, timeout: float = 90) -> None:
        self.wait_until(
            f"{count} messages sent or failed", lambda: self.db.finished() >= count, timeout
        )


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite outbox (sendwell, django-tasks-db); each test copies it."""
    path = tmp_path_factory.mktemp("worker-db") / "template.sqlite3"
    env = {
        **os.environ,
        # As the workers get it (below): the same sendwell as the tests, whatever is installed.
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "SENDWELL_WORKER_DATABASE": f"sqlite://{path}",
        "SENDWELL_WORKER_SES_ENDPOINT": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture
def sqlite_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    path = tmp_path / "outbox.sqlite3"
    shutil.copyfile(migrated_sqlite, path)
    return f"sqlite://{path}"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:  # noqa: F811
    """A database of its own on the shared PostgreSQL server, dropped afterwards."""
    import psycopg  # noqa: PLC0415

    name = f"sendwell_workers_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- measuring --------------------------------------------------------------------------------


def busiest_second(accepted: list[AcceptedMessage]) -> int:
    """The most recipients SES received in any one-second window (sliding, not calendar)."""
    times = sorted((m.received_at, len(m.destinations)) for m in accepted)
    best = total = start = 0
    for end in range(len(times)):
        total += times[end][1]
        while times[end][0] - times[start][0] >= 1.0:
            total -= times[start][1]
            start += 1
        best = max(best, total)
    return best


def deliveries(accepted: list[AcceptedMessage]) -> collections.Counter[str]:
    return collections.Counter(address for m in accepted for address in m.destinations)


def expected_addresses(prefix: str, count: int) -> set[str]:
    return {f"{prefix}-{i}@example.net" for i in range(count)}


def assert_each_delivered_once(
    deployment: Deployment, accepted: list[AcceptedMessage], prefix: str, count: int
) -> None:
    sent = deliveries([m for m in accepted if m.destinations[0].startswith(f"{prefix}-")])
    assert set(sent) == expected_addresses(prefix, count), "a message was lost"
    twice = {address: n for address, n in sent.items() if n > 1}
    assert not twice, f"sent more than once: {twice}"
    # The outbox agrees: every message sent, each recipient with the id SES gave the one call.
    assert deployment.db.statuses() == {"sent": count}
    ids = {m.message_id for m in accepted}
    recorded = deployment.db.rows("SELECT address, ses_message_id, status FROM sendwell_recipient")
    assert len(recorded) == count
    assert all(status == "sent" and ses_id in ids for _, ses_id, status in recorded)


def worker_processes(deployment: Deployment) -> set[str]:
    """The distinct worker processes (host:pid) that recorded attempts."""
    names = deployment.db.rows("SELECT DISTINCT worker FROM sendwell_attempt")
    return {name.rsplit(":", 1)[0] for (name,) in names}


def report(title: str, **figures: Any) -> None:
    print(f"\n[sendwell workers] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# --- a. SQLite + db_worker ------------------------------------------------------------------------

RATE = 50  # FakeSES's MaxSendRate: the workers read it with GetAccount, as from real SES
MESSAGES = 200
# The first retry waits 2-4 s: more than a second, so it is scheduled with run_after.
RETRY_BACKOFF = 4.0


def _rate_limited_run(deployment: Deployment, ses: FakeSESProcess, label: str) -> None:
    deployment.start_worker()
    deployment.start_worker()
    deployment.enqueue("rate", MESSAGES, per_call=20)  # ten calls: ten delivery tasks
    deployment.wait_all_finished(MESSAGES)
    accepted = ses.messages()
    assert_each_delivered_once(deployment, accepted, "rate", MESSAGES)
    busiest = busiest_second(accepted)
    times = sorted(m.received_at for m in accepted)
    report(
        label,
        messages=len(accepted),
        throughput_per_s=round((len(times) - 1) / (times[-1] - times[0]), 1),
        busiest_one_second_window=busiest,
        limit=RATE,
        worker_processes=len(worker_processes(deployment)),
    )
    assert busiest <= RATE, f"{busiest} recipients in one second; SES allows {RATE}"
    # Both workers took part: the claims kept them apart, the shared limiter paced them together.
    assert len(worker_processes(deployment)) == 2

    # A retry seconds away goes back to the engine as a deferred task (run_after): the drain that
    # failed ends, nothing else runs (no sweep here), so only the engine can bring it back.
    ses.inject("500", times=2)
    deployment.enqueue("retry", 2, per_call=2)
    attempts = (
        "SELECT m.subject, a.outcome FROM sendwell_attempt a JOIN sendwell_message m "
        "ON m.id = a.message_id WHERE m.subject LIKE 'retry %' ORDER BY a.started_at"
    )
    deployment.wait_until(
        "the retries", lambda: [o for _, o in deployment.db.rows(attempts)].count("sent") == 2, 60
    )
    outcomes: dict[str, list[str]] = collections.defaultdict(list)
    for subject, outcome in deployment.db.rows(attempts):
        outcomes[subject].append(outcome)
    assert outcomes == {"retry 0": ["retry", "sent"], "retry 1": ["retry", "sent"]}
    [(run_after,)] = deployment.db.rows("SELECT run_after FROM sendwell_wakeup")
    assert run_after is not None


def test_sqlite_db_worker_two_processes_deliver_once_within_the_rate(
    processes: Processes, sqlite_url: str
) -> None:
    ses = start_fake_ses(processes, rate=RATE)
    deployment = Deployment(
        processes,
        database_url=sqlite_url,
        ses_endpoint=ses.endpoint_url,
        sendwell={"BACKOFF_BASE_SECONDS": RETRY_BACKOFF},
    )
    _rate_limited_run(deployment, ses, "SQLite + db_worker x2, database limiter")
    # The limits came from SES (GetAccount), stored once for every worker.
    [(rate,)] = deployment.db.rows("SELECT max_send_rate FROM sendwell_accountquota")
    assert rate == RATE


# The worker settings a new user gets (tests/worker_project/settings.py tunes some for speed).
DEFAULT_WORKER_SETTINGS = {
    key: DEFAULTS[key]
    for key in (
        "LEASE_SECONDS",
        "BACKOFF_BASE_SECONDS",
        "BACKOFF_MAX_SECONDS",
        "CONCURRENCY",
        "BATCH_SIZE",
        "TASK_TIME_BUDGET_SECONDS",
    )
}
LEARNED_RATE = 50
LEARNED_MESSAGES = 600


def test_unreadable_limits_four_workers_learn_the_rate_ses_enforces(
    processes: Processes, sqlite_url: str
) -> None:
    """The guide's IAM policy (no ses:GetAccount / ses:GetSendQuota), SES enforcing 50/s as it
    counts (a budget of one second), four db_workers with the default settings."""
    ses = start_fake_ses(
        processes,
        rate=LEARNED_RATE,
        enforce_rate="ses",
        latency=0.05,
        get_account="denied",
        get_send_quota="denied",
    )
    deployment = Deployment(
        processes,
        database_url=sqlite_url,
        ses_endpoint=ses.endpoint_url,
        sendwell=DEFAULT_WORKER_SETTINGS,
    )
    for _ in range(4):
        deployment.start_worker()
    deployment.enqueue("learn", LEARNED_MESSAGES, per_call=50)
    deployment.wait_all_finished(LEARNED_MESSAGES, timeout=180)
    accepted = ses.messages()
    assert_each_delivered_once(deployment, accepted, "learn", LEARNED_MESSAGES)
    stats = ses.stats()
    [(learned,)] = deployment.db.rows("SELECT learned FROM sendwell_ratebucket")
    state = json.loads(learned)
    [(rate, error)] = deployment.db.rows("SELECT max_send_rate, error FROM sendwell_accountquota")
    times = sorted(m.received_at for m in accepted)
    report(
        "SQLite + db_worker x4, limits unreadable, SES enforcing 50/s",
        messages=len(accepted),
        throughput_per_s=round((len(times) - 1) / (times[-1] - times[0]), 1),
        learned_rate=round(state["rate"], 1),
        measured=state["measured"],
        refused=stats["refused"].get("rate", 0),
        send_requests=stats["send_requests"],
        worker_processes=len(worker_processes(deployment)),
    )
    # Unknown, not the sandbox's: nothing stored as 1/s, and the rate was learned from SES.
    assert rate is None
    assert "ses:GetAccount not allowed" in error
    assert state["measured"] is not None
    assert 0.8 * LEARNED_RATE <= state["rate"] <= 1.05 * LEARNED_RATE
    # Few calls refused, whatever the number of messages: the start's overshoot (calls already
    # given slots at the rate SES first throttled) and one measuring window, together about a
    # second's worth of the rate; each is retried about a second later.
    assert stats["refused"].get("rate", 0) <= 2 * LEARNED_RATE


# --- b. PostgreSQL + Redis + django-tasks-rq ---------------------------------------------------


def test_postgres_redis_rqworker_two_processes_deliver_once_within_the_rate(
    processes: Processes,
    postgres_url: str,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    import redis  # noqa: PLC0415

    ses = start_fake_ses(processes, rate=RATE)
    queue = f"sendwell-test-{uuid.uuid4().hex[:8]}"  # the Redis server is shared by the session
    deployment = Deployment(
        processes,
        database_url=postgres_url,
        ses_endpoint=ses.endpoint_url,
        tasks="rq",
        redis_url=redis_server.url,
        queue=queue,
        sendwell={"RATE_LIMITER": "redis", "BACKOFF_BASE_SECONDS": RETRY_BACKOFF},
    )
    deployment.manage("migrate", "-v0")
    _rate_limited_run(deployment, ses, "PostgreSQL + Redis + rqworker x2, Redis limiter")
    # The Redis limiter did the pacing: its schedule and counters are in Redis, not the database.
    client = redis.Redis.from_url(redis_server.url)
    minutes = [key for key in client.scan_iter("sendwell:*:minutes")]
    counted = sum(
        int(v) for key in minutes for v in client.hgetall(key).values()
    )  # other tests may share the server, so this is at least ours
    assert counted >= MESSAGES
    assert deployment.db.rows("SELECT COUNT(*) FROM sendwell_ratebucket") == [(0,)]


# --- c. faults --------------------------------------------------------------------------------

# The faults SES can answer with, and whether SES may have accepted the message anyway. For the
# in-doubt ones ("accepted but the worker could not know") a second send is the price of losing
# nothing; for all others it would be a bug.
FAULTS = [
    ("throttle", False),
    ("429", False),
    ("500", False),
    ("503", False),
    ("timeout", False),
    ("drop", False),
    ("drop_after_accept", True),
    ("timeout_accepted", True),  # a timeout whose request SES did accept
]
FAULT_MESSAGES = 40
FAULT_EVERY = 4  # every 4th send request fails
# A timed-out send must wait out the client's read timeout: 1 s here (MAILERS options on Django
# 6.1, AWS_SES_READ_TIMEOUT on 5.2).
READ_TIMEOUT = 1.0


def test_faults_lose_nothing_and_only_in_doubt_faults_send_twice(
    processes: Processes, sqlite_url: str
) -> None:
    lock = threading.Lock()
    plan: dict[str, Any] = {"fault": None}

    def fault_plan(number: int) -> str | None:  # runs in FakeSES's handler threads
        with lock:
            fault: str | None = None if number % FAULT_EVERY else plan["fault"]
            return fault

    with FakeSES(
        max_send_rate=10_000, fault_plan=fault_plan, timeout_seconds=READ_TIMEOUT + 1
    ) as ses:
        deployment = Deployment(
            processes,
            database_url=sqlite_url,
            ses_endpoint=ses.endpoint_url,
            sendwell={
                "MAX_SEND_RATE": 10_000,
                "MAX_24_HOUR_SEND": 10_000_000,
                # Longer than one send can take (connect + read timeouts), as it must be.
                "LEASE_SECONDS": READ_TIMEOUT + 5,
            },
            ses_options={"read_timeout": READ_TIMEOUT},
        )
        deployment.start_worker()
        deployment.start_worker()
        figures: dict[str, dict[str, int]] = {}
        done = 0
        for name, in_doubt in FAULTS:
            fault = name.removesuffix("_accepted")
            ses.configure(accept_on_timeout=name == "timeout_accepted")
            ses.reset()
            with lock:
                plan["fault"] = fault
            deployment.enqueue(name, FAULT_MESSAGES)
            done += FAULT_MESSAGES
            deployment.wait_all_finished(done)
            accepted = list(ses.messages)
            served = ses.stats()["faults_served"].get(fault, 0)
            sent = deliveries(accepted)
            figures[name] = {
                "faults": served,
                "duplicates": sum(n - 1 for n in sent.values()),
                "lost": len(expected_addresses(name, FAULT_MESSAGES) - set(sent)),
            }
            assert served > 0, f"{name}: no fault was served"
            assert figures[name]["lost"] == 0, f"{name}: messages lost: {figures}"
            if in_doubt:
                # Each in-doubt fault may cost one duplicate, never more.
                assert figures[name]["duplicates"] <= served, figures
            else:
                assert figures[name]["duplicates"] == 0, f"{name}: sent twice: {figures}"
        with lock:
            plan["fault"] = None
    report(f"faults (every {FAULT_EVERY}th request, {FAULT_MESSAGES} messages each)", **figures)
    assert deployment.db.statuses() == {"sent": done}


# --- d. a worker killed mid-batch -----------------------------------------------------------------

KILL_MESSAGES = 60
KILL_CONCURRENCY = 4


def test_worker_killed_mid_batch_loses_nothing_and_resends_only_what_was_in_flight(
    processes: Processes, sqlite_url: str
) -> None:
    ses = start_fake_ses(processes, rate=10000, latency=0.2)
    deployment = Deployment(
        processes,
        database_url=sqlite_url,
        ses_endpoint=ses.endpoint_url,
        sendwell={"CONCURRENCY": KILL_CONCURRENCY, "LEASE_SECONDS": 3},
    )
    victim = deployment.start_worker()
    deployment.enqueue("kill", KILL_MESSAGES, per_call=KILL_MESSAGES)
    deployment.wait_until(
        "the first sends", lambda: ses.stats()["accepted"] >= KILL_MESSAGES // 10, timeout=60
    )
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    # What SES accepted from the dead worker, once the requests it was still handling are done
    # (a request cut off mid-body by the kill arrives but is never accepted).
    deployment.wait_until("SES to finish its requests", lambda: ses.stats()["in_flight"] == 0, 10)
    reached_ses = ses.stats()["accepted"]
    # What the dead worker held: its claims stay until their lease expires.
    held = {
        address
        for (address,) in deployment.db.rows(
            "SELECT r.address FROM sendwell_recipient r JOIN sendwell_message m "
            "ON m.id = r.message_id WHERE m.status = 'sending' AND r.status != 'sent'"
        )
    }
    recorded_before = deployment.db.statuses().get("sent", 0)
    [(recipients_recorded,)] = deployment.db.rows(
        "SELECT COUNT(*) FROM sendwell_recipient WHERE status = 'sent'"
    )
    # Sends SES received (it accepts every one of them: no faults here) that the dead worker
    # never recorded: the in-doubt ones. Each is sent again; nothing else may be.
    in_doubt = reached_ses - recipients_recorded
    assert held, "the worker was not killed mid-batch"
    assert recorded_before < KILL_MESSAGES
    # Its delivery task died with it: only the sweep (beside the workers) wakes a new one.
    deployment.start_sweeper(every=0.5)
    deployment.start_worker()
    deployment.wait_all_finished(KILL_MESSAGES)
    accepted = ses.messages()
    sent = deliveries(accepted)
    assert set(sent) == expected_addresses("kill", KILL_MESSAGES), "a message was lost"
    twice = {address for address, n in sent.items() if n > 1}
    assert all(n <= 2 for n in sent.values()), sent
    # Only messages the dead worker held can go twice, and only those it had in flight: at most
    # one per sending thread. (A request still in a socket buffer at the kill may reach SES after
    # it was counted, hence <= rather than ==.)
    assert twice <= held, (twice, held)
    assert in_doubt <= len(twice) <= KILL_CONCURRENCY, (in_doubt, twice)
    assert deployment.db.statuses() == {"sent": KILL_MESSAGES}
    # The in-doubt window of one send: from the request leaving the worker to its acceptance
    # being recorded. A worker that dies inside it leaves a message SES has but the outbox
    # does not know about; it is sent again.
    windows = sorted(
        (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        for started, finished in deployment.db.rows(
            "SELECT started_at, finished_at FROM sendwell_attempt WHERE outcome = 'sent'"
        )
    )
    report(
        "SIGKILL mid-batch",
        in_doubt_window_ms_median=round(windows[len(windows) // 2] * 1000),
        in_doubt_window_ms_max=round(windows[-1] * 1000),
        messages=KILL_MESSAGES,
        concurrency=KILL_CONCURRENCY,
        recorded_sent_before_kill=recorded_before,
        held_by_dead_worker=len(held),
        reached_ses_unrecorded_at_kill=in_doubt,
        duplicates=len(twice),
    )


# --- e. the sweep finds messages whose task was lost ---------------------------------------------


def test_sweep_wakes_a_worker_for_messages_whose_task_was_lost(
    processes: Processes, sqlite_url: str
) -> None:
    ses = start_fake_ses(processes, rate=10000)
    deployment = Deployment(
        processes,
        database_url=sqlite_url,
        ses_endpoint=ses.endpoint_url,
        sendwell={"MAX_SEND_RATE": 10_000, "MAX_24_HOUR_SEND": 10_000_000},
    )
    deployment.enqueue("lost", 10, per_call=10)
    [(table,)] = deployment.db.rows(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%dbtaskresult'"
    )
    assert deployment.db.rows(f"SELECT COUNT(*) FROM {table}") == [(1,)]
    deployment.db.execute(f"DELETE FROM {table}")  # the task is lost
    deployment.start_worker()
    time.sleep(1.5)  # the worker polls every 0.1 s: it had every chance to find work
    assert ses.stats()["accepted"] == 0
    assert deployment.db.statuses() == {"queued": 10}
    assert "woke=1" in deployment.manage("sendwell", "sweep")
    deployment.wait_all_finished(10, timeout=30)
    assert_each_delivered_once(deployment, ses.messages(), "lost", 10)


# --- f. a batch that outlasts its lease ----------------------------------------------------------


def test_batch_slower_than_the_lease_is_not_sent_twice(
    processes: Processes, sqlite_url: str
) -> None:
    """SES answers slowly: one worker's batch takes longer than LEASE_SECONDS. Messages it claimed
    but has not started yet look abandoned; the sweep wakes the idle worker, which claims them.
    Each message's own send is far shorter than the lease, so nothing may go out twice."""
    ses = start_fake_ses(processes, rate=10000, latency=0.4)
    deployment = Deployment(
        processes,
        database_url=sqlite_url,
        ses_endpoint=ses.endpoint_url,
        sendwell={
            "MAX_SEND_RATE": 10_000,
            "MAX_24_HOUR_SEND": 10_000_000,
            "LEASE_SECONDS": 1.5,
            "BATCH_SIZE": 20,
            "CONCURRENCY": 2,
        },
    )
    deployment.start_worker()
    deployment.start_worker()
    deployment.start_sweeper(every=0.5)
    deployment.enqueue("slow", 20, per_call=20)  # one batch, ~4 s on two threads
    deployment.wait_all_finished(20)
    accepted = ses.messages()
    report(
        "batch slower than the lease",
        messages=20,
        sends=len(accepted),
        worker_processes=len(worker_processes(deployment)),
    )
    assert_each_delivered_once(deployment, accepted, "slow", 20)


# --- f. a synchronous send inside the application's transaction (PostgreSQL) --------------------


def send_in_transaction(
    processes: Processes, postgres_url: str, ses: FakeSES, release: Path, *flags: str
) -> tuple[Deployment, subprocess.Popen[bytes]]:
    """Migrate a PostgreSQL outbox, then start tests/worker_project/send_in_transaction.py: it
    sends one message through ``ses`` inside a transaction held open until ``release`` exists."""
    deployment = Deployment(
        processes,
        database_url=postgres_url,
        ses_endpoint=ses.endpoint_url,
        sendwell={"MAX_SEND_RATE": 100, "MAX_24_HOUR_SEND": 1000},
    )
    deployment.manage("migrate", "-v0")
    command = [sys.executable, "-m", "tests.worker_project.send_in_transaction"]
    command += ["--subject", "in-transaction", "--release", str(release), *flags]
    return deployment, processes.start("send-in-transaction", command, deployment.env)


@pytest.mark.parametrize("rollback", [False, True], ids=["commit", "rollback"])
def test_sync_send_in_a_transaction_locks_nothing_shared_and_stays_recorded(
    processes: Processes, postgres_url: str, tmp_path: Path, rollback: bool
) -> None:
    """Under ATOMIC_REQUESTS a view's send_mail() runs inside the request's transaction. The
    limiter's shared rows must not stay locked until the request ends (every other sender would
    wait), and the record of the sent email must survive a rollback (SES cannot unsend it)."""
    import psycopg  # noqa: PLC0415

    release = tmp_path / "release"
    with FakeSES(verified_identities={"example.com"}) as ses:
        deployment, process = send_in_transaction(
            processes, postgres_url, ses, release, *(["--rollback"] if rollback else [])
        )
        # Sent and recorded while the application's transaction is still open: the record is
        # visible from outside it.
        deployment.wait_until(
            "the record of the send",
            lambda: deployment.db.rows("SELECT status FROM sendwell_message") == [("sent",)],
            60,
        )
        assert process.poll() is None, processes.logs()
        with psycopg.connect(postgres_url, autocommit=True) as other:
            # Another sender can take every row the limiter wrote; a lock held by the open
            # transaction would fail these after 2 s instead.
            other.execute("SET lock_timeout = '2s'")
            with other.transaction():
                for table in ("sendwell_ratebucket", "sendwell_sendcounter"):
                    assert other.execute(f"SELECT * FROM {table} FOR UPDATE").fetchall()
            # The application's own write is still its transaction's alone.
            app_rows = "SELECT COUNT(*) FROM sendwell_wakeup WHERE name LIKE 'app-row-%'"
            assert other.execute(app_rows).fetchone() == (0,)
        release.touch()
        assert process.wait(timeout=60) == 0, processes.logs()
        assert len(ses.messages) == 1
    assert deployment.db.rows(app_rows) == [(0 if rollback else 1,)]
    # Recorded once, with its SES id, whatever became of the application's transaction.
    [(status, ids)] = deployment.db.rows("SELECT status, ses_message_ids FROM sendwell_message")
    assert (status, ids) == ("sent", [ses.messages[0].message_id])
    assert deployment.db.rows("SELECT SUM(recipients) FROM sendwell_sendcounter") == [(1,)]


def test_sync_send_in_a_test_case_transaction_keeps_its_books_there(
    processes: Processes, postgres_url: str, tmp_path: Path
) -> None:
    """Under Django's TestCase the test's own transaction holds the books, so that they are
    rolled back with the test like every other row it wrote."""
    release = tmp_path / "release"
    with FakeSES(verified_identities={"example.com"}) as ses:
        deployment, process = send_in_transaction(
            processes, postgres_url, ses, release, "--as-testcase", "--rollback"
        )
        # "sent" is printed once send_messages() has returned, its records written.
        deployment.wait_until("the send", lambda: "sent " in processes.logs(), 60)
        assert len(ses.messages) == 1
        # Sent, but its record is the test transaction's, invisible from outside until the end.
        assert process.poll() is None, processes.logs()
        assert deployment.db.rows("SELECT COUNT(*) FROM sendwell_message") == [(0,)]
        release.touch()
        assert process.wait(timeout=60) == 0, processes.logs()
    # Rolled back with the test, as a TestCase does after each test.
    assert deployment.db.rows("SELECT COUNT(*) FROM sendwell_message") == [(0,)]
    assert deployment.db.rows("SELECT COUNT(*) FROM sendwell_sendcounter") == [(0,)]
