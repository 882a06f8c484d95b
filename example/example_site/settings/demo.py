"""Local settings for trying the example site after ``./dev demo``.

Email goes exactly the production way (sendwell reads the environment and example/.env); the rest
gets throw-away local values, so no SECRET_KEY or database needs configuring::

    cd example && ../.venv/bin/python manage.py runserver --settings=example_site.settings.demo

Never deploy with these settings.
"""

from .base import *  # noqa: F403
from .base import BASE_DIR, ENV, sqlite_database

SECRET_KEY = ENV.get("SECRET_KEY") or "insecure-sendwell-demo-key-never-use-in-production"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

# The database `./dev demo` migrates (the repository's .demo/ directory).
DATABASES = {
    "default": sqlite_database(ENV.get("DATABASE") or BASE_DIR.parent / ".demo" / "db.sqlite3")
}

from sendwell.env import email_settings  # noqa: E402

globals().update(email_settings(env_file=BASE_DIR / ".env"))
