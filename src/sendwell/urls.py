"""sendwell's URLs: ``path("ses/", include("sendwell.urls"))`` puts the SNS webhook at /ses/sns/."""

from django.urls import path

from sendwell import webhook

app_name = "sendwell"
urlpatterns = [path("sns/", webhook.sns, name="sns")]
