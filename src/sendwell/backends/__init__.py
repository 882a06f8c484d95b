"""Django email backends: ``SESBackend``, ``SMTPBackend`` and ``OutboxBackend``.

Django loads a backend by dotted path (``sendwell.backends.SESBackend``); each is imported on first
use, so a site that only sends through SES never imports the SMTP code and vice versa.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sendwell.backends.outbox import OutboxBackend
    from sendwell.backends.ses import SESBackend
    from sendwell.backends.smtp import SMTPBackend

__all__ = ["OutboxBackend", "SESBackend", "SMTPBackend"]

_MODULES = {
    "OutboxBackend": "sendwell.backends.outbox",
    "SESBackend": "sendwell.backends.ses",
    "SMTPBackend": "sendwell.backends.smtp",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module 'sendwell.backends' has no attribute {name!r}")
