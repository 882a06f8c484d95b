"""The test project's URLs with sendwell's SNS webhook (tests/urls.py leaves it out, so that the
other tests' system checks do not meet sendwell.W005)."""

from django.urls import include, path

from tests.urls import urlpatterns as base

urlpatterns = [*base, path("ses/", include("sendwell.urls"))]
