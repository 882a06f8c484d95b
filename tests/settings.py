"""Minimal Django settings for sendwell's test suite.

Email settings are set per test with ``override_settings`` (MAILERS on Django 6.1, EMAIL_* on 5.2).
"""

import os
import tempfile
from pathlib import Path

SECRET_KEY = "sendwell-tests-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "sendwell",
]
# A file, not ":memory:": tests that send from several threads or worker processes need SQLite's
# real locking (WAL, busy timeout), which a shared-cache in-memory database does not have.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "SENDWELL_TEST_DB", str(Path(tempfile.gettempdir()) / "sendwell.sqlite3")
        ),
        "TEST": {
            "NAME": os.environ.get("SENDWELL_TEST_DB")
            or str(Path(tempfile.gettempdir()) / f"sendwell-test-{os.getpid()}.sqlite3")
        },
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.request",
            ]
        },
    }
]
# Tests log in admin users: the slowest hashers would dominate their run time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_FROM_EMAIL = "sender@example.com"
SERVER_EMAIL = "server@example.com"

import django  # noqa: E402

# RemovedInSendwellDjango52: 5.2 wants (name, address) pairs (and says so when a 5xx response
# is logged to mail_admins), 6.1 deprecates them.
ADMINS = ["admin@example.com"] if django.VERSION >= (6, 0) else [("Admin", "admin@example.com")]

if django.VERSION >= (6, 1):
    # Tests choose their mailer with override_settings; this only opts in to MAILERS.
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}

# moto's SES reports the sandbox's limits (1/s): tests that are not about rate limiting send
# faster than that. The rate-limiting tests override these.
SENDWELL = {"MAX_SEND_RATE": 10_000, "MAX_24_HOUR_SEND": 10_000_000}
