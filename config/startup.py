"""What a process loads as it starts: the admin's modules only where pages may be served.

The commands that move data (SPEC 9) serve no page: they start without importing every app's admin module (about
half a second of a command's start-up, which a scheduler or an integration pays on every run). Their admin is
loaded when a URL is first resolved (config.urls), as in the web server; everything else loads it at start.
This module imports nothing of Django: manage.py asks it before Django is set up.
"""

# The data-moving commands of SPEC 9; each also skips Django's system checks (requires_system_checks = []).
LEAN_COMMANDS = frozenset({"impex_import", "impex_job", "impex_scan", "impex_export", "orders_export", "orders_feed"})

_deferred = False


def defer_admin_for(argv: list[str]) -> None:
    """Start without the admin's modules when argv runs one of LEAN_COMMANDS (manage.py calls this)."""
    global _deferred
    _deferred = len(argv) > 1 and argv[1] in LEAN_COMMANDS


def admin_deferred() -> bool:
    """Tell whether this process starts without importing the admin's modules."""
    return _deferred
