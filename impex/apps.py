"""App config of impex."""

from django.apps import AppConfig


class ImpexConfig(AppConfig):
    name = "impex"
    verbose_name = "ImpEx"
