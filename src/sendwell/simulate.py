"""SES's feedback for a recorded message, made up on purpose (``manage.py sendwell simulate``).

What SES would publish for a bounce, a complaint, a delivery or a delivery delay of a message
sendwell sent, built as configuration-set event publishing JSON and fed through
:func:`sendwell.feedback.ingest`: exactly the processing a verified SNS delivery gets. Nothing
here touches the webhook or its checks; a simulated notification is recorded with the source
``simulated``, so it is never mistaken for one SNS sent.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sendwell import feedback
from sendwell.models import Message, Notification, NotificationSource, Recipient
from sendwell.sns import SNSMessage

Kind = Literal["bounce", "complaint", "delivery", "delay"]
KINDS: tuple[Kind, ...] = ("bounce", "complaint", "delivery", "delay")
SIMULATED_TOPIC = "arn:aws:sns:us-east-1:000000000000:sendwell-simulated"


class SimulationError(ValueError):
    """The message or recipient cannot be given SES feedback: says which and why."""


def simulate(kind: Kind, message_id: int, recipient: str | None = None) -> Notification:
    """Feed SES's ``kind`` event about message ``message_id`` (to ``recipient``, or to each of
    its sent recipients) through the feedback loop; the stored notification."""
    targets = _recipients(message_id, recipient)
    ses_id = targets[0].ses_message_id
    ses_json = _ses_json(kind, targets[0].message, ses_id, [r.address for r in targets])
    now = datetime.now(UTC)
    envelope = {
        "Type": "Notification",
        "MessageId": f"simulated-{uuid.uuid4()}",
        "TopicArn": SIMULATED_TOPIC,
        "Message": json.dumps(ses_json),
        "Timestamp": _stamp(now),
        "SignatureVersion": "simulated",
    }
    message = SNSMessage(
        type="Notification",
        message_id=envelope["MessageId"],
        topic_arn=SIMULATED_TOPIC,
        message=envelope["Message"],
        timestamp=now,
        subject=None,
        subscribe_url=None,
        token=None,
        signature_version="simulated",
        raw=envelope,
    )
    return feedback.ingest(message, source=NotificationSource.SIMULATED)


def _recipients(message_id: int, address: str | None) -> list[Recipient]:
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        raise SimulationError(f"there is no message {message_id} in sendwell's records")
    sent = [r for r in message.recipients.order_by("pk") if r.ses_message_id]
    if address is not None:
        wanted = address.strip().lower()
        sent = [r for r in sent if r.address.lower() == wanted]
        if not sent:
            raise SimulationError(
                f"message {message_id} was not sent to {address} through SES; its recipients "
                "with an SES message id: "
                + (", ".join(r.address for r in message.recipients.exclude(ses_message_id="")))
            )
    if not sent:
        raise SimulationError(
            f"message {message_id} has no recipient SES accepted (status {message.status}, "
            f"transport {message.delivered_by or message.transport}): SES feedback is only ever "
            "about a message SES took"
        )
    # One SES call per event: the recipients of the first call named.
    return [r for r in sent if r.ses_message_id == sent[0].ses_message_id]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ses_json(kind: Kind, message: Message, ses_id: str, addresses: list[str]) -> dict[str, Any]:
    now = datetime.now(UTC)
    mail = {
        "timestamp": _stamp(message.sent_at or now),
        "source": message.from_email,
        "messageId": ses_id,
        "destination": addresses,
        "tags": {key: [value] for key, value in message.tags.items()},
    }
    feedback_id = f"simulated-{uuid.uuid4()}"
    if kind == "bounce":
        return {
            "eventType": "Bounce",
            "mail": mail,
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": address,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown (simulated)",
                    }
                    for address in addresses
                ],
                "timestamp": _stamp(now),
                "feedbackId": feedback_id,
                "reportingMTA": "dsn; simulated.sendwell.invalid",
            },
        }
    if kind == "complaint":
        return {
            "eventType": "Complaint",
            "mail": mail,
            "complaint": {
                "complainedRecipients": [{"emailAddress": address} for address in addresses],
                "timestamp": _stamp(now),
                "feedbackId": feedback_id,
                "complaintFeedbackType": "abuse",
                "userAgent": "sendwell simulate",
            },
        }
    if kind == "delivery":
        return {
            "eventType": "Delivery",
            "mail": mail,
            "delivery": {
                "timestamp": _stamp(now),
                "processingTimeMillis": 500,
                "recipients": addresses,
                "smtpResponse": "250 2.6.0 Message received (simulated)",
                "reportingMTA": "simulated.sendwell.invalid",
            },
        }
    return {
        "eventType": "DeliveryDelay",
        "mail": mail,
        "deliveryDelay": {
            "timestamp": _stamp(now),
            "delayType": "MailboxFull",
            "expirationTime": _stamp(now + timedelta(hours=12)),
            "delayedRecipients": [
                {
                    "emailAddress": address,
                    "status": "4.2.2",
                    "diagnosticCode": "smtp; 452 4.2.2 mailbox full (simulated)",
                }
                for address in addresses
            ],
        },
    }
