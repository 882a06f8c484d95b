"""Django settings for the outbox benchmarks: the driver and its worker processes share them.

Everything comes from environment variables, which the benchmark sets for its workers
(``benchmarks/outbox_harness.py``):

- ``SENDWELL_BENCH_DATABASE``: ``sqlite:/path/to/file.sqlite3`` (WAL, immediate transactions, as
  docs/outbox.md recommends) or ``postgresql://user@host:port/dbname``;
- ``SENDWELL_BENCH_SES_URL``: the SES endpoint (``python -m testservers.fake_ses``);
- ``SENDWELL_BENCH_TASKS``: ``db`` (django-tasks-db, ``db_worker``) or ``rq`` (django-tasks-rq,
  ``rqworker``, with ``SENDWELL_BENCH_REDIS_URL``);
- ``SENDWELL_BENCH_SENDWELL``: the ``SENDWELL`` dict as JSON (unset or ``{}``: sendwell's defaults);
- ``SENDWELL_BENCH_BACKEND``: the default mailer: ``outbox`` (``sendwell.backends.OutboxBackend``,
  the default), ``ses`` (``sendwell.backends.SESBackend``, synchronous) or ``django-ses``
  (``django_ses.SESBackend``, SES v2, with ``SENDWELL_BENCH_DJANGO_SES_THROTTLE``: unset for its
  default ``AWS_SES_AUTO_THROTTLE``, ``off`` for None, or a number).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

SECRET_KEY = "sendwell-benchmarks-only"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_FROM_EMAIL = "sender@example.com"

_TASKS = os.environ.get("SENDWELL_BENCH_TASKS", "db")
_REDIS_URL = os.environ.get("SENDWELL_BENCH_REDIS_URL", "")

INSTALLED_APPS = ["django.contrib.contenttypes", "sendwell"]
if _TASKS == "rq":
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    RQ_QUEUES = {"default": {"URL": _REDIS_URL}}
else:
    INSTALLED_APPS += ["django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def _database(url: str) -> dict[str, Any]:
    if url.startswith("sqlite:"):
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": url.removeprefix("sqlite:"),
            # docs/outbox.md's production settings for SQLite (and tests/settings.py's).
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "postgres",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


DATABASES = {
    "default": _database(os.environ.get("SENDWELL_BENCH_DATABASE", "sqlite:/tmp/sendwell-bench.db"))
}

_SES_URL = os.environ.get("SENDWELL_BENCH_SES_URL", "http://127.0.0.1:1")
_SES_OPTIONS = {
    "region_name": "us-east-1",
    "access_key_id": "testing",
    "secret_access_key": "testing-secret",
    "endpoint_url": _SES_URL,
}
_BACKEND = os.environ.get("SENDWELL_BENCH_BACKEND", "outbox")
MAILERS: dict[str, dict[str, Any]]
AWS_SES_AUTO_THROTTLE: float | None
if _BACKEND == "ses":
    MAILERS = {"default": {"BACKEND": "sendwell.backends.SESBackend", "OPTIONS": _SES_OPTIONS}}
elif _BACKEND == "django-ses":
    MAILERS = {
        "default": {
            "BACKEND": "django_ses.SESBackend",
            "OPTIONS": {
                "aws_access_key": "testing",
                "aws_secret_key": "testing-secret",
                "aws_region_name": "us-east-1",
                "aws_region_endpoint": _SES_URL,
                "use_ses_v2": True,  # as sendwell: SES v2 SendEmail with raw MIME
            },
        }
    }
    _THROTTLE = os.environ.get("SENDWELL_BENCH_DJANGO_SES_THROTTLE", "")
    if _THROTTLE == "off":
        AWS_SES_AUTO_THROTTLE = None
    elif _THROTTLE:
        AWS_SES_AUTO_THROTTLE = float(_THROTTLE)
else:
    MAILERS = {
        "default": {"BACKEND": "sendwell.backends.OutboxBackend", "OPTIONS": {"ses": _SES_OPTIONS}}
    }

SENDWELL = json.loads(os.environ.get("SENDWELL_BENCH_SENDWELL") or "{}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"sendwell": {"handlers": ["stderr"], "level": "WARNING"}},
}
