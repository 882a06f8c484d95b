"""``manage.py queue_demo_batch --count 25``: queue a batch of messages the way a site's code would,
one ``EmailMessage.send()`` each, and report how long the sends took.

With ``EMAIL_QUEUE=True`` every send writes the message to the outbox and returns; a
``db_worker`` delivers it later at the rate the SES account allows. Without the outbox each send
would go to SES during the call (and wait for the rate limiter).

Prints one line per message (``queued <sendwell id> <Message-ID> <recipients>``) and then a
summary; with ``--json``, one JSON object instead, for scripts (``./dev demo``).
"""

import json
import time
from email.utils import make_msgid, parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand, CommandError, CommandParser

BODY = """\
Hello {name},

this is message {number} of {count} in a batch queued by `manage.py queue_demo_batch`.
The site's code returned as soon as it was written to the outbox; a worker sent it.
"""


class Command(BaseCommand):
    help = "Queue a batch of messages (one send() each) and report how long queueing took."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=25, help="Messages to send (25).")
        parser.add_argument(
            "--cc-every",
            type=int,
            default=0,
            metavar="N",
            help="Give every Nth message a second recipient, in Cc (default: none).",
        )
        parser.add_argument(
            "--domain", default="example.net", help="Recipients' domain (example.net)."
        )
        parser.add_argument("--tag", default="", help="Text added to every subject.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        cc_every: int = options["cc_every"]
        if count < 1 or cc_every < 0:
            raise CommandError("--count must be at least 1 and --cc-every at least 0")
        sender: str = settings.DEFAULT_FROM_EMAIL
        sender_domain = parseaddr(sender)[1].rpartition("@")[2] or None
        tag = f" ({options['tag']})" if options["tag"] else ""
        messages = []
        for number in range(1, count + 1):
            name = f"reader{number:02d}"
            cc = (
                [f"{name}-colleague@{options['domain']}"]
                if cc_every and number % cc_every == 0
                else []
            )
            messages.append(
                EmailMessage(
                    subject=f"sendwell batch{tag}: message {number} of {count}",
                    body=BODY.format(name=name, number=number, count=count),
                    from_email=sender,
                    to=[f"{name}@{options['domain']}"],
                    cc=cc,
                    headers={"Message-ID": make_msgid(domain=sender_domain)},
                )
            )

        started = time.perf_counter()
        for message in messages:
            if message.send() != 1:
                raise CommandError(f"the backend did not take {message.subject!r}")
        elapsed = time.perf_counter() - started

        queued = [
            {
                # OutboxBackend sets sendwell_id (the outbox row); other backends send at once.
                "id": getattr(message, "sendwell_id", None),
                "message_id": message.extra_headers["Message-ID"],
                "recipients": message.recipients(),
            }
            for message in messages
        ]
        recipients = sum(len(item["recipients"]) for item in queued)
        if options["json"]:
            self.stdout.write(
                json.dumps({"seconds": elapsed, "recipients": recipients, "messages": queued})
            )
            return
        for item in queued:
            self.stdout.write(
                f"queued {item['id']} {item['message_id']} {', '.join(item['recipients'])}"
            )
        self.stdout.write(
            f"{len(queued)} messages ({recipients} recipients) taken in {elapsed:.3f} s "
            f"({elapsed / len(queued) * 1000:.1f} ms each)"
        )
