"""Queue test messages through the OutboxBackend, as an application would.

``python -m tests.worker_project.enqueue --prefix P --count N [--per-call K]`` sends N messages
(``P-0@example.net`` ...), K per ``send_messages()`` call: each call commits and enqueues one
delivery task. Prints the outbox ids, one per line.
"""

from __future__ import annotations

import argparse

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--per-call", type=int, default=20)
    args = parser.parse_args()
    django.setup()

    from django.core.mail import EmailMessage  # noqa: PLC0415 - after setup

    from sendwell import compat  # noqa: PLC0415

    mailer = compat.mailer("default")
    for start in range(0, args.count, args.per_call):
        messages = [
            EmailMessage(
                f"{args.prefix} {i}",
                "Body",
                "sender@example.com",
                [f"{args.prefix}-{i}@example.net"],
            )
            for i in range(start, min(start + args.per_call, args.count))
        ]
        assert mailer.send_messages(messages) == len(messages)
        for message in messages:
            print(message.sendwell_id)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
