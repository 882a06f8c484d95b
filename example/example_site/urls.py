"""URLs of the example site: the admin, where sent mail can be inspected, and the SNS webhook
that SES's bounces and complaints arrive at."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("ses/", include("sendwell.urls")),
]
