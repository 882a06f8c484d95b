"""``python -m testservers.fake_ses``: serve a FakeSES until SIGINT or SIGTERM.

The first line of its output is the endpoint URL (``--port 0`` picks a free port), which
:class:`testservers.fake_ses.FakeSESProcess` reads.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from testservers.fake_ses.fake import FakeSES
from testservers.fake_ses.protocol import ACCOUNT_ANSWERS


def _settings(argv: list[str] | None = None) -> dict[str, Any]:
    """The :class:`FakeSES` keyword arguments the command line asks for."""
    parser = argparse.ArgumentParser(
        prog="python -m testservers.fake_ses", description="Serve a fake SES on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rate", type=float, default=14.0, help="MaxSendRate, recipients/s")
    parser.add_argument("--quota", type=int, default=50_000, help="Max24HourSend (-1: unlimited)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each send")
    enforce = parser.add_mutually_exclusive_group()
    enforce.add_argument(
        "--enforce-rate",
        action="store_const",
        const=True,
        dest="enforce_rate",
        default=False,
        help="refuse over the quota or over the rate in any rolling second",
    )
    enforce.add_argument(
        "--enforce-ses",
        action="store_const",
        const="ses",
        dest="enforce_rate",
        help="refuse over the quota or the rate as SES counts it (a budget one call may overdraw)",
    )
    parser.add_argument("--timeout-seconds", type=float, default=5.0)
    parser.add_argument("--accept-on-timeout", action="store_true")
    parser.add_argument("--verified", action="append", help="verified identity (repeatable)")
    parser.add_argument("--sandbox", action="store_true", help="report no production access")
    for flag, call in (("--get-account", "v2 GetAccount"), ("--get-send-quota", "v1 GetSendQuota")):
        parser.add_argument(flag, choices=ACCOUNT_ANSWERS, default="ok", help=f"how {call} answers")
    args = parser.parse_args(argv)
    return {
        "port": args.port,
        "max_send_rate": args.rate,
        "max_24_hour_send": args.quota,
        "latency": args.latency,
        "enforce_rate": args.enforce_rate,
        "timeout_seconds": args.timeout_seconds,
        "accept_on_timeout": args.accept_on_timeout,
        "verified_identities": args.verified,
        "production_access": not args.sandbox,
        "get_account": args.get_account,
        "get_send_quota": args.get_send_quota,
    }


def main(argv: list[str] | None = None) -> int:
    settings = _settings(argv)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with FakeSES(**settings) as ses:
        print(ses.endpoint_url, flush=True)  # first line of output: parents read it
        while not stopped.wait(0.2):
            pass
    return 0
