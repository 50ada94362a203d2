"""App configs of the project itself: Django's admin with the hub's own site."""

import threading

from django.contrib.admin.apps import AdminConfig, SimpleAdminConfig

from config.startup import admin_deferred

_loaded = threading.Event()
_loading = threading.Lock()


def admin_load() -> None:
    """Import every app's admin module and make django-q2's pages superusers-only; once per process."""
    if _loaded.is_set():
        return
    with _loading:
        if _loaded.is_set():
            return
        from django.contrib import admin

        admin.autodiscover()
        admin.site.restrict_to_superusers()
        _loaded.set()


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
