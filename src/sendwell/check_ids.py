"""Every id of a configuration problem or system check sendwell reports, each with one meaning.

The ids are what users search for: one id is one problem. ``docs/configuration.md`` lists them
(``python -m sendwell.check_ids`` prints the table; a test keeps the two the same, and checks
that the code uses no id missing here).
"""

from __future__ import annotations

CHECK_IDS: dict[str, str] = {
    "sendwell.E001": "SES region missing or not a region name",
    "sendwell.E002": "only one of the access key id / secret, or a session token without keys",
    "sendwell.E003": "invalid configuration set name",
    "sendwell.E004": "TLS and SSL both on",
    "sendwell.E005": "port or SMTP timeout not a number",
    "sendwell.E006": "`EMAIL_SSL_CAFILE` / `ssl_cafile` is not a file",
    "sendwell.E007": "a boolean variable or option that is not one (`USE_SES=ture`)",
    "sendwell.E008": "endpoint URL is not an http(s) URL",
    "sendwell.E009": "`email_settings(env_file=...)` names something that is not a file",
    "sendwell.E010": "`DEFAULT_FROM_EMAIL` is not a valid address",
    "sendwell.E011": "outbox: failover without both SES and SMTP, no transport, unknown options",
    "sendwell.E012": "`SENDWELL = {...}` ([settings.md](settings.md)): an unknown setting (a "
    "typo), a value of the wrong kind or range, the Redis limiter without `REDIS_URL`",
    "sendwell.E013": "an unknown SES option (a typo in `OPTIONS`)",
    "sendwell.E014": "an SES connect/read timeout that is not a number of seconds > 0, or "
    "`max_attempts` not a whole number >= 1",
    "sendwell.W001": "`DEFAULT_FROM_EMAIL` is `...@localhost`, which SES rejects",
    "sendwell.W002": 'outbox: `SENDWELL["LEASE_SECONDS"]` not longer than one SES call may take '
    "(connect + read timeout), so a second worker could send a message still in flight",
    "sendwell.W003": "(`check --database default`) an SES account whose limits could not be "
    "read (the IAM policy lacks `ses:GetAccount` / `ses:GetSendQuota`): the rate is learned and "
    "no 24-hour cap kept; allow the action or set `MAX_SEND_RATE`",
    "sendwell.W004": "`SENDWELL = {...}` names a setting that was removed "
    "(`FALLBACK_SEND_RATE`, `FALLBACK_24_HOUR_SEND`); it is ignored, and the hint says what "
    "replaced it",
    "sendwell.W005": "the SNS webhook (`sendwell:sns`) is in the URLs but "
    '`SENDWELL["SNS_TOPIC_ARNS"]` is empty, so it refuses every notification',
}


def markdown() -> str:
    rows = ["| id | problem |", "|---|---|"]
    rows += [f"| `{check_id}` | {meaning} |" for check_id, meaning in CHECK_IDS.items()]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
