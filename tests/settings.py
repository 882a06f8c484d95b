"""Minimal Django settings for sendwell's test suite.

Email settings are set per test with ``override_settings`` (MAILERS on Django 6.1, EMAIL_* on 5.2).
"""

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
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"
MIDDLEWARE: list[str] = []
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
DEFAULT_FROM_EMAIL = "sender@example.com"
SERVER_EMAIL = "server@example.com"
ADMINS = ["admin@example.com"]

import django  # noqa: E402

if django.VERSION >= (6, 1):
    # Tests choose their mailer with override_settings; this only opts in to MAILERS.
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
