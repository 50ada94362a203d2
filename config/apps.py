"""App configs of the project itself: Django's admin with the hub's own site."""

import functools

from django.contrib.admin.apps import AdminConfig, SimpleAdminConfig

from config.startup import admin_deferred


@functools.cache
def admin_load() -> None:
    """Import every app's admin module, make django-q2's pages superusers-only and give the user page the hint of the
    hub's groups; once per process (called at start, or by config.urls when its module is first imported)."""
    from django.contrib import admin

    admin.autodiscover()
    admin.site.restrict_to_superusers()
    admin.site.use_hub_user_admin()


class HubAdminConfig(AdminConfig):
    default_site = "config.adminsite.HubAdminSite"

    def ready(self):
        if admin_deferred():
            # A data-moving command (config.startup): the admin's checks only; config.urls loads the admin if a
            # URL is ever resolved.
            SimpleAdminConfig.ready(self)
            return
        super().ready()  # autodiscover: every app's admin module has registered its models by now
        admin_load()
