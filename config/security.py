"""Login throttling's view of a request (django-axes): the client's address behind proxies, and the lockout page."""

import ipaddress

from django.conf import settings
from django.contrib import admin
from django.shortcuts import render


def _address(text: str) -> str | None:
    """Return text as a normalised IP address, or None if it is not one."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """Return the client's address: the connecting one, or X-Forwarded-For's as set by IMPEX_PROXY_COUNT proxies.

    Each trusted proxy appends the address it was connected from, so the client is the entry that many places from
    the right; entries further left are whatever the client sent, and never trusted.
    """
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.IMPEX_PROXY_COUNT
    if not proxies:
        return remote
    chain = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not chain:
        return remote
    return _address(chain[-min(proxies, len(chain))]) or remote


def lockout_response(request, original_response=None, credentials=None):
    """Render the admin's page saying that this username is locked out from this address, and for how long."""
    cool_off = settings.AXES_COOLOFF_TIME
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed logins",
        "username": (credentials or {}).get("username") or request.POST.get("username", ""),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": round(cool_off.total_seconds() / 60) if cool_off else None,
    }
    return render(request, "admin/lockout.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
