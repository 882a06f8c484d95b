"""``./dev demo``: send real email through the example site's production settings.

Part 1, sending at once: it starts two local servers on 127.0.0.1 - moto's Amazon SES endpoint
and an SMTP server with STARTTLS and AUTH - then runs the example site's ``manage.py`` in
subprocesses with ``DJANGO_SETTINGS_MODULE=example_site.settings.production`` and only
environment variables set, as a deployment would: once per transport (SES v2, SES v1, SMTP),
``sendtestemail`` and ``send_demo_email`` (text + HTML + attachment). It prints what each server
received. Then the feedback loop: it sends to SES's mailbox simulator addresses for a bounce and
a complaint, has ``manage.py sendwell simulate`` process the feedback SES would publish (moto
publishes none), shows both addresses on the suppression list, and checks that the next send to
them reaches nothing and is recorded as suppressed.

Part 2, queued sending (``EMAIL_QUEUE=True``): it starts a local SES account (the project's
FakeSES, which reports a max send rate of 5 recipients/s through GetAccount and refuses calls
over it), queues a batch of 25 messages (``manage.py queue_demo_batch``, timed: it returns at
once), starts two ``manage.py db_worker`` processes and waits until the endpoint has every
recipient and ``manage.py sendwell status`` shows everything sent. It prints the recipients the
endpoint received per second next to the limit, checks that none was lost, duplicated or
refused, and that no second held more than the limit; then creates the admin user demo/demo and
counts the rows the admin's message list shows (Django's test client, logged in).

``--count``, ``--rate``, ``--cc-every`` and ``--workers`` change part 2's batch, account rate,
second recipients and worker count. Nothing leaves this machine: the SES endpoints are local,
the keys are dummies. The database, ``.demo/db.sqlite3``, is recreated on each run. Every server
and worker it starts is stopped on exit, error or Ctrl-C (SIGTERM, then SIGKILL after 10 s);
the exit status is non-zero on any failure.

The steps are here, top to bottom; how commands run is in ``demo_run.py``, what is read back
and checked in ``demo_report.py``, and the servers are the tests' own (``testservers/``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import platform
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

# Run as a script, this has example/ as sys.path[0]; the servers it starts live at the
# repository root (testservers/, which is not in the wheel).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import django
from demo_report import (
    ADMIN_URL_PATH,
    Batch,
    Delivery,
    check_admin,
    check_demo_email_output,
    check_endpoint,
    expect_one,
    moto_deliveries,
    print_table,
    smtp_deliveries,
)
from demo_run import (
    DATABASE,
    DEMO_DIR,
    EXAMPLE_DIR,
    RECIPIENT,
    REPO_DIR,
    SENDER,
    WORKER_OPTIONS,
    DemoError,
    Workers,
    detail,
    manage,
    show_variables,
    status_counts,
    step,
    wait_for_endpoint,
    wait_for_outbox,
)

from testservers.fake_ses import FakeSESProcess
from testservers.moto_ses import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalSESServer
from testservers.smtp import LocalSMTPServer

SMTP_LOGIN = ("demo-user", "demo-password")
REGION = "us-east-1"
# The "local SES account" of part 2: its limits, reported by GetAccount and enforced.
DEFAULT_RATE = 5.0
ACCOUNT_QUOTA = 50_000


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    count: int = 25
    rate: float = DEFAULT_RATE
    cc_every: int = 0
    workers: int = 2


# --- part 1: sending at once -----------------------------------------------------------------


def send_both(
    transport: str, variant: Mapping[str, str], received: Callable[[], list[Delivery]]
) -> list[Delivery]:
    """``sendtestemail``, then ``send_demo_email``; ``received()`` reads the server's record.

    Both servers record a message before they answer the client, so it is there when the
    command has exited.
    """
    show_variables(variant)
    before = len(received())
    manage(["sendtestemail", RECIPIENT], variant)
    test = expect_one(transport, received()[before:], "Test email from")
    output, _ = manage(["send_demo_email", RECIPIENT], variant)
    demo = expect_one(transport, received()[before + 1 :], "sendwell demo")
    check_demo_email_output(transport, output.strip(), demo)
    return [test, demo]


# SES's mailbox simulator: real SES bounces and complains about these; moto does not, so the
# demo has sendwell simulate what SES would publish (manage.py sendwell simulate).
SIMULATOR = {
    "bounce": "bounce@simulator.amazonses.com",
    "complaint": "complaint@simulator.amazonses.com",
}
LATEST_MESSAGE = (
    "from sendwell.models import Message; m = Message.objects.order_by('-pk').first(); "
    "print(m.pk, m.status)"
)


def closing_the_loop(ses: LocalSESServer, variant: Mapping[str, str]) -> str:
    """Send to SES's bounce and complaint simulator addresses, feed SES's feedback through the
    feedback loop, and show that the next send to them is refused. Returns a summary."""
    step("the feedback loop: SES's mailbox simulator bounces and complains")
    for kind, address in SIMULATOR.items():
        manage(["sendtestemail", address], variant)
        message_id = manage(["shell", "--no-imports", "-c", LATEST_MESSAGE], variant)[0].split()[0]
        # What SES would publish to SNS, processed as a verified notification is.
        manage(["sendwell", "simulate", kind, "--message", message_id], variant)
    listing, _ = manage(["sendwell", "suppression", "list"], variant)
    if not all(address in listing for address in SIMULATOR.values()):
        raise DemoError(f"expected both simulator addresses suppressed, the list says {listing!r}")
    step("sending to them again: refused, and recorded as suppressed")
    before = len(ses.sent_messages())
    manage(["sendtestemail", *SIMULATOR.values()], variant)
    status = manage(["shell", "--no-imports", "-c", LATEST_MESSAGE], variant)[0].split()[1]
    if status != "suppressed" or len(ses.sent_messages()) != before:
        raise DemoError(f"the send to suppressed addresses reached SES (status {status})")
    detail("SES received nothing; the message is in the outbox with status 'suppressed'")
    return (
        "both simulator addresses suppressed after their bounce and complaint; the next send "
        "was refused"
    )


def sending_at_once() -> tuple[list[Delivery], dict[str, str], str]:
    """Part 1: SES v2, SES v1 and SMTP, each with both commands, and the feedback loop. Returns
    what the servers received, the SES variables (part 2 builds on them) and the feedback
    loop's summary."""
    step("part 1: sending at once (EMAIL_QUEUE=False), through SES v2, SES v1 and SMTP")
    deliveries: list[Delivery] = []
    with contextlib.ExitStack() as servers:
        step("starting a local Amazon SES endpoint (moto server)")
        ses = servers.enter_context(LocalSESServer(REGION, log_file=DEMO_DIR / "moto.log"))
        detail(f"listening on {ses.endpoint_url} (log: {DEMO_DIR.name}/moto.log)")
        ses.verify(SENDER)
        detail(f"verified the sender identity {SENDER} (VerifyEmailIdentity, {REGION})")

        step("starting a local SMTP server (STARTTLS required, then AUTH)")
        smtp = servers.enter_context(
            LocalSMTPServer(tls=True, auth=SMTP_LOGIN, require_starttls=True)
        )
        if smtp.ca_file is None:
            raise DemoError("the SMTP server started without a certificate")
        detail(f"listening on {smtp.host}:{smtp.port}, certificate authority {smtp.ca_file}")

        step(f"migrating the SQLite database {DATABASE.relative_to(REPO_DIR)}")
        manage(["migrate", "--noinput", "-v", "0"], {})

        ses_variant = {
            "USE_SES": "True",
            "AWS_SES_REGION_NAME": REGION,
            "AWS_ENDPOINT_URL": ses.endpoint_url,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        }
        for transport, use_v2 in (("SES v2", "True"), ("SES v1", "False")):
            step(f"sending through {transport} (sendwell.backends.SESBackend)")
            deliveries += send_both(
                transport,
                {**ses_variant, "USE_SES_V2": use_v2},
                functools.partial(moto_deliveries, ses, transport),
            )

        step("where the SES limits in force came from (manage.py sendwell status)")
        status, _ = manage(["sendwell", "status"], ses_variant, echo=False)
        for line in status.splitlines():
            if line.startswith("ses:"):
                detail(line)

        feedback = closing_the_loop(ses, {**ses_variant, "USE_SES_V2": "True"})

        step("sending through SMTP (sendwell.backends.SMTPBackend)")
        smtp_variant = {
            "USE_SES": "False",
            "EMAIL_HOST": smtp.host,
            "EMAIL_PORT": str(smtp.port),
            "EMAIL_USE_TLS": "True",
            "EMAIL_HOST_USER": SMTP_LOGIN[0],
            "EMAIL_HOST_PASSWORD": SMTP_LOGIN[1],
            "EMAIL_SSL_CAFILE": smtp.ca_file,
            "EMAIL_TIMEOUT": "10",
        }
        deliveries += send_both(
            "SMTP", smtp_variant, functools.partial(smtp_deliveries, smtp, "SMTP")
        )
        for received in smtp.messages:
            if not received.tls or received.login != SMTP_LOGIN[0]:
                raise DemoError("SMTP: a message arrived without STARTTLS or without AUTH")
        detail(f"both SMTP messages arrived over STARTTLS, authenticated as {SMTP_LOGIN[0]}")

        step("stopping the servers")
    step(f"part 1 delivered {len(deliveries)} messages")
    print_table(deliveries)
    print(
        "SES rows: the message id SES (moto) returned and recorded. SMTP rows: the Message-ID "
        "header.",
        flush=True,
    )
    return deliveries, ses_variant, feedback


# --- part 2: queued sending ------------------------------------------------------------------


def queue_batch(options: BatchOptions, variant: Mapping[str, str]) -> Batch:
    step(f"queueing {options.count} messages with EMAIL_QUEUE=True (no worker is running)")
    show_variables(variant)
    tag = f"demo {uuid.uuid4().hex[:6]}"
    args = ["queue_demo_batch", "--count", str(options.count), "--tag", tag, "--json"]
    if options.cc_every:
        args += ["--cc-every", str(options.cc_every)]
    output, _ = manage(args, variant, echo=False)
    queued = json.loads(output)
    batch = Batch(
        tag=tag,
        messages=len(queued["messages"]),
        expected=frozenset(
            (item["message_id"], address)
            for item in queued["messages"]
            for address in item["recipients"]
        ),
        seconds=float(queued["seconds"]),
    )
    detail(
        f"{batch.messages} send() calls ({len(batch.expected)} recipients) returned in "
        f"{batch.seconds:.2f}s, {batch.seconds / batch.messages * 1000:.0f} ms each: each "
        "wrote its message to the outbox and a delivery task to the queue.\n"
        f"At {options.rate:g} recipients/s, sending them takes "
        f"{len(batch.expected) / options.rate:.1f}s or more."
    )
    counts = status_counts(manage(["sendwell", "status"], variant)[0])
    if counts.get("queued", 0) != batch.messages:
        raise DemoError(f"expected {batch.messages} queued messages, status shows {counts}")
    return batch


def queued_sending(options: BatchOptions, base_variant: Mapping[str, str]) -> str:
    """Part 2: queue a batch with EMAIL_QUEUE=True, deliver it with db_worker processes at the
    local account's rate, check every recipient got exactly one copy, show it in the admin.
    Returns a one-line summary."""
    step(
        f"part 2: queued sending (EMAIL_QUEUE=True): {options.count} messages, "
        f"{options.workers} db_worker processes, a local SES account allowing {options.rate:g}/s"
    )
    with contextlib.ExitStack() as stack:
        step(
            f"starting a local SES account: FakeSES, max send rate {options.rate:g} "
            f"recipients/s (enforced), {ACCOUNT_QUOTA} per 24 h"
        )
        ses = stack.enter_context(
            FakeSESProcess(
                rate=options.rate,
                quota=ACCOUNT_QUOTA,
                enforce_rate=True,
                verified=[SENDER],
                log_file=DEMO_DIR / "fake-ses.log",
                timeout=10,
            )
        )
        detail(
            f"listening on {ses.endpoint_url}; sendwell reads these limits with SES v2 "
            "GetAccount and sends at 97% of the rate (SENDWELL['RATE_FRACTION'])"
        )
        variant = {**base_variant, "AWS_ENDPOINT_URL": ses.endpoint_url, "EMAIL_QUEUE": "True"}
        batch = queue_batch(options, variant)

        step(f"starting {options.workers} workers: manage.py db_worker {' '.join(WORKER_OPTIONS)}")
        started = time.monotonic()
        workers = stack.enter_context(Workers(options.workers, variant))
        took = wait_for_endpoint(ses, workers, len(batch.expected), started)
        detail(
            f"all {len(batch.expected)} recipients accepted {took:.1f}s after the workers started"
        )
        counts = wait_for_outbox(variant)
        step("stopping the workers")
        workers.stop()

        problems, busiest = check_endpoint(ses, batch, options.rate)
        step("stopping the local SES account")
    # Every message sent, but part 1's to the suppressed simulator addresses.
    if set(counts) != {"sent", "suppressed"} or counts["suppressed"] != 1:
        problems.append(f"not every message is sent: {counts}")
    problems += check_admin(batch, counts, workers)
    if problems:
        raise DemoError("queued sending: " + "; ".join(problems))
    return (
        f"{batch.messages} messages ({len(batch.expected)} recipients) queued in "
        f"{batch.seconds:.2f}s; {options.workers} workers delivered every recipient once in "
        f"{took:.1f}s, at most {busiest} per second (limit {options.rate:g}); none refused"
    )


# --- the demo --------------------------------------------------------------------------------


def run(options: BatchOptions) -> list[str]:
    """Both parts of the demo; returns a summary line for each."""
    step(
        f"sendwell demo: Python {platform.python_version()}, Django {django.get_version()}, "
        f"the example site in {EXAMPLE_DIR.relative_to(REPO_DIR)}/ with its production settings"
    )
    DEMO_DIR.mkdir(exist_ok=True)
    # A fresh database each run, so that what the outbox and the admin show is this run's.
    for suffix in ("", "-wal", "-shm"):
        DATABASE.with_name(DATABASE.name + suffix).unlink(missing_ok=True)
    deliveries, ses_variant, feedback = sending_at_once()
    return [
        f"part 1: {len(deliveries)} messages sent at once through SES v2, SES v1 and SMTP; "
        + feedback,
        "part 2: " + queued_sending(options, ses_variant),
    ]


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the ExitStack, so the servers stop as on any other error.
    raise SystemExit(128 + signum)


def parse_arguments(argv: Sequence[str] | None) -> BatchOptions:
    parser = argparse.ArgumentParser(
        prog="./dev demo", description="Send email through the example site to local servers."
    )
    defaults = BatchOptions()
    parser.add_argument("--count", type=int, default=defaults.count, help="part 2's batch size")
    parser.add_argument(
        "--rate",
        type=float,
        default=defaults.rate,
        help="the local SES account's max send rate, recipients per second",
    )
    parser.add_argument(
        "--cc-every",
        type=int,
        default=defaults.cc_every,
        metavar="N",
        help="give every Nth message of the batch a second recipient (default: none)",
    )
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="db_worker processes to run"
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.rate <= 0 or args.cc_every < 0 or args.workers < 1:
        parser.error("--count, --rate and --workers must be positive, --cc-every at least 0")
    return BatchOptions(
        count=args.count, rate=args.rate, cc_every=args.cc_every, workers=args.workers
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    try:
        summary = run(options)
    except (DemoError, RuntimeError) as error:  # RuntimeError: a server did not start
        print(f"\ndemo FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted; servers and workers stopped", file=sys.stderr)
        return 130
    except SystemExit:
        print("\ndemo terminated; servers and workers stopped", file=sys.stderr)
        raise
    step(f"demo passed in {time.monotonic() - started:.0f}s")
    print("\n".join(summary))
    print(
        "\nSee the records in the admin (log in as demo, password demo):\n"
        "    .venv/bin/python example/manage.py runserver --settings=example_site.settings.demo\n"
        f"    then open http://127.0.0.1:8000{ADMIN_URL_PATH}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
