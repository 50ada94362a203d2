"""Locations taken apart (parse_location, the one parser), and which local folders the hub may use (SPEC 13).

A folder that a connection, an export group or a file exporter names (an inbox, an archive, an error folder, an
outbox, a destination) is resolved with its links followed and must lie under IMPEX_ROOT, the hub's own storage
(IMPEX_STORAGE when it is a local folder) or a root listed in IMPEX_ALLOWED_LOCAL_ROOTS. Whatever the roots say, it
may neither hold nor lie in the hub's own files: var/ (secret key, SQLite database), the cache, media and static
folders, the code, and the Python the hub runs on (a file written to site-packages would run in every process);
only the hub's own roots may lie inside var/ or the code's folder (IMPEX_ROOT is var/impex by default).
Folders are checked when saved (impex.models.location_errors) and again before every use (impex.storage), so a
folder saved before these rules, or a link that leads elsewhere since, is refused at use.
"""

import functools
import os
import re
import site
import sys
import sysconfig
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.conf import settings

from impex.exceptions import ConfigurationError, LocationRefused

LOCATION_FORMS = (
    "an absolute folder path, file:///path, s3://bucket/prefix, sftp://[user@]host[:port]/path, "
    "ftp://[user@]host[:port]/path or ftps://[user@]host[:port]/path"
)
# The password of a user:password@ part, kept out of error messages.
URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*):[^/@]*@", re.IGNORECASE)
ROOTS_SETTING = "IMPEX_ALLOWED_LOCAL_ROOTS"
# Settings naming the hub's own files and folders (each may be unset in a settings module of another project).
OWN_SETTINGS = ("VAR_DIR", "BASE_DIR", "IMPEX_CACHE_DIR", "MEDIA_ROOT", "STATIC_ROOT")


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def _inside(path: str, folder: str) -> bool:
    """Tell whether a real path is folder itself or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class Location:
    """A storage location taken apart: its scheme (file for a local folder), URL parts, and how to show it."""

    scheme: str  # lower case: file, s3, sftp, ftp, ftps, ...
    shown: str  # the location as shown to people: a password in it masked
    netloc: str = ""
    host: str = ""  # lower case; "" if none
    port: int | None = None
    username: str = ""
    has_password: bool = False
    path: str = ""  # unquoted; a local folder's absolute path


def parse_location(location: str) -> Location:
    """Take apart an absolute folder path, file:///path or scheme://... URL; ConfigurationError saying why it can't.

    The one parser of location strings: the storage registry (impex.storage) picks a backend by its scheme, and
    the confinement below reads a local folder's path from it.
    """
    if not location:
        raise ConfigurationError(f"empty storage location: use {LOCATION_FORMS}")
    if location.startswith("/"):
        return Location(scheme="file", shown=location, path=location)
    shown = URL_PASSWORD.sub(r"\1:***@", location)
    if "://" not in location:
        raise ConfigurationError(f"storage location {shown!r} is not an absolute folder path: use {LOCATION_FORMS}")
    try:
        url = urlsplit(location)
        port = url.port
    except ValueError as exc:
        raise ConfigurationError(f"storage location {shown!r} is not a valid URL ({exc})") from exc
    if url.query or url.fragment:
        raise ConfigurationError(f"storage location {shown!r} may not have a ?query or #fragment")
    parsed = Location(
        scheme=url.scheme.lower(),
        shown=shown,
        netloc=url.netloc,
        host=url.hostname or "",
        port=port,
        username=unquote(url.username or ""),
        has_password=url.password is not None,
        path=unquote(url.path),
    )
    # A file URL names a folder of this machine: no other host, and an absolute path.
    if parsed.scheme == "file" and (url.netloc not in ("", "localhost") or not parsed.path.startswith("/")):
        raise ConfigurationError(f"storage location {shown!r} must be file:///absolute/path")
    return parsed


def is_location(value: str) -> bool:
    """Tell a location (an absolute folder or a URL) from a folder or file name inside the hub's storage."""
    return value.startswith("/") or "://" in value


def local_path(location: str) -> str | None:
    """Return the path of a local location (an absolute folder or file:///path); None for any other location."""
    try:
        parsed = parse_location(location)
    except ConfigurationError:
        return None
    return parsed.path if parsed.scheme == "file" else None


def hub_folder() -> str | None:
    """Return the folder of the hub's own storage on local disk (IMPEX_STORAGE, else IMPEX_ROOT); None if remote."""
    if not settings.IMPEX_STORAGE:
        return _real(settings.IMPEX_ROOT)
    path = local_path(settings.IMPEX_STORAGE)
    return _real(path) if path else None


def _hub_roots() -> list[str]:
    """Return the hub's own roots: IMPEX_ROOT, and its storage's folder when local (real paths)."""
    return list(dict.fromkeys(p for p in (_real(settings.IMPEX_ROOT), hub_folder()) if p))


@functools.cache
def _python_places() -> tuple[str, ...]:
    """Return the Python the hub runs on: prefixes, standard library, site-packages (.pth files run) and import path."""
    places = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(), *site.getsitepackages()}
    places.add(site.getusersitepackages())
    places.update(entry for entry in sys.path if entry)  # "" is the working folder of `python -c`, not code
    return tuple(sorted({_real(place) for place in places}))


def _own_places() -> list[str]:
    """Return the hub's own files and folders, and its Python's, as real paths: never a location."""
    places = [getattr(settings, name, None) for name in OWN_SETTINGS]
    places += [db.get("NAME") for db in settings.DATABASES.values() if db.get("ENGINE", "").endswith("sqlite3")]
    own = {_real(place) for place in places if place and os.path.isabs(os.fspath(place))}
    return [*sorted(own), *_python_places()]


def local_refusal(path: str) -> str:
    """Say why the hub may not use a local folder or file, links followed (empty: it may); the reason names path."""
    real = _real(path)
    shown = path if real == os.path.normpath(path) else f"{path} (a link to {real})"
    hub_roots = _hub_roots()
    for place in _own_places():
        # IMPEX_ROOT (var/impex by default) and what is under it are the only places inside var/ or the code.
        hub_own = any(_inside(root, place) and _inside(real, root) for root in hub_roots)
        relation = "holds" if _inside(place, real) else "lies in" if _inside(real, place) and not hub_own else ""
        if relation:
            return f"{shown} {relation} the hub's own files ({place}): it is never used, whatever {ROOTS_SETTING} lists"
    roots = [*hub_roots, *(_real(root) for root in settings.IMPEX_ALLOWED_LOCAL_ROOTS)]
    if not any(_inside(real, root) for root in roots):
        listed = ", ".join(settings.IMPEX_ALLOWED_LOCAL_ROOTS) or "none"
        return (
            f"{shown} is outside the folders the hub may use: IMPEX_ROOT ({settings.IMPEX_ROOT}) and the roots "
            f"in {ROOTS_SETTING} ({listed}); use a folder under one of them, or have the operator list its root there"
        )
    return ""


def confined(path: str, *, what: str = "folder") -> str:
    """Return the real path of a local folder or file the hub may use; LocationRefused (touching nothing) if not."""
    refusal = local_refusal(path)
    if refusal:
        raise LocationRefused(f"the local {what} {refusal}")
    return _real(path)
