#!/usr/bin/env python
"""Django's command-line utility for the sendwell example site."""

import os
import sys


def main() -> None:
    # Production settings by default: they read the environment (and example/.env) through
    # sendwell, exactly as a deployed site would. Use --settings=example_site.settings.demo to
    # try the site locally with throw-away non-email settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings.production")
    from django.core.management import execute_from_command_line  # noqa: PLC0415

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
