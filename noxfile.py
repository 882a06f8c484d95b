"""Nox sessions for sendwell. Run them through `./dev test` / `./dev lint` (docs/development.md).

Every session installs from a lock file in requirements/, then sendwell itself editable without
dependencies, so a test run never resolves versions. Session venvs are reused between runs
(`./dev` passes `--reuse-venv yes`) and re-synced only when their lock file, pyproject.toml or the
interpreter changes.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
REQUIREMENTS = ROOT / "requirements"

# `./dev` passes the interpreter it found (an absolute path). Naming a version ("3.12") would make
# nox search PATH, where pyenv shims refuse to run unless their version is selected.
PYTHON = os.environ.get("SENDWELL_NOX_PYTHON") or sys.executable

nox.options.sessions = ["lint", "tests-django52", "tests-django61"]
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"

# Keep tests away from the developer's real AWS account and from the instance metadata service:
# fixtures start local servers and set the credentials they need.
TEST_ENV = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def install_locked(session: nox.Session, *locks: str) -> None:
    """Sync the session venv to `requirements/<lock>...` and install sendwell editable."""
    lock_files = [REQUIREMENTS / lock for lock in locks]
    digest = hashlib.sha256()
    for path in [*lock_files, ROOT / "pyproject.toml"]:
        digest.update(path.read_bytes())
    digest.update(PYTHON.encode())
    stamp = Path(session.virtualenv.location) / ".sendwell-installed"
    if stamp.is_file() and stamp.read_text().strip() == digest.hexdigest():
        session.log(f"{', '.join(locks)} unchanged since the last install; reusing the venv")
        return
    # `uv pip sync` also removes packages that left the lock files; sendwell goes in after it.
    session.run_install("uv", "pip", "sync", "--quiet", *map(str, lock_files))
    session.run_install("uv", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT))
    stamp.write_text(digest.hexdigest() + "\n")


def run_pytest(session: nox.Session) -> None:
    # success_codes=[0]: pytest's exit code 5 ("no tests collected") fails the session too.
    session.run("pytest", *session.posargs, env=TEST_ENV, success_codes=[0])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and mypy (strict, django-stubs) on Django 6.1."""
    # tools.txt brings nox itself, so mypy can check this file; `./dev lock` keeps the two
    # lock files compatible (django61.txt is compiled with tools.txt as a constraint).
    install_locked(session, "django61.txt", "tools.txt")
    checks = [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("mypy",),  # the sendwell package, per [tool.mypy]
        ("mypy", "noxfile.py", "example", "testservers"),  # the tooling and test servers
    ]
    # Run every check, so one run shows every problem; fail at the end if any failed.
    failed = []
    for check in checks:
        try:
            session.run(*check)
        except nox.command.CommandFailed:
            failed.append(" ".join(check))
    if failed:
        session.error("failed: " + "; ".join(failed))


@nox.session(name="tests-django52", python=PYTHON)
def tests_django52(session: nox.Session) -> None:
    """pytest on Django 5.2 LTS (requirements/django52.txt)."""
    install_locked(session, "django52.txt")
    run_pytest(session)


@nox.session(name="tests-django61", python=PYTHON)
def tests_django61(session: nox.Session) -> None:
    """pytest on Django 6.1 (requirements/django61.txt)."""
    install_locked(session, "django61.txt")
    run_pytest(session)
