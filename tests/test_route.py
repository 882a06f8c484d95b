"""Routes: a mailer's transports in order, and where a message fails over to (no database)."""

from __future__ import annotations

import pytest

from sendwell.delivery import Route
from sendwell.options import ses_options
from sendwell.transports.ses import SESTransport
from sendwell.transports.smtp import SMTPTransport


def _ses() -> SESTransport:
    return SESTransport(ses_options({"region_name": "eu-west-1"}, where="test"))


def test_a_single_transport_never_fails_over() -> None:
    ses = _ses()
    route = Route.of(ses, None, failover=True)  # failover asked, but nothing to fail over to
    assert route.transports == (ses,)
    assert route.failover is False
    assert route.name == "ses"
    assert route.after(ses) is None


def test_failover_goes_to_the_next_transport_and_no_further() -> None:
    ses, smtp = _ses(), SMTPTransport({})
    route = Route.of(ses, smtp, failover=True)
    assert route.name == "failover"
    assert route.first is ses
    assert route.after(ses) is smtp
    assert route.after(smtp) is None


def test_without_failover_only_the_first_is_used() -> None:
    ses, smtp = _ses(), SMTPTransport({})
    route = Route.of(ses, smtp)
    assert route.name == "ses"
    assert route.after(ses) is None


def test_an_smtp_only_route() -> None:
    smtp = SMTPTransport({})
    route = Route.of(None, smtp)
    assert route.name == "smtp"
    assert route.first.paced_by is None  # SMTP is not paced by an SES account


def test_a_route_needs_a_transport() -> None:
    with pytest.raises(ValueError, match="at least one transport"):
        Route.of(None, None)


def test_ses_is_paced_by_its_account_and_gives_the_default_configuration_set() -> None:
    options = ses_options({"region_name": "eu-west-1", "configuration_set": "tracked"}, where="t")
    transport = SESTransport(options)
    assert transport.paced_by is options
    assert transport.configuration_set == "tracked"
