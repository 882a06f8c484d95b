"""boto3 clients for SES: one per configuration per process, shared by every backend and thread.

boto3 *clients* are thread-safe, *sessions* are not, and creating either costs milliseconds (it
loads the service model from disk). django-ses creates a new client for every ``send_mail()``;
sendwell creates one per distinct configuration and keeps it, under a lock.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import boto3
from botocore.config import Config

from sendwell import __version__
from sendwell.options import SESOptions

_clients: dict[SESOptions, Any] = {}
_lock = threading.Lock()


def _client_key(options: SESOptions) -> SESOptions:
    # The configuration set is per request, not per client.
    return dataclasses.replace(options, configuration_set=None)


def ses_client(options: SESOptions) -> Any:
    """The shared ``sesv2`` (or ``ses`` for v1) client for ``options``."""
    key = _client_key(options)
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _create_client(options)
            _clients[key] = client
    return client


def _create_client(options: SESOptions) -> Any:
    # With no keys, boto3's default chain finds credentials: environment, shared files, then the
    # ECS task role, the EC2 instance profile or the Lambda role, refreshed before they expire.
    session = boto3.session.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        region_name=options.region_name,
    )
    config = Config(
        # One attempt per call: sendwell retries itself (sendwell.delivery), so that the pacer
        # hears of every throttle, and a timed-out send (SES may have accepted it) is never
        # repeated blindly.
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        # Several threads (a threaded worker, gunicorn threads) share this client.
        max_pool_connections=32,
        user_agent_extra=f"sendwell/{__version__}",
    )
    return session.client(
        "sesv2" if options.use_ses_v2 else "ses",
        endpoint_url=options.endpoint_url,
        config=config,
    )


def credential_source(options: SESOptions) -> str | None:
    """How credentials are found for ``options``: 'explicit', 'env', 'iam-role',
    'container-role', 'shared-credentials-file', ... or None when there are none.

    This may call the instance metadata service; use it in tools (the doctor), not per message.
    """
    session = boto3.session.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        region_name=options.region_name,
    )
    credentials = session.get_credentials()
    return None if credentials is None else str(credentials.method)


def clear_clients() -> None:
    """Forget every cached client (tests; after credentials files change)."""
    with _lock:
        _clients.clear()
