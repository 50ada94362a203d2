#!/usr/bin/env python
"""Django's command-line utility for impex-hub."""

import os
import sys


def main():
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.startup import defer_admin_for

    defer_admin_for(sys.argv)
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A setting the environment must give (SECRET_KEY, a malformed variable): its message, not a traceback.
        sys.exit(f"impex-hub cannot start: {exc}")


if __name__ == "__main__":
    main()
