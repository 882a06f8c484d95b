"""Throughput of sendwell's SES backend against django-ses and django-anymail, on one moto server.

Run from the repository root::

    .venv/bin/python benchmarks/bench_backends.py [--messages 500] [--single 200] [--repeat 3]

Part A sends ``--messages`` messages over one connection per backend
(``with backend as conn: conn.send_messages(messages)``); inside it sendwell keeps up to
``SENDWELL["SYNC_CONCURRENCY"]`` SES calls in flight (its default, 4), while the peers send one
message after another (``--sync-concurrency 1`` measures sendwell that way too). Part B sends
``--single`` messages through ``django.core.mail.send_mail()`` one call at a time, so every call
builds a new backend (a new "connection"), as applications do.

Every backend talks to the same local moto server (``testservers.moto_ses.LocalSESServer``,
127.0.0.1 only) in the same process and run, interleaved: each repetition runs every backend once
per part, in a rotated order, and the median of the repetitions is reported. Before each timed
batch moto is reset and the sender verified again; after it, the messages moto accepted are
counted (and, for part A, matched by SES message id) so that nobody is fast by failing.

Each backend is configured the way a Django 6.1 project configures it without ``MAILERS``: with
its own classic settings (sendwell and django-ses: ``AWS_SES_*``/``USE_SES_V2``; anymail:
``ANYMAIL["AMAZON_SES_CLIENT_PARAMS"]``), and ``EMAIL_BACKEND`` switched per backend for part B.
All three use the SES v2 ``SendEmail`` API with raw MIME content. Throttles are set so that they
never bind (django-ses: ``AWS_SES_AUTO_THROTTLE=None``; sendwell: ``SENDWELL["MAX_SEND_RATE"]``
and ``["MAX_24_HOUR_SEND"]`` far above what moto can take), but sendwell's own per-message work is
measured as in production: it records every message in its database (``--db``: an SQLite file by
default, SQLite in memory, or a throw-away PostgreSQL) and reserves a slot in its shared rate
limiter (``--limiter``: the database, or a throw-away Redis).

The table also gives the CPU time per message of this process and of the moto process, which is
steadier than wall-clock throughput on a shared machine, and the cold start of each backend in a
fresh interpreter (``django.setup()`` + import, first and second ``send_mail()``).

Targets (the issue's acceptance criterion), checked at the end; the exit status is 1 if one fails,
2 if a delivery check fails:

* A: sendwell's messages/s >= the faster peer's;
* B: sendwell's messages/s >= 5 x django-ses's.

This is a benchmark script, not a test; it needs the ``test`` and ``bench`` extras.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this has benchmarks/ as sys.path[0]; the test servers it starts live at the
# repository root (testservers/, which is not in the wheel).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

# Talk to 127.0.0.1 only: no real AWS configuration, no instance metadata service, no proxy.
# Set before boto3 is imported or any session exists.
for _name in list(os.environ):
    if _name.startswith("AWS_"):
        del os.environ[_name]
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

REGION = "us-east-1"
SENDER = "sender@example.com"
RECIPIENT = "recipient@example.org"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
SUBJECT = "Your receipt #{index:04d}"
TEXT = (
    "Hello Ada,\n\n"
    "Thank you for your order #{index:04d}. We received your payment of 42.00 EUR and will ship "
    "your parcel within two working days.\n\n"
    "You can follow it at https://shop.example.com/orders/{index:04d}.\n\n"
    "-- \nThe Example Shop\n"
)
HTML = (
    "<!doctype html><html><body>"
    "<p>Hello Ada,</p>"
    "<p>Thank you for your order <b>#{index:04d}</b>. We received your payment of "
    "<b>42.00&nbsp;EUR</b> and will ship your parcel within two working days.</p>"
    '<p>You can <a href="https://shop.example.com/orders/{index:04d}">follow it here</a>.</p>'
    "<p>-- <br>The Example Shop</p>"
    "</body></html>"
)


@dataclass(frozen=True)
class Backend:
    name: str
    path: str
    # The SES message id a backend left on a message it sent (part A's delivery check).
    message_id: Callable[[Any], str | None]
    # The boto3 client the backend used for its last send (to report the API it called).
    client: Callable[[Any], Any]


def _sendwell_client(conn: Any) -> Any:
    from sendwell import aws  # noqa: PLC0415

    return aws.ses_client(conn.options)


BACKENDS = (
    Backend(
        "sendwell",
        "sendwell.backends.SESBackend",
        message_id=lambda message: getattr(message, "ses_message_id", None),
        client=_sendwell_client,
    ),
    Backend(
        "django-ses",
        "django_ses.SESBackend",
        message_id=lambda message: message.extra_headers.get("message_id"),
        client=lambda conn: conn.connection,
    ),
    Backend(
        "anymail",
        "anymail.backends.amazon_ses.EmailBackend",
        message_id=lambda message: message.anymail_status.message_id,
        client=lambda conn: conn.client,
    ),
)
BY_NAME = {backend.name: backend for backend in BACKENDS}


@dataclass(frozen=True)
class Setup:
    """Where everything lives for one run; passed as JSON to the cold-start child processes."""

    endpoint_url: str  # the moto server
    database: dict[str, Any]  # DATABASES["default"] for sendwell's records
    limiter: str = "database"  # SENDWELL["RATE_LIMITER"]
    redis_url: str | None = None
    sync_concurrency: int = 4  # SENDWELL["SYNC_CONCURRENCY"]: SES calls in flight in part A


def sqlite_database(name: str) -> dict[str, Any]:
    """SQLite for sendwell's records: a file as a small production site runs it, or memory."""
    database: dict[str, Any] = {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if name != ":memory:":
        # Django's recommended production settings for SQLite (and those of sendwell's tests).
        database["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return database


def configure_django(setup: Setup, *, sendwell_app: bool = True, migrate: bool = True) -> None:
    """settings.configure() with each backend's own classic settings, all pointing at moto."""
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415
    from django.core.management import call_command  # noqa: PLC0415

    endpoint_url = setup.endpoint_url
    # Safety net: botocore honours this for every client that is not given an endpoint itself.
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        USE_TZ=True,
        # sendwell records every message it sends (models, migrations); the peers need no app
        # to send (django_ses's models serve its optional blacklist and dashboard).
        INSTALLED_APPS=["sendwell"] if sendwell_app else [],
        DATABASES={"default": setup.database},
        DEFAULT_FROM_EMAIL=SENDER,
        # Part B switches this per backend; no MAILERS, so send_mail() uses it.
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        # sendwell (classic path: sendwell.conf.CLASSIC_SES_SETTINGS) and django-ses share these.
        AWS_SES_REGION_NAME=REGION,
        AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
        USE_SES_V2=True,
        # sendwell's endpoint setting.
        AWS_SES_ENDPOINT_URL=endpoint_url,
        # sendwell's rate limiter (its database bookkeeping runs for every message) would read
        # the account's limits with GetAccount, which moto's SES v2 lacks, and fall back to the
        # sandbox's 1/s. Give it limits that never bind, like the peers' disabled throttles.
        SENDWELL={
            "MAX_SEND_RATE": 1_000_000,
            "MAX_24_HOUR_SEND": 1_000_000_000,
            "RATE_LIMITER": setup.limiter,
            "REDIS_URL": setup.redis_url,
            "SYNC_CONCURRENCY": setup.sync_concurrency,
        },
        # django-ses's endpoint setting (a full URL; AWS_SES_REGION_ENDPOINT is a host name that
        # django-ses turns into https://<host>). Its auto-throttle (default 0.5) first asks SES
        # for the account's send rate and then sleeps to stay under half of it: a rate limiter,
        # not a cost of the code, and moto's SES v2 has no GetAccount. Off, as for the others.
        AWS_SES_REGION_ENDPOINT_URL=endpoint_url,
        AWS_SES_AUTO_THROTTLE=None,
        # anymail reads boto3 client parameters from here.
        ANYMAIL={
            "AMAZON_SES_CLIENT_PARAMS": {
                "endpoint_url": endpoint_url,
                "region_name": REGION,
                **CREDENTIALS,
            }
        },
    )
    django.setup()
    if sendwell_app and migrate:
        call_command("migrate", verbosity=0)


def quiet_deprecations() -> None:
    # Django 6.1 deprecates EMAIL_BACKEND/get_connection() in favour of MAILERS, and warns on
    # each use; the benchmark uses the classic path on purpose (the peers' documented setup).
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", PendingDeprecationWarning)


def new_message(index: int) -> Any:
    from django.core.mail import EmailMultiAlternatives  # noqa: PLC0415

    message = EmailMultiAlternatives(
        SUBJECT.format(index=index), TEXT.format(index=index), SENDER, [RECIPIENT]
    )
    message.attach_alternative(HTML.format(index=index), "text/html")
    return message


def send_one(index: int) -> int:
    from django.core.mail import send_mail  # noqa: PLC0415

    return send_mail(
        SUBJECT.format(index=index),
        TEXT.format(index=index),
        SENDER,
        [RECIPIENT],
        html_message=HTML.format(index=index),
    )


def forget_sendwell_clients() -> None:
    """Make sendwell create its boto3 client again, as the peers do on each open()."""
    from sendwell import aws  # noqa: PLC0415

    aws.clear_clients()


class DeliveryCheckError(AssertionError):
    pass


def check_delivered(
    ses: Any,
    backend: Backend,
    expected: int,
    message_ids: list[str | None] | None,
    *,
    records: bool = True,
) -> None:
    """Fail unless moto accepted exactly ``expected`` well-formed messages (with these ids).

    With ``records``, also that sendwell recorded each message it sent (and no one else did).
    """
    accepted = ses.sent_messages()
    where = f"{backend.name}: moto accepted {len(accepted)} of {expected} messages"
    if len(accepted) != expected:
        raise DeliveryCheckError(where)
    recorded = sendwell_records() if records else -1
    if recorded != -1 and recorded != (expected if backend.name == "sendwell" else 0):
        raise DeliveryCheckError(f"{backend.name}: sendwell's outbox holds {recorded} messages")
    if message_ids is not None and set(message_ids) != {m.message_id for m in accepted}:
        raise DeliveryCheckError(f"{where}, but not the message ids the backend reported")
    for sent in accepted:
        parsed = sent.parsed
        if (
            sent.source != SENDER
            or RECIPIENT not in sent.destinations
            or not str(parsed["Subject"]).startswith("Your receipt #")
            or parsed.get_content_type() != "multipart/alternative"
            or [part.get_content_type() for part in parsed.iter_parts()]
            != ["text/plain", "text/html"]
        ):
            raise DeliveryCheckError(f"{backend.name}: moto accepted an unexpected message")


def sendwell_records() -> int:
    """How many messages sendwell has recorded (its outbox table), or -1 if it has none."""
    from django.apps import apps  # noqa: PLC0415

    try:
        return int(apps.get_model("sendwell", "Message").objects.count())
    except LookupError:
        return -1


def fresh(ses: Any) -> None:
    """Empty moto and sendwell's tables (and limiter), so that every batch starts alike."""
    from django.apps import apps  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415

    ses.reset()
    ses.verify(SENDER)
    for model in apps.get_app_config("sendwell").get_models():
        model.objects.all().delete()
    redis_url = settings.SENDWELL.get("REDIS_URL")
    if redis_url:
        import redis  # noqa: PLC0415

        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()
    gc.collect()


@dataclass(frozen=True)
class Measure:
    """One timed batch: wall-clock throughput, and where the CPU time went per message."""

    rate: float  # messages/s, wall clock
    client_ms: float  # CPU time of this (the Django) process per message
    moto_ms: float  # CPU time of the moto server process per message


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stopwatch:
    def __init__(self, ses: Any) -> None:
        # LocalSESServer's moto process: its CPU time is moto's own cost per request.
        self.pid = ses._process.pid

    def __enter__(self) -> Stopwatch:
        self.moto = process_cpu(self.pid)
        self.cpu = time.process_time()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.moto = process_cpu(self.pid) - self.moto

    def measure(self, count: int) -> Measure:
        return Measure(count / self.wall, 1000 * self.cpu / count, 1000 * self.moto / count)


def run_part_a(ses: Any, backend: Backend, count: int) -> tuple[Measure, str]:
    """``count`` messages over one connection; return the measure and the API used."""
    from django.utils.module_loading import import_string  # noqa: PLC0415

    fresh(ses)
    backend_class = import_string(backend.path)
    messages = [new_message(index) for index in range(count)]
    if backend.name == "sendwell":
        # sendwell keeps its boto3 client for the process; make it build one in the timed
        # section, as the peers do in open(), so that each pays one client creation.
        forget_sendwell_clients()
    with Stopwatch(ses) as watch, backend_class() as conn:
        sent = conn.send_messages(messages)
        # The client the backend really used (anymail forgets it on close()).
        api = backend.client(conn).meta.service_model.service_name
    if sent != count:
        raise DeliveryCheckError(f"{backend.name}: send_messages() returned {sent}, not {count}")
    check_delivered(ses, backend, count, [backend.message_id(message) for message in messages])
    return watch.measure(count), api


def run_part_b(ses: Any, backend: Backend, count: int) -> Measure:
    """``count`` calls of send_mail(), each through a new backend instance."""
    from django.test.utils import override_settings  # noqa: PLC0415

    fresh(ses)
    with override_settings(EMAIL_BACKEND=backend.path):
        if backend.name == "sendwell":
            forget_sendwell_clients()  # the first call of the batch creates it, like a new process
        sent = 0
        with Stopwatch(ses) as watch:
            for index in range(count):
                sent += send_one(index)
    if sent != count:
        raise DeliveryCheckError(f"{backend.name}: send_mail() returned {sent} in all, not {count}")
    check_delivered(ses, backend, count, None)
    return watch.measure(count)


def warm_up(ses: Any, count: int) -> None:
    """Import every backend and send a few messages both ways, untimed."""
    for backend in BACKENDS:
        run_part_a(ses, backend, count)
        run_part_b(ses, backend, count)


# -- cold start: import and first send in a fresh interpreter --------------------------------


def cold_start(setup: Setup, backend: Backend) -> dict[str, float]:
    """Run this script in a new process to time importing ``backend`` and its first send_mail()."""
    child = subprocess.run(
        [
            *(sys.executable, __file__, "--cold", backend.name),
            *("--setup", json.dumps(dataclasses.asdict(setup))),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if child.returncode:
        raise RuntimeError(f"cold start of {backend.name} failed:\n{child.stderr}")
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def cold_child(name: str, setup: Setup) -> None:
    """Time django.setup() plus importing the backend, then two send_mail() calls.

    Only sendwell's run has sendwell in INSTALLED_APPS (and pays for loading its models and
    checks in django.setup()); a project using a peer would not install it.
    """
    from django.utils.module_loading import import_string  # noqa: PLC0415

    backend = BY_NAME[name]
    quiet_deprecations()
    start = time.perf_counter()
    configure_django(setup, sendwell_app=name == "sendwell", migrate=False)
    from django.conf import settings  # noqa: PLC0415

    settings.EMAIL_BACKEND = backend.path
    import_string(backend.path)
    imported = time.perf_counter()
    if name == "sendwell":  # untimed: a deployment migrates once, not at each start
        from django.core.management import call_command  # noqa: PLC0415

        call_command("migrate", verbosity=0)
    sending = time.perf_counter()
    send_one(0)
    first = time.perf_counter()
    send_one(1)
    second = time.perf_counter()
    print(
        json.dumps(
            {
                "import_ms": (imported - start) * 1000,
                "first_send_ms": (first - sending) * 1000,
                "second_send_ms": (second - first) * 1000,
            }
        )
    )


# -- machine and versions ---------------------------------------------------------------------


def machine() -> dict[str, str]:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        info["cpu"] = platform.processor() or "unknown"
    info["cores"] = str(os.cpu_count())
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        info["ram"] = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        info["ram"] = "unknown"
    for package in ("django", "boto3", "botocore", "moto", "django-ses", "django-anymail"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    from sendwell import __version__  # noqa: PLC0415

    info["sendwell"] = __version__ + sendwell_revision()
    return info


def sendwell_revision() -> str:
    """The git commit the measured sendwell came from, and whether its source had local edits."""
    root = Path(__file__).resolve().parent.parent
    try:
        git: dict[str, Any] = {"cwd": root, "capture_output": True, "text": True}
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], check=False, **git
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/sendwell"], check=False, **git
        ).stdout.strip()
    except OSError:
        return ""
    if not head:
        return ""
    return f" (git {head}{', uncommitted changes in src/sendwell' if dirty else ''})"


# -- report -----------------------------------------------------------------------------------


def load_average() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return " ".join(loadavg.read().split()[:3])
    except OSError:
        return "unknown"


@dataclass
class Results:
    part_a: dict[str, list[Measure]] = field(default_factory=lambda: {b.name: [] for b in BACKENDS})
    part_b: dict[str, list[Measure]] = field(default_factory=lambda: {b.name: [] for b in BACKENDS})
    api: dict[str, str] = field(default_factory=dict)
    cold: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: {b.name: [] for b in BACKENDS}
    )

    def median(self, part: str, name: str, what: str = "rate") -> float:
        return statistics.median(getattr(m, what) for m in getattr(self, part)[name])

    def spread(self, part: str, name: str) -> str:
        rates = [m.rate for m in getattr(self, part)[name]]
        return f"{min(rates):.0f}-{max(rates):.0f}"

    def as_json(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "part_a": {k: [dataclasses.asdict(m) for m in v] for k, v in self.part_a.items()},
            "part_b": {k: [dataclasses.asdict(m) for m in v] for k, v in self.part_b.items()},
            "cold": self.cold,
        }


def report(results: Results, args: argparse.Namespace) -> bool:
    names = [backend.name for backend in BACKENDS]
    a = {name: results.median("part_a", name) for name in names}
    b = {name: results.median("part_b", name) for name in names}
    print()
    print(
        f"Median of {args.repeat} interleaved runs. A: {args.messages} messages over one "
        f"connection. B: {args.single} send_mail() calls, a new connection each."
    )
    print("msg/s is wall clock (min-max over the runs); cpu ms/msg: this process / moto's.")
    header = (
        f"{'backend':<11} {'API':<6} | {'A msg/s':>7} {'min-max':>9} {'cpu ms/msg':>11} "
        f"{'sendwell/x':>10} | {'B msg/s':>7} {'min-max':>9} {'cpu ms/msg':>11} {'sendwell/x':>10}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        cpu_a = (
            f"{results.median('part_a', name, 'client_ms'):.1f}/"
            f"{results.median('part_a', name, 'moto_ms'):.1f}"
        )
        cpu_b = (
            f"{results.median('part_b', name, 'client_ms'):.1f}/"
            f"{results.median('part_b', name, 'moto_ms'):.1f}"
        )
        print(
            f"{name:<11} {results.api.get(name, '?'):<6} | {a[name]:>7.1f} "
            f"{results.spread('part_a', name):>9} {cpu_a:>11} {a['sendwell'] / a[name]:>9.2f}x | "
            f"{b[name]:>7.1f} {results.spread('part_b', name):>9} {cpu_b:>11} "
            f"{b['sendwell'] / b[name]:>9.2f}x"
        )
    if any(results.cold.values()):
        print()
        print(
            "Cold start in a fresh interpreter (median of "
            f"{len(results.cold['sendwell'])}): django.setup() + import the backend, "
            "then send_mail() twice"
        )
        print(
            f"{'backend':<11} {'setup ms':>10} {'1st send ms':>12} {'setup+1st ms':>14} "
            f"{'2nd send ms':>12}"
        )
        for name in names:
            runs = results.cold[name]
            print(
                f"{name:<11} {statistics.median(r['import_ms'] for r in runs):>10.1f} "
                f"{statistics.median(r['first_send_ms'] for r in runs):>12.1f} "
                f"{statistics.median(r['import_ms'] + r['first_send_ms'] for r in runs):>14.1f} "
                f"{statistics.median(r['second_send_ms'] for r in runs):>12.1f}"
            )

    fastest_peer = max((name for name in names if name != "sendwell"), key=a.__getitem__)
    target_a = a["sendwell"] >= a[fastest_peer]
    target_b = b["sendwell"] >= 5 * b["django-ses"]
    print()
    print(
        f"Target A: sendwell {a['sendwell']:.1f} >= fastest peer ({fastest_peer}) "
        f"{a[fastest_peer]:.1f} msg/s: {'PASS' if target_a else 'FAIL'} "
        f"(ratio {a['sendwell'] / a[fastest_peer]:.2f})"
    )
    print(
        f"Target B: sendwell {b['sendwell']:.1f} >= 5 x django-ses {b['django-ses']:.1f} "
        f"= {5 * b['django-ses']:.1f} msg/s: {'PASS' if target_b else 'FAIL'} "
        f"(ratio {b['sendwell'] / b['django-ses']:.2f})"
    )
    return target_a and target_b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500, help="part A batch size (500)")
    parser.add_argument("--single", type=int, default=200, help="part B send_mail() calls (200)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (3)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed sends per backend (5)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start timings")
    parser.add_argument(
        "--db",
        choices=["file", "memory", "postgres"],
        default="file",
        help="sendwell's database: SQLite file in WAL mode (default), SQLite in memory, or a "
        "throw-away local PostgreSQL (testservers.postgres; fsync off)",
    )
    parser.add_argument(
        "--limiter",
        choices=["database", "redis"],
        default="database",
        help="sendwell's rate limiter: in the database (default) or a throw-away local Redis",
    )
    parser.add_argument(
        "--sync-concurrency",
        type=int,
        default=4,
        help="sendwell's SENDWELL['SYNC_CONCURRENCY']: SES calls one send_messages() keeps in "
        "flight (4, the default; 1 sends one after another, as the peers do)",
    )
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    parser.add_argument("--cold", choices=sorted(BY_NAME), help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold:
        cold_child(args.cold, Setup(**json.loads(args.setup)))
        return 0

    from testservers.moto_ses import LocalSESServer  # noqa: PLC0415

    # On SIGTERM (e.g. from `timeout`), unwind: stop moto and the other servers, delete files.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with contextlib.ExitStack() as stack:
        ses = stack.enter_context(LocalSESServer(region=REGION))
        if args.db == "postgres":
            from testservers.postgres import PostgresServer  # noqa: PLC0415

            database = stack.enter_context(PostgresServer()).django_database()
        elif args.db == "memory":
            database = sqlite_database(":memory:")
        else:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="sendwell-bench-"))
            database = sqlite_database(str(Path(directory) / "bench.sqlite3"))
        redis_url = None
        if args.limiter == "redis":
            from testservers.redis import RedisServer  # noqa: PLC0415

            redis_url = stack.enter_context(RedisServer()).url
        setup = Setup(ses.endpoint_url, database, args.limiter, redis_url, args.sync_concurrency)
        return run(args, ses, setup)


def run(args: argparse.Namespace, ses: Any, setup: Setup) -> int:
    info = machine()
    print("Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    results = Results()
    load_before = load_average()
    print(f"Load average before: {load_before} (the benchmark itself keeps about 2 cores busy)")
    print(f"moto server: {ses.endpoint_url} (python -m moto.server, threaded werkzeug)")
    print(
        f"sendwell's records: {setup.database['ENGINE'].rpartition('.')[2]} "
        f"{setup.database['NAME']}; rate limiter: {setup.limiter}; SES calls in flight: "
        f"{setup.sync_concurrency}"
    )
    configure_django(setup)
    quiet_deprecations()
    # Imports, moto's own lazy set-up of its SES v2 backend, first clients: all untimed.
    warm_up(ses, args.warmup)
    for repetition in range(args.repeat):
        shift = repetition % len(BACKENDS)
        order = BACKENDS[shift:] + BACKENDS[:shift]
        for backend in order:
            measure, api = run_part_a(ses, backend, args.messages)
            results.part_a[backend.name].append(measure)
            results.api[backend.name] = api
            print(f"run {repetition + 1} A {backend.name:<11} {measure.rate:8.1f} msg/s")
        for backend in order:
            measure = run_part_b(ses, backend, args.single)
            results.part_b[backend.name].append(measure)
            print(f"run {repetition + 1} B {backend.name:<11} {measure.rate:8.1f} msg/s")
        sys.stdout.flush()
    if not args.no_cold:
        for _ in range(args.repeat):
            for backend in BACKENDS:
                fresh(ses)
                results.cold[backend.name].append(cold_start(setup, backend))
                # (An in-memory database is the child's own: nothing to count here.)
                check_delivered(ses, backend, 2, None, records=False)
    ses.reset()
    load_after = load_average()
    print(f"Load average after: {load_after}")
    passed = report(results, args)
    if args.json:
        document = {
            "machine": info,
            "load_average": {"before": load_before, "after": load_after},
            "arguments": {
                "messages": args.messages,
                "single": args.single,
                "repeat": args.repeat,
                "db": args.db,
                "limiter": args.limiter,
            },
            **results.as_json(),
            "passed": passed,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DeliveryCheckError as error:
        print(f"DELIVERY CHECK FAILED: {error}", file=sys.stderr)
        sys.exit(2)
