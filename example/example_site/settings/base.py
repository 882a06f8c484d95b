"""Settings shared by every environment of the example site.

Values that differ between deployments come from the environment, with ``example/.env`` as the
fallback (real environment variables win, as in sendwell's own email settings).
"""

from pathlib import Path
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured

from sendwell.env import read_environment

# example/: manage.py, .env and the default SQLite database live here.
BASE_DIR = Path(__file__).resolve().parent.parent.parent

ENV: dict[str, str] = read_environment(env_file=BASE_DIR / ".env")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """``True``/``False`` (or 1/0, yes/no, on/off) from the environment."""
    value = ENV.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: write True or False.")


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list from the environment: ``ALLOWED_HOSTS=example.com,www.example.com``"""
    value = ENV.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "sendwell",
    # The outbox's task queue (EMAIL_QUEUE=True): django-tasks-db keeps delivery tasks in this
    # database and `manage.py db_worker` runs them. Installed whatever EMAIL_QUEUE says, so that
    # `migrate` has created its table before the outbox is switched on.
    "django_tasks_db",
    # A small mailing list that drops addresses sendwell suppresses (sendwell's signals).
    "newsletter",
    # The site itself: its management commands (send_demo_email, queue_demo_batch).
    "example_site",
]
if django.VERSION < (6, 0):
    # Django 5.2 has no django.tasks: django-tasks is its backport (task backends, system
    # checks, log messages), which django-tasks-db builds on.
    INSTALLED_APPS.insert(INSTALLED_APPS.index("django_tasks_db"), "django_tasks")

# With EMAIL_QUEUE=True sendwell delivers mail in the django.tasks task
# sendwell.tasks.drain_outbox: on one machine, run one or more `python manage.py db_worker`
# beside the web server (docs/outbox.md).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


def sqlite_database(path: str | Path) -> dict[str, Any]:
    """A SQLite ``DATABASES`` entry that the web server and the outbox workers can share.

    WAL lets readers work while one process writes; IMMEDIATE transactions take the write lock at
    BEGIN, so that two writers queue for up to ``timeout`` seconds instead of one failing with
    "database is locked" halfway through its transaction.
    """
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


ROOT_URLCONF = "example_site.urls"
WSGI_APPLICATION = "example_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# sendwell's own settings (docs/configuration.md). Every send goes through a rate limiter shared
# by all processes, sized from the account's SES limits (or learned from SES's answers when the
# IAM policy does not allow reading them); a synchronous send waits for its turn up to
# SYNC_MAX_WAIT (10 s). With EMAIL_QUEUE=True a worker claims BATCH_SIZE messages at a time
# (default 50). At this site's rates a smaller claim lets every worker take part in a batch, and
# leaves fewer messages waiting out the claim's lease if a worker dies holding them.
SENDWELL = {
    "BATCH_SIZE": 10,
    # The feedback loop: the SNS topics SES publishes this site's bounces and complaints to
    # (their notifications arrive at /ses/sns/; docs/feedback.md).
    "SNS_TOPIC_ARNS": env_list("SNS_TOPIC_ARNS", default=[]),
}

# sendwell logs each delivery attempt; show them on the console (and in the demo's output).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "sendwell": {"handlers": ["console"], "level": ENV.get("SENDWELL_LOG_LEVEL", "INFO")},
    },
}
