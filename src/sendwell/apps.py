"""Django application config: registers sendwell's system checks; warms up task workers."""

import sys

from django.apps import AppConfig


class SendwellConfig(AppConfig):
    name = "sendwell"
    verbose_name = "sendwell"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: both need the app registry. checks registers the system checks.
        from sendwell import checks, warmup  # noqa: F401, PLC0415

        if warmup.is_worker(sys.argv):
            warmup.warm_up()
