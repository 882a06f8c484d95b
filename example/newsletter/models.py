"""The newsletter's subscribers: an address bounced or complained about leaves the list."""

from __future__ import annotations

from django.db import models


class Subscriber(models.Model):
    email = models.EmailField(unique=True)
    subscribed_at = models.DateTimeField(auto_now_add=True)

    # Declared, so that type checkers see it outside this site's settings too.
    objects: models.Manager[Subscriber] = models.Manager()

    def __str__(self) -> str:
        return self.email
