"""Send one message synchronously inside a transaction, and hold the transaction open.

``python -m tests.worker_project.send_in_transaction --subject S --release FILE [--rollback]
[--as-testcase]``
sends one message through ``SESBackend`` inside ``transaction.atomic()``, as a view does under
``ATOMIC_REQUESTS``, after writing a row of its own in that transaction. It then keeps the
transaction open until FILE exists, and commits it (or rolls it back with ``--rollback``).
``--as-testcase`` opens the transaction as Django's TestCase opens the one around each test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subject", required=True)
    parser.add_argument("--release", type=Path, required=True)
    parser.add_argument("--rollback", action="store_true")
    # Open the transaction as Django's TestCase does for each test.
    parser.add_argument("--as-testcase", action="store_true")
    args = parser.parse_args()
    django.setup()

    from django.conf import settings  # noqa: PLC0415 - after setup
    from django.core.mail import EmailMessage  # noqa: PLC0415
    from django.db import transaction  # noqa: PLC0415

    from sendwell.backends import SESBackend  # noqa: PLC0415
    from sendwell.models import Wakeup  # noqa: PLC0415

    backend = SESBackend(alias="sync", **settings.SES_OPTIONS)
    atomic = transaction.atomic()
    atomic._from_testcase = args.as_testcase  # type: ignore[attr-defined]
    with atomic:
        # The application's own write, which must stay in its transaction.
        Wakeup.objects.create(name=f"app-row-{args.subject}")
        message = EmailMessage(args.subject, "Body", "sender@example.com", ["to@example.net"])
        backend.send_messages([message])
        print("sent", message.ses_message_id, flush=True)  # type: ignore[attr-defined]
        while not args.release.exists():
            time.sleep(0.05)
        if args.rollback:
            transaction.set_rollback(True)
    print("rolled back" if args.rollback else "committed", flush=True)


if __name__ == "__main__":
    main()
