"""Shared plumbing for the outbox benchmarks (``bench_outbox_rate.py``, ``bench_outbox_scale.py``).

The benchmark scripts themselves never import Django: every process that does - the "driver"
(migrate, enqueue, read the outbox), the task workers, django-ses - is a child configured by
environment variables (``benchmarks/outbox_settings.py``), so one script can run SQLite and then
PostgreSQL+Redis without reconfiguring Django in-process. Children run in their own process
groups, and :class:`Processes` kills every group it started, whatever happens.

Run as a script, this module is the driver: ``python benchmarks/outbox_harness.py <command>``
with ``DJANGO_SETTINGS_MODULE=outbox_settings``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as scripts, the benchmarks have benchmarks/ as sys.path[0]; the test servers they start
# live at the repository root (testservers/, which is not in the wheel).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from testservers.fake_ses import AcceptedMessage, FakeSESProcess

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
SENDER = "sender@example.com"


def isolated_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for children: no real AWS configuration, 127.0.0.1 only, our settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        DJANGO_SETTINGS_MODULE="outbox_settings",
        PYTHONPATH=os.pathsep.join([str(BENCH_DIR), str(REPO / "src"), str(REPO)]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


# --- processes ------------------------------------------------------------------------------


@dataclass
class Processes:
    """Every child process a benchmark starts, each in its own process group; ``stop_all()``
    (called from ``finally``) terminates the groups, then kills what is left."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, command: Sequence[str], env: dict[str, str], *, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        out: Any = log.open("ab") if log is not None else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                list(command),
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if log is None else out,
                stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if log is not None:
                out.close()
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        # The group may hold children (rq's work horses) even after its leader exited.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def stop_all(self) -> None:
        while self.started:
            self.stop(self.started.pop())


def run_driver(
    command: Sequence[str], env: dict[str, str], timeout: float = 600, script: Path | None = None
) -> Any:
    """Run this module (or ``script``) as the driver with ``command``; return the JSON it prints
    last (a driver starts no processes of its own; one that outlives ``timeout`` is killed)."""
    result = subprocess.run(
        [PYTHON, str(script or Path(__file__).resolve()), *command],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"driver {' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the fake SES endpoint ------------------------------------------------------------------


def start_fake_ses(processes: Processes, **settings: Any) -> FakeSESProcess:
    """``python -m testservers.fake_ses`` with ``settings`` (FakeSESProcess's: rate, quota,
    latency, enforce_rate, get_account, get_send_quota), in the children's environment and
    stopped with them."""
    fake = FakeSESProcess(env=isolated_environ(), **settings)
    fake.start()
    assert fake.process is not None
    processes.started.append(fake.process)
    return fake


# --- workers --------------------------------------------------------------------------------


def worker_command(kind: str) -> list[str]:
    if kind == "rq":
        # rq forks a work horse per job by default; the job runs sendwell's threaded drain.
        # django-tasks-rq's Job class is required: rq's own cannot call a django.tasks Task.
        return [
            PYTHON, "-m", "django", "rqworker",
            "--job-class", "django_tasks_rq.Job", "--with-scheduler", "default",
        ]  # fmt: skip
    return [
        PYTHON, "-m", "django", "db_worker",
        "--interval", "0.1", "--no-startup-delay", "--no-reload", "--verbosity", "0",
    ]  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children it has waited for (rq's work horses)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    with open("/proc/loadavg") as load:
        return " ".join(load.read().split()[:3])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) / Threads of ``pid`` from /proc, in kB (Threads: a count)."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(rest.split()[0])
    return values


# --- analysis -------------------------------------------------------------------------------


def arrival_figures(times: list[float], limit: float) -> dict[str, Any]:
    """Rates and per-second counts of messages that arrived at ``times`` (Unix seconds)."""
    times = sorted(times)
    n = len(times)
    if n < 2:
        return {"count": n}
    # Whole calendar seconds, as a person counting a log would.
    per_second: dict[int, int] = {}
    for t in times:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    # Every sliding one-second window (how SES and the fake endpoint judge a rate): for each
    # arrival, the arrivals in the second that ends with it.
    sliding_max, over_windows, i = 0, 0, 0
    for j, t in enumerate(times):
        while times[i] <= t - 1.0:
            i += 1
        in_window = j - i + 1
        sliding_max = max(sliding_max, in_window)
        if in_window > limit:
            over_windows += 1
    # Steady state: the middle 80 % of the arrivals (no ramp-up, no tail).
    lo, hi = n // 10, n - 1 - n // 10
    return {
        "count": n,
        "first": times[0],
        "last": times[-1],
        "overall_rate": (n - 1) / (times[-1] - times[0]),
        "steady_rate": (hi - lo) / (times[hi] - times[lo]),
        "max_per_second": max(per_second.values()),
        "seconds_over": sum(1 for c in per_second.values() if c > limit),
        "max_sliding_second": sliding_max,
        "sliding_windows_over": over_windows,
    }


def delivery_figures(
    messages: list[AcceptedMessage], expected: set[str]
) -> dict[str, int | list[str]]:
    """Duplicates and losses among the messages the endpoint accepted (one recipient each)."""
    seen: dict[str, int] = {}
    for message in messages:
        for address in message.destinations:
            seen[address] = seen.get(address, 0) + 1
    return {
        "duplicates": sum(c - 1 for a, c in seen.items() if a in expected and c > 1),
        "lost": len(expected - set(seen)),
        "unexpected": len(set(seen) - expected),
    }


def recipients(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:06d}@example.net" for i in range(count)]


# --- the machine ----------------------------------------------------------------------------


def _command_output(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = ""
    for line in _command_output(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.partition(":")[2].strip()
    memory = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    os_name = ""
    with contextlib.suppress(OSError), open("/etc/os-release") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                os_name = line.partition("=")[2].strip().strip('"')
    import sqlite3  # noqa: PLC0415

    versions = {}
    for package in (
        "Django", "django-tasks-db", "django-tasks-rq", "rq", "redis", "psycopg", "boto3",
        "django-ses",
    ):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": os_name,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def print_machine() -> None:
    for key, value in machine().items():
        print(f"  {key:>8}: {value}")


def print_table(title: str, rows: Sequence[tuple[str, ...]]) -> None:
    print(f"\n{title}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))


# --- the driver (a child process with Django configured) ------------------------------------


def _driver_setup() -> None:
    import django  # noqa: PLC0415

    django.setup()


def _cmd_migrate(args: argparse.Namespace) -> dict[str, Any]:
    from django.core.management import call_command  # noqa: PLC0415

    call_command("migrate", verbosity=0, interactive=False)
    return {"migrated": True}


def _cmd_enqueue(args: argparse.Namespace) -> dict[str, Any]:
    """Queue ``count`` messages through the outbox backend, ``batch`` per send_messages()."""
    from django.core.mail import EmailMessage, mailers  # noqa: PLC0415

    addresses = recipients(args.prefix, args.count)
    backend = mailers.default
    started = time.time()
    batches: list[float] = []  # when each send_messages() returned: its rows are committed
    for start in range(0, args.count, args.batch):
        batch = [
            EmailMessage(
                f"Your receipt #{index:06d}",
                f"Hello,\n\nthank you for order #{index:06d}.\n\n-- \nThe Example Shop\n",
                SENDER,
                [address],
            )
            for index, address in enumerate(addresses[start : start + args.batch], start)
        ]
        backend.send_messages(batch)
        batches.append(time.time())
    return {"started": started, "finished": time.time(), "count": args.count, "batches": batches}


def _cmd_outbox(args: argparse.Namespace) -> dict[str, Any]:
    """Message statuses and attempt outcomes, once nothing is queued or in flight (or timeout)."""
    from django.db.models import Count  # noqa: PLC0415

    from sendwell.models import Attempt, Message, MessageStatus  # noqa: PLC0415

    deadline = time.monotonic() + args.settle
    while time.monotonic() < deadline:
        busy = Message.objects.filter(
            status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]
        ).exists()
        if not busy:
            break
        time.sleep(0.25)
    statuses = dict(
        Message.objects.order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    outcomes = dict(
        Attempt.objects.order_by()
        .values_list("outcome")
        .annotate(n=Count("pk"))
        .values_list("outcome", "n")
    )
    return {"statuses": statuses, "attempts": outcomes}


def _error_text(exc: BaseException) -> str:
    """``module.Class [code]: message`` of an exception, in one line of at most 300 characters."""
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            kind += f" [{code}]"
    return f"{kind}: {exc}".replace("\n", " ")[:300]


class _LogCollector(logging.Handler):
    """Keeps the log records of this process (the driver's own loggers go nowhere else)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:400])


def _call_figures(
    calls: list[tuple[float, float, int, str | None]], log: _LogCollector
) -> dict[str, Any]:
    """What a loop of ``(started, finished, sent, error)`` calls did, for the JSON answer."""
    errors: dict[str, int] = {}
    examples: list[str] = []
    for _, _, _, error in calls:
        if error is None:
            continue
        kind = error.partition(":")[0]
        errors[kind] = errors.get(kind, 0) + 1
        if error not in examples and len(examples) < 5:
            examples.append(error)
    first_error = next((i for i, call in enumerate(calls) if call[3] is not None), None)
    distinct_logs = list(dict.fromkeys(log.lines))
    return {
        "started": calls[0][0] if calls else time.time(),
        "finished": calls[-1][1] if calls else time.time(),
        "calls": len(calls),
        "sent": sum(call[2] for call in calls),
        "exceptions": sum(errors.values()),
        "errors": errors,
        "error_examples": examples,
        "first_error_index": first_error,
        "durations": [round(call[1] - call[0], 6) for call in calls],
        "log_lines": len(log.lines),
        "log_examples": distinct_logs[:8],
    }


def _collect_logs() -> _LogCollector:
    collector = _LogCollector()
    for name in ("sendwell", "django_ses", "botocore.retries", "botocore.retryhandler"):
        logging.getLogger(name).addHandler(collector)
    logging.getLogger("sendwell").setLevel(logging.INFO)
    return collector


def _example_message(index: int, address: str) -> tuple[str, str, str, list[str]]:
    return (
        f"Your receipt #{index:06d}",
        f"Hello,\n\nthank you for order #{index:06d}.\n\n-- \nThe Example Shop\n",
        SENDER,
        [address],
    )


def _cmd_send_mail_loop(args: argparse.Namespace) -> dict[str, Any]:
    """``count`` calls of ``django.core.mail.send_mail()`` (one recipient each), one after
    another, through the default mailer (``SENDWELL_BENCH_BACKEND``): a new backend per call, as
    applications send. Every exception is caught, counted and described, never raised."""
    from django.core.mail import send_mail  # noqa: PLC0415

    log = _collect_logs()
    calls: list[tuple[float, float, int, str | None]] = []
    for index, address in enumerate(recipients(args.prefix, args.count)):
        started = time.time()
        try:
            sent, error = send_mail(*_example_message(index, address)), None
        except Exception as exc:
            sent, error = 0, _error_text(exc)
        calls.append((started, time.time(), int(sent or 0), error))
    return _call_figures(calls, log)


def _cmd_django_ses(args: argparse.Namespace) -> dict[str, Any]:
    """Send ``count`` messages serially through django-ses's backend, over one connection.

    ``--each``: one ``send_messages([message])`` per message over that connection, every
    exception caught and counted (without it, one ``send_messages()`` of all, which raises).
    ``AWS_SES_AUTO_THROTTLE`` comes from the settings (``SENDWELL_BENCH_DJANGO_SES_THROTTLE``)."""
    from django.core.mail import EmailMessage  # noqa: PLC0415
    from django_ses import SESBackend  # noqa: PLC0415

    backend = SESBackend(
        aws_access_key="testing",
        aws_secret_key="testing-secret",
        aws_region_name="us-east-1",
        aws_region_endpoint=args.url,
        use_ses_v2=True,  # as sendwell: SES v2 SendEmail with raw MIME
    )
    messages = [
        EmailMessage(
            f"Your receipt #{index:06d}",
            f"Hello,\n\nthank you for order #{index:06d}.\n\n-- \nThe Example Shop\n",
            SENDER,
            [address],
        )
        for index, address in enumerate(recipients(args.prefix, args.count))
    ]
    if args.each:
        log = _collect_logs()
        calls: list[tuple[float, float, int, str | None]] = []
        with backend:
            for message in messages:
                started = time.time()
                try:
                    sent, error = backend.send_messages([message]), None
                except Exception as exc:
                    sent, error = 0, _error_text(exc)
                calls.append((started, time.time(), int(sent or 0), error))
        return _call_figures(calls, log)
    started = time.time()
    with backend:
        sent = backend.send_messages(messages)
    return {"started": started, "finished": time.time(), "sent": sent}


def _cmd_cold_start(args: argparse.Namespace) -> dict[str, Any]:
    """Time, in this fresh process (Django set up, as a worker is before its first task), the
    steps of a first delivery before and including its first SES call: what a worker pays
    once, on the first task it runs. Wall clock and this process's CPU time, per step."""
    import importlib  # noqa: PLC0415

    steps: list[dict[str, Any]] = []

    def step(name: str, run: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            value = run()
            error = None
        except Exception as exc:
            value, error = None, _error_text(exc)
        steps.append(
            {
                "step": name,
                "wall": time.perf_counter() - wall,
                "cpu": time.process_time() - cpu,
                "error": error,
            }
        )
        return value

    step(
        "import sendwell.tasks (delivery, boto3)", lambda: importlib.import_module("sendwell.tasks")
    )
    from django.core.mail import EmailMessage  # noqa: PLC0415

    from sendwell import aws, pacing, quota  # noqa: PLC0415
    from sendwell.mime import prepare  # noqa: PLC0415
    from sendwell.worker import route_for  # noqa: PLC0415

    route = step("build the route (mailer, SES transport)", lambda: route_for("default"))
    options = route.ses.options
    step("boto3 client for the configured API", lambda: aws.ses_client(options))
    limits = step(
        "account limits (GetAccount / GetSendQuota, stored)", lambda: quota.current_limits(options)
    )
    pacer = pacing.pacer_for(options)
    step("first send slot (limiter, learned state)", lambda: pacer.acquire(1, max_wait=5.0))
    email = EmailMessage("Cold start", "Hello.\n", SENDER, ["cold-start@example.net"])
    prepared = prepare(email, configuration_set=None)
    step("first SES call (new connection)", lambda: route.ses.send(prepared))
    step("second SES call (kept-alive connection)", lambda: route.ses.send(prepared))
    return {
        "steps": steps,
        "limits": None if limits is None else {"rate": limits.rate, "source": limits.rate_source},
    }


_COMMANDS = {
    "migrate": _cmd_migrate,
    "enqueue": _cmd_enqueue,
    "outbox": _cmd_outbox,
    "django-ses": _cmd_django_ses,
    "send-mail-loop": _cmd_send_mail_loop,
    "cold-start": _cmd_cold_start,
}


def _driver_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate")
    enqueue = commands.add_parser("enqueue")
    enqueue.add_argument("--count", type=int, required=True)
    enqueue.add_argument("--batch", type=int, default=100)
    enqueue.add_argument("--prefix", default="user")
    outbox = commands.add_parser("outbox")
    outbox.add_argument("--settle", type=float, default=30.0)
    django_ses = commands.add_parser("django-ses")
    django_ses.add_argument("--count", type=int, required=True)
    django_ses.add_argument("--url", required=True)
    django_ses.add_argument("--prefix", default="djses")
    django_ses.add_argument("--each", action="store_true")
    loop = commands.add_parser("send-mail-loop")
    loop.add_argument("--count", type=int, required=True)
    loop.add_argument("--prefix", default="sync")
    commands.add_parser("cold-start")
    args = parser.parse_args(argv)
    _driver_setup()
    print(json.dumps(_COMMANDS[args.command](args)))
    return 0


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()


if __name__ == "__main__":
    raise SystemExit(_driver_main())
