"""Running a test's function in several threads at once, each on its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def in_threads(target: Callable[[], None], count: int) -> None:
    """Run ``target`` in ``count`` threads started together; return when all have finished.

    Each thread closes its own database connections when it is done (Django opens one per thread,
    and a test must not leak them).
    """

    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
