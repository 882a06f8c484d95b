"""SES's feedback (bounces, complaints, deliveries, opens, ...) as typed, normalized events.

Pure: it reads the SES JSON an SNS notification's ``Message`` carries (or an SQS message body),
and leaves storing, linking and acting on the events to the floors above. See docs/events.md.
"""

from sendwell.events.parse import parse_ses_message
from sendwell.events.types import EventParseError, EventType, SESEvent, SourceFormat

__all__ = ["EventParseError", "EventType", "SESEvent", "SourceFormat", "parse_ses_message"]
