"""Settings for worker subprocesses, configured entirely from the environment.

``SENDWELL_WORKER_DATABASE``
    ``sqlite:////absolute/path.sqlite3`` or ``postgresql://user@host:port/dbname``.
``SENDWELL_WORKER_TASKS``
    ``database`` (django-tasks-db, run ``db_worker``) or ``rq`` (django-tasks-rq, run
    ``rqworker --job-class django_tasks_rq.Job --with-scheduler QUEUE``).
``SENDWELL_WORKER_QUEUE``
    The task queue name (default ``default``); with rq also the RQ_QUEUES entry.
``SENDWELL_WORKER_REDIS_URL``
    Redis for RQ_QUEUES and, with ``"RATE_LIMITER": "redis"``, the rate limiter.
``SENDWELL_WORKER_SES_ENDPOINT``
    The FakeSES URL the OutboxBackend delivers to.
``SENDWELL_WORKER_SES_OPTIONS``
    JSON: more SES options (e.g. ``{"read_timeout": 1}``); on Django 5.2, those that have a
    classic setting (``sendwell.conf.CLASSIC_SES_SETTINGS``).
``SENDWELL_WORKER_SENDWELL``
    JSON: ``SENDWELL`` settings over the defaults below.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote, urlsplit

import django


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"tests.worker_project.settings: {name} is not set")
    return value


def _database(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": unquote(parts.path),
            "OPTIONS": {
                # Several worker processes, each with a few threads, share the file.
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise RuntimeError(f"SENDWELL_WORKER_DATABASE: unsupported URL {url!r}")


SECRET_KEY = "sendwell-worker-tests-only"
DEBUG = False  # also: db_worker does not autoreload
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {"default": _database(_env("SENDWELL_WORKER_DATABASE"))}

TASKS_KIND = _env("SENDWELL_WORKER_TASKS", "database")
QUEUE = _env("SENDWELL_WORKER_QUEUE", "default")
REDIS_URL = os.environ.get("SENDWELL_WORKER_REDIS_URL")

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "sendwell"]
if django.VERSION < (6, 0):  # RemovedInSendwellDjango52: the django-tasks backport.
    INSTALLED_APPS.append("django_tasks")
if TASKS_KIND == "database":
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": [QUEUE]}}
elif TASKS_KIND == "rq":
    if not REDIS_URL:
        raise RuntimeError("SENDWELL_WORKER_TASKS=rq needs SENDWELL_WORKER_REDIS_URL")
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [QUEUE]}}
    RQ_QUEUES = {QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300}}
else:
    raise RuntimeError(f"SENDWELL_WORKER_TASKS: {TASKS_KIND!r} is neither 'database' nor 'rq'")

SES_ENDPOINT = _env("SENDWELL_WORKER_SES_ENDPOINT")
SES_OPTIONS: dict[str, Any] = {
    "region_name": "us-east-1",
    "access_key_id": "testing",
    "secret_access_key": "testing-secret",
    "endpoint_url": SES_ENDPOINT,
    **json.loads(os.environ.get("SENDWELL_WORKER_SES_OPTIONS") or "{}"),
}
DEFAULT_FROM_EMAIL = "sender@example.com"
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": "sendwell.backends.OutboxBackend",
            "OPTIONS": {"ses": SES_OPTIONS, "smtp": None, "failover": False},
        }
    }
else:  # RemovedInSendwellDjango52: the classic settings the backends read on 5.2.
    from sendwell.conf import CLASSIC_SES_SETTINGS

    EMAIL_BACKEND = "sendwell.backends.OutboxBackend"
    SENDWELL_TRANSPORT = "ses"
    unknown = set(SES_OPTIONS) - set(CLASSIC_SES_SETTINGS)
    if unknown:
        raise RuntimeError(f"SES options {sorted(unknown)} have no classic setting on Django 5.2")
    globals().update({CLASSIC_SES_SETTINGS[key]: value for key, value in SES_OPTIONS.items()})

SENDWELL = {
    "LEASE_SECONDS": 3,
    "BACKOFF_BASE_SECONDS": 0.2,
    "BACKOFF_MAX_SECONDS": 2.0,
    "CONCURRENCY": 4,
    "BATCH_SIZE": 20,
    "TASK_TIME_BUDGET_SECONDS": 20.0,
    "TASK_QUEUE": QUEUE,
    "REDIS_URL": REDIS_URL,
    **json.loads(os.environ.get("SENDWELL_WORKER_SENDWELL") or "{}"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"sendwell": {"handlers": ["stderr"], "level": "INFO"}},
}
