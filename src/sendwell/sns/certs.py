"""SNS signing certificates: fetching one (replaceably), checking it, and remembering it.

The fetcher only moves bytes. Checking the URL before any fetch, checking what came back and
caching it are the :class:`~sendwell.sns.verify.Verifier`'s, so they apply whatever fetcher a
caller plugs in (a test's dictionary, a proxy-aware client, an SQS poller's own session).
"""

from __future__ import annotations

import collections
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from typing import IO, Final, NoReturn, Protocol, override

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from sendwell.sns.envelope import VerificationError, shorten
from sendwell.sns.urls import validate_cert_url

__all__ = [
    "CertificateCache",
    "CertificateFetcher",
    "SigningKey",
    "UrllibCertificateFetcher",
    "load_signing_key",
    "no_redirect_opener",
]

MAX_CERT_BYTES: Final = 64 * 1024  # SNS's certificates are under 2 KiB
MIN_RSA_BITS: Final = 2048


class CertificateFetcher(Protocol):
    """Gets the bytes at an https URL the Verifier already checked. Any exception it raises is
    reported as VerificationError("cert_unavailable"), and nothing is cached."""

    def fetch(self, url: str) -> bytes: ...


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead off SNS's host to a certificate of the forger's choosing, so a 3xx
    # is an error, not a hop.
    @override
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect refused ({msg})", headers, fp)


def no_redirect_opener(proxies: Mapping[str, str] | None = None) -> urllib.request.OpenerDirector:
    """An opener for http(s) only (no file:, ftp: or data:), that refuses redirects.

    ``proxies`` as for :class:`urllib.request.ProxyHandler` (None: the environment's).
    """
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(None if proxies is None else dict(proxies)),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),  # the default context: certificate and host name checked
        urllib.request.UnknownHandler(),  # any other scheme: "unknown url type"
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        _RefuseRedirects(),
    ):
        opener.add_handler(handler)
    return opener


def read_bounded(
    opener: urllib.request.OpenerDirector, url: str, *, timeout: float, limit: int
) -> bytes:
    """GET ``url``: the body of a 200, at most ``limit`` bytes, within about ``timeout``
    seconds in all, else an OSError."""
    # A socket timeout bounds each read, not the whole body: a server sending a byte every few
    # seconds would hold the request for hours. So the body is read as it arrives, against a
    # deadline.
    deadline = time.monotonic() + timeout
    with opener.open(url, timeout=timeout) as response:
        if response.status != 200:
            raise urllib.error.HTTPError(url, response.status, "not 200", response.headers, None)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk: bytes = response.read1(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the response took over {timeout} s")
    if size > limit:
        raise OSError(f"the response is over {limit} bytes")
    return b"".join(chunks)


class UrllibCertificateFetcher:
    """The default fetcher: urllib, no redirects, a timeout and a size bound.

    :meth:`fetch` checks the URL again (so this class is safe on its own too) and calls
    :meth:`_get`, the network part, which takes any http(s) URL: a test serves it from
    127.0.0.1 without the SNS host rule being loosened anywhere.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_bytes: int = MAX_CERT_BYTES,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._opener = no_redirect_opener(proxies)

    def fetch(self, url: str) -> bytes:
        return self._get(validate_cert_url(url))

    def _get(self, url: str) -> bytes:
        return read_bounded(self._opener, url, timeout=self.timeout, limit=self.max_bytes)


@dataclass(frozen=True)
class SigningKey:
    """A checked certificate's RSA public key and the last moment it may be used."""

    public_key: RSAPublicKey
    not_before: datetime
    not_after: datetime


def _bad_certificate(url: str, why: str) -> NoReturn:
    raise VerificationError(
        "bad_certificate",
        f"The signing certificate at {shorten(url)} {why}",
        "SNS serves one valid RSA certificate there; check the clock of this machine, and "
        "whether something between it and SNS rewrites responses",
    )


_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_END: Final = b"-----END CERTIFICATE-----"


def load_signing_key(pem: bytes, url: str, now: datetime) -> SigningKey:
    """The public key of the single PEM certificate ``pem``, valid at ``now``."""
    if len(pem) > MAX_CERT_BYTES:  # whatever fetcher read it
        _bad_certificate(url, f"is over {MAX_CERT_BYTES} bytes")
    body = pem.strip()
    if not (body.startswith(_BEGIN) and body.endswith(_END)):
        _bad_certificate(url, "is not a PEM certificate")
    try:
        certificates = x509.load_pem_x509_certificates(body)
    except ValueError:
        _bad_certificate(url, "is not a PEM certificate")
    if len(certificates) != 1:
        _bad_certificate(url, f"is {len(certificates)} certificates, not one")
    (certificate,) = certificates
    key = certificate.public_key()
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        _bad_certificate(url, f"does not hold an RSA key of {MIN_RSA_BITS} bits or more")
    signing_key = SigningKey(key, certificate.not_valid_before_utc, certificate.not_valid_after_utc)
    check_validity(signing_key, url, now)
    return signing_key


def check_validity(key: SigningKey, url: str, now: datetime) -> None:
    if now < key.not_before:
        _bad_certificate(url, f"is not valid before {key.not_before.isoformat()}")
    if now > key.not_after:
        _bad_certificate(url, f"expired at {key.not_after.isoformat()}")


class CertificateCache:
    """Checked signing keys by URL: at most ``max_entries`` (least recently used go first),
    each kept ``ttl`` at most and never past its certificate's notAfter. Thread-safe.

    Only keys that loaded and checked are ever put here: a failed fetch is asked again next time.
    """

    def __init__(self, *, max_entries: int = 32, ttl: timedelta = timedelta(hours=1)) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be 1 or more, not {max_entries}")
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: collections.OrderedDict[str, tuple[datetime, SigningKey]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, url: str, now: datetime) -> SigningKey | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                return None
            expires, key = entry
            if now >= expires:
                del self._entries[url]
                return None
            self._entries.move_to_end(url)
            return key

    def put(self, url: str, key: SigningKey, now: datetime) -> None:
        with self._lock:
            self._entries[url] = (min(now + self.ttl, key.not_after), key)
            self._entries.move_to_end(url)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
