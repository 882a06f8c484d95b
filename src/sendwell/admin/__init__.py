"""The outbox in the Django admin: what was sent, to whom, how, and what went wrong.

Every page is read-only: the outbox is the record of what happened, and a worker may hold a row at
any moment, so saving a stale form could undo its work. Operators act on messages only through
two actions (:mod:`sendwell.operations`, which commands can call too), each one conditional
``UPDATE`` whose ``WHERE`` re-checks the status, so that a worker's claim and an operator's click
can never both win:

* retry failed/deferred messages: requeue them and their unsent recipients (never the sent ones);
* cancel queued/deferred messages (never one a worker holds, never a sent one).

Nothing here reads settings: no page shows configuration, credentials or a settings dump. Message
contents are shown as escaped text only (headers, a plain-text preview); the HTML body is never
rendered.
"""

# Importing the modules registers their ModelAdmins (Django's autodiscover imports this package).
from sendwell.admin.feedback import EventAdmin, SuppressionAdmin
from sendwell.admin.message import MessageAdmin
from sendwell.admin.records import AttemptAdmin, RecipientAdmin
from sendwell.operations import cancel_messages, retry_messages

__all__ = [
    "AttemptAdmin",
    "EventAdmin",
    "MessageAdmin",
    "RecipientAdmin",
    "SuppressionAdmin",
    "cancel_messages",
    "retry_messages",
]
