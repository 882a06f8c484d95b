"""FakeSES, an SES endpoint with fault injection and enforced sending limits (see
:mod:`testservers.fake_ses.fake`), in this process or as a child (:class:`FakeSESProcess`)."""

from testservers.fake_ses.client import FakeSESProcess
from testservers.fake_ses.fake import FakeSES
from testservers.fake_ses.protocol import ACCOUNT_ANSWERS, FAULTS, AcceptedMessage

__all__ = ["ACCOUNT_ANSWERS", "FAULTS", "AcceptedMessage", "FakeSES", "FakeSESProcess"]
