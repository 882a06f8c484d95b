"""Production settings: everything that differs per deployment comes from the environment.

Email is configured by sendwell from the variables in the setup guide (USE_SES,
AWS_SES_REGION_NAME, ... or EMAIL_HOST, ...); see example/.env.example for all of them.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import BASE_DIR, ENV, env_bool, env_list, sqlite_database

SECRET_KEY = ENV.get("SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: add it to the environment or to example/.env (generate one with "
        "`python -c 'from django.core.management.utils import get_random_secret_key as k; "
        "print(k())'`)."
    )

DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

DATABASES = {"default": sqlite_database(ENV.get("DATABASE") or BASE_DIR / "db.sqlite3")}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=True)
    # Behind a TLS-terminating load balancer (ALB, CloudFront, nginx) that sets this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Email: MAILERS (Django 6.1) or EMAIL_BACKEND + EMAIL_* (Django 5.2), SES or SMTP per USE_SES.
from sendwell.env import email_settings  # noqa: E402

globals().update(email_settings(env_file=BASE_DIR / ".env"))
