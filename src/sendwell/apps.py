"""Django application config: registers sendwell's system checks."""

from django.apps import AppConfig


class SendwellConfig(AppConfig):
    name = "sendwell"
    verbose_name = "sendwell"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sendwell import checks  # noqa: F401, PLC0415  (registers the checks)
