from django.contrib import admin

from newsletter.models import Subscriber

admin.site.register(Subscriber)
