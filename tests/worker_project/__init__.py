"""A Django project for the worker *subprocesses* of ``tests/test_workers.py``.

Everything comes from environment variables the test sets (see :mod:`.settings`), so one settings
module serves SQLite with django-tasks-db's ``db_worker`` and PostgreSQL + Redis with
django-tasks-rq's ``rqworker``, on Django 6.1 (MAILERS) and 5.2 (classic settings).
"""
