"""App configs of the project itself: Django's admin with the hub's own site."""

from django.contrib.admin.apps import AdminConfig


class HubAdminConfig(AdminConfig):
    default_site = "config.adminsite.HubAdminSite"

    def ready(self):
        super().ready()  # autodiscover: every app's admin module has registered its models by now
        from django.contrib import admin

        admin.site.restrict_to_superusers()
