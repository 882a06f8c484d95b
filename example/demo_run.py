"""How ``example/demo.py`` runs things: ``manage.py`` commands and ``db_worker`` processes with
only environment variables set, as a deployment would, and the demo's output. demo.py reads top
to bottom as the steps; this and ``demo_report.py`` are what it calls."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from dotenv import dotenv_values

from testservers.base import TestServer, stop_process
from testservers.fake_ses import FakeSESProcess

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_DIR = EXAMPLE_DIR.parent
DEMO_DIR = REPO_DIR / ".demo"
DATABASE = DEMO_DIR / "db.sqlite3"

SENDER = "demo@example.com"
SENDER_HEADER = f"sendwell demo <{SENDER}>"
RECIPIENT = "you@example.net"
COMMAND_TIMEOUT = 120
DELIVERY_TIMEOUT = 60  # seconds the workers get to deliver the batch
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL
# db_worker: look for tasks every 0.2 s (default 1 s), start at once, never autoreload.
WORKER_OPTIONS = ("--interval", "0.2", "--no-startup-delay", "--no-reload")
PENDING_STATUSES = frozenset({"queued", "sending", "deferred"})

# Every variable sendwell's email_settings() reads: a stray value in the caller's shell or in
# example/.env must not change what the demo shows.
EMAIL_VARIABLES = (
    "USE_SES",
    "EMAIL_QUEUE",
    "EMAIL_FAILOVER",
    "AWS_SES_REGION_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SES_CONFIGURATION_SET",
    "USE_SES_V2",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SESV2",
    "AWS_ENDPOINT_URL_SES",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_TIMEOUT",
    "EMAIL_SSL_CAFILE",
    "DEFAULT_FROM_EMAIL",
    "SERVER_EMAIL",
)
SITE_VARIABLES = ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE", "SNS_TOPIC_ARNS")
# The SNS topic the site accepts SES feedback from (none is ever posted: the demo simulates it).
DEMO_TOPIC = "arn:aws:sns:us-east-1:000000000000:sendwell-demo-feedback"


class DemoError(Exception):
    """A step failed; the message says which and why."""


# --- output ----------------------------------------------------------------------------------

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def step(text: str) -> None:
    print(f"\n{BOLD}==> {text}{RESET}", flush=True)


def detail(text: str) -> None:
    print(textwrap.indent(text.rstrip(), "    "), flush=True)


# --- running manage.py -----------------------------------------------------------------------


def child_environment(variant: Mapping[str, str]) -> dict[str, str]:
    """The environment for one ``manage.py`` run: the caller's, minus anything AWS or email,
    plus the site's throw-away values and ``variant`` (the guide's variables for a transport)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in EMAIL_VARIABLES and key not in SITE_VARIABLES
    }
    # example/.env is read by the production settings too; an empty value means "not set" to
    # sendwell, so blank out whatever the file sets that this variant does not.
    env_file = EXAMPLE_DIR / ".env"
    if env_file.is_file():
        for key in dotenv_values(env_file):
            if key in EMAIL_VARIABLES or key in SITE_VARIABLES:
                env[key] = ""
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_site.settings.production",
            "SECRET_KEY": "sendwell-demo-only-not-secret",
            "DEBUG": "False",
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "DATABASE": str(DATABASE),
            "SNS_TOPIC_ARNS": DEMO_TOPIC,
            "DEFAULT_FROM_EMAIL": SENDER_HEADER,
            "SERVER_EMAIL": SENDER,
            # Never look for real credentials or at the EC2 instance metadata service.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(variant)
    return env


def show_variables(variant: Mapping[str, str]) -> None:
    shown = []
    for key, value in variant.items():
        secret = "SECRET" in key or "PASSWORD" in key
        shown.append(f"{key}={'********' if secret else value}")
    detail("environment: " + " ".join(shown))


def manage(
    args: Sequence[str],
    variant: Mapping[str, str],
    *,
    echo: bool = True,
    show_command: bool = True,
) -> tuple[str, str]:
    """Run ``example/manage.py ARGS`` with the given variables; return its stdout and stderr.

    The command and its output are printed (only its stderr with ``echo=False``)."""
    command = [sys.executable, "manage.py", *args]
    if show_command:
        print(f"    $ manage.py {' '.join(args)}", flush=True)
    try:
        result = subprocess.run(
            command,
            cwd=EXAMPLE_DIR,
            env=child_environment(variant),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DemoError(f"manage.py {args[0]} did not finish in {COMMAND_TIMEOUT}s") from error
    output = result.stdout if echo or result.returncode else ""
    # Keep the first line's indentation (`sendwell status` right-aligns its statuses).
    output = (output + result.stderr).rstrip().lstrip("\n")
    if output:
        detail(textwrap.indent(output, "  "))
    if result.returncode != 0:
        raise DemoError(f"manage.py {args[0]} exited with {result.returncode} (output above)")
    return result.stdout, result.stderr


# --- part 2: the workers ---------------------------------------------------------------------


class Workers(TestServer):
    """``manage.py db_worker`` processes: django-tasks-db's workers, which run sendwell's
    delivery task. Each logs to ``.demo/worker-N.log``; all are stopped on exit."""

    def __init__(self, count: int, variant: Mapping[str, str]) -> None:
        self.count = count
        self.variant = variant
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []
        self.log_files = [DEMO_DIR / f"worker-{number}.log" for number in range(1, count + 1)]

    def start(self) -> None:
        try:
            for number, log_file in enumerate(self.log_files, start=1):
                args = ["db_worker", *WORKER_OPTIONS, "--worker-id", f"demo-worker-{number}"]
                with log_file.open("wb") as log:
                    self.processes.append(
                        subprocess.Popen(
                            [sys.executable, "manage.py", *args],
                            cwd=EXAMPLE_DIR,
                            env=child_environment(self.variant),
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                        )
                    )
                self.pids.append(self.processes[-1].pid)
                detail(
                    f"worker {number}: pid {self.processes[-1].pid}, "
                    f"log {log_file.relative_to(REPO_DIR)}"
                )
        except BaseException:
            self.stop()
            raise

    def check_running(self) -> None:
        for number, process in enumerate(self.processes, start=1):
            if process.poll() is not None:
                log = self.log_files[number - 1].relative_to(REPO_DIR)
                raise DemoError(f"worker {number} exited with {process.returncode}; see {log}")

    def name_of(self, pid: str) -> str:
        """``worker N`` for a worker's process id (sendwell records it in each attempt)."""
        for number, known in enumerate(self.pids, start=1):
            if str(known) == pid:
                return f"worker {number}"
        return f"process {pid}"

    def stop(self) -> None:
        processes, self.processes = self.processes, []
        for process in processes:
            process.terminate()  # all at once: each finishes its task meanwhile
        for process in processes:
            stop_process(process, STOP_TIMEOUT)


def status_counts(output: str) -> dict[str, int]:
    """``manage.py sendwell status``'s ``<status>: <count>`` lines."""
    counts = {}
    for line in output.splitlines():
        match = re.fullmatch(r"\s*([a-z_]+): (\d+)", line)
        if match:
            counts[match[1]] = int(match[2])
    return counts


def wait_for_endpoint(
    ses: FakeSESProcess, workers: Workers, expected: int, started: float
) -> float:
    """Wait until the endpoint has accepted ``expected`` recipients; print progress every 2 s.
    Returns the seconds it took from ``started``."""
    deadline = started + DELIVERY_TIMEOUT
    next_report = started + 2
    while True:
        workers.check_running()
        accepted = sum(len(call.destinations) for call in ses.messages())
        now = time.monotonic()
        if accepted >= expected:
            return now - started
        if now > deadline:
            raise DemoError(
                f"after {DELIVERY_TIMEOUT}s the endpoint has {accepted} of {expected} recipients"
            )
        if now >= next_report:
            detail(f"  {now - started:4.1f}s: {accepted:>3} of {expected} recipients accepted")
            next_report += 2
        time.sleep(0.2)


def wait_for_outbox(variant: Mapping[str, str]) -> dict[str, int]:
    """Run ``manage.py sendwell status`` until nothing is queued, sending or deferred."""
    deadline = time.monotonic() + 20
    while True:
        output, _ = manage(["sendwell", "status"], variant)
        counts = status_counts(output)
        if not PENDING_STATUSES & {status for status, count in counts.items() if count}:
            return counts
        if time.monotonic() > deadline:
            raise DemoError(f"the outbox still has pending messages: {counts}")
        time.sleep(1)
