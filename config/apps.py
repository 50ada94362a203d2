"""App configs of the project itself: Django's admin with the hub's own site."""

from django.contrib.admin.apps import AdminConfig


class HubAdminConfig(AdminConfig):
    default_site = "config.adminsite.HubAdminSite"
