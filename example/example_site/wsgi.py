"""WSGI entry point: ``gunicorn example_site.wsgi`` (run from the example/ directory)."""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings.production")

application: WSGIHandler = get_wsgi_application()
