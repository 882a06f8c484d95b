"""Which URLs in an SNS message may be fetched: only SNS's own, over https.

The signing certificate's URL comes inside the message it is meant to authenticate, so whoever
forges a message picks it. Fetching it from anywhere but SNS would let a forger sign with a key
of their own (an S3 bucket is on ``amazonaws.com`` too, and anyone can own one), and fetching it
at all before this check would let anyone make this server send requests (SSRF).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final, NoReturn

from sendwell.sns.envelope import Reason, VerificationError, shorten

__all__ = ["validate_cert_url", "validate_subscribe_url"]

# Exactly sns.<region>.amazonaws.com, or .com.cn in the China partition; matched against the
# whole parsed hostname, so "sns.us-east-1.amazonaws.com.evil.com" and "evilsns.…" fail. The
# label must be shaped like a region (two letters, words, a number: us-east-1, us-gov-west-1,
# cn-north-1, us-isob-east-1): "sns.s3.amazonaws.com", "sns.s3-us-west-2.amazonaws.com" and
# "sns.s3-accelerate.amazonaws.com" are an S3 bucket named "sns", which anyone may own.
_SNS_HOST: Final = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}\.amazonaws\.com(\.cn)?")
# RFC 3986's characters. Anything else (spaces, backslashes, control characters, non-ASCII) is
# where URL parsers disagree, and SNS never sends it.
_URL_CHARS: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_MAX_URL: Final = 2048


def _refuse(reason: Reason, field: str, url: str, why: str) -> NoReturn:
    raise VerificationError(
        reason,
        f"{field} {shorten(url)} {why}",
        f"SNS sends only https://sns.<region>.amazonaws.com URLs; a message with another "
        f"{field} is forged or corrupted, so it was dropped",
    )


def _validate_sns_url(url: str, field: str, reason: Reason) -> urllib.parse.SplitResult:
    if len(url) > _MAX_URL or not _URL_CHARS.fullmatch(url):
        _refuse(reason, field, url, "has characters (or a length) no SNS URL has")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # a non-numeric or out-of-range port raises here
    except ValueError:
        _refuse(reason, field, url, "is not a valid URL")
    if parts.scheme != "https":
        _refuse(reason, field, url, "is not an https URL")
    if "@" in parts.netloc:
        _refuse(reason, field, url, "has a user name or password in it")
    if port not in (None, 443):
        _refuse(reason, field, url, "names a port other than 443")
    if parts.hostname is None or not _SNS_HOST.fullmatch(parts.hostname):
        _refuse(reason, field, url, "is not on an SNS host (sns.<region>.amazonaws.com)")
    if parts.fragment:
        _refuse(reason, field, url, "has a fragment")
    return parts


def validate_cert_url(url: str) -> str:
    """``url`` if it may be fetched as an SNS signing certificate, else VerificationError
    ("bad_cert_url"): https, an SNS host, port 443, no user info, a path ending in ``.pem``
    and no query."""
    parts = _validate_sns_url(url, "SigningCertURL", "bad_cert_url")
    if not parts.path.endswith(".pem") or parts.query:
        _refuse("bad_cert_url", "SigningCertURL", url, "is not a .pem file")
    return url


def validate_subscribe_url(url: str) -> str:
    """``url`` if it is SNS's ConfirmSubscription link, else VerificationError
    ("bad_subscribe_url"): the same host rule as the certificate, and
    ``Action=ConfirmSubscription`` in the query, so following it can do nothing else."""
    parts = _validate_sns_url(url, "SubscribeURL", "bad_subscribe_url")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if query.get("Action") != ["ConfirmSubscription"]:
        _refuse("bad_subscribe_url", "SubscribeURL", url, "is not a ConfirmSubscription link")
    return url
