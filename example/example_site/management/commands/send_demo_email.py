"""``manage.py send_demo_email to@example.com``: a multipart message with an HTML part and an
attachment, sent through the configured mailer, the way a site's own mail would be.

Prints one line per message: ``sent <Message-ID> ses_message_id=<id or ->``.
"""

from email.utils import make_msgid, parseaddr
from typing import Any

import django
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.management.base import BaseCommand, CommandError, CommandParser

HTML = """\
<!doctype html>
<html><body>
  <h1>Hello from sendwell</h1>
  <p>This message has a <strong>plain-text</strong> part, an <em>HTML</em> part and a CSV
  attachment.</p>
</body></html>
"""

TEXT = """\
Hello from sendwell.

This message has a plain-text part, an HTML part and a CSV attachment.
"""

CSV = "transport,api\nses,v2\nses,v1\nsmtp,-\n"


class Command(BaseCommand):
    help = "Send a multipart (text + HTML) email with a CSV attachment to the given addresses."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", nargs="+", help="Recipient addresses.")
        parser.add_argument("--subject", default="sendwell demo: HTML + attachment")
        parser.add_argument(
            "--using",
            default=None,
            help="MAILERS alias to send with (Django 6.1+); default: the default mailer.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sender: str = settings.DEFAULT_FROM_EMAIL
        # Set explicitly so the id printed below is the one that was sent.
        message_id = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or None)
        message = EmailMultiAlternatives(
            subject=options["subject"],
            body=TEXT,
            from_email=sender,
            to=options["email"],
            headers={"Message-ID": message_id},
        )
        message.attach_alternative(HTML, "text/html")
        message.attach("report.csv", CSV, "text/csv")
        using: str | None = options["using"]
        if using is None:
            sent = message.send()
        elif django.VERSION >= (6, 1):
            sent = message.send(using=using)  # type: ignore[call-arg,unused-ignore]
        else:
            raise CommandError("--using needs Django 6.1 (MAILERS)")
        if sent != 1:
            raise CommandError("the backend reported that nothing was sent")
        # SESBackend records the id SES gave the message; other backends have none.
        ses_message_id = getattr(message, "ses_message_id", None) or "-"
        self.stdout.write(f"sent {message_id} ses_message_id={ses_message_id}")
