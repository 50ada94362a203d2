"""SFTP locations (sftp://[user@]host[:port]/path) on django-storages' SFTPStorage, made to check host keys,
addresses and logins (impex.storage.sftp_client, imported with paramiko when the first is built)."""

from __future__ import annotations

import posixpath
import stat
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.core.files import File

from impex.exceptions import ConfigurationError, LocationRefused
from impex.locations import Location
from impex.storage.base import Backend, StoredFile, hidden_name, opened, register_backend
from impex.storage.hosts import is_hub_host, listed_entry, server_refusal

if TYPE_CHECKING:
    import paramiko

    from impex.storage.sftp_client import CheckedSFTPStorage

SFTP_TIMEOUT_SECONDS = 30
# SFTPStorage.params keys of the credentials, and the settings they come from.
SFTP_CREDENTIALS = (("password", "SFTP_PASSWORD"), ("key_filename", "SFTP_KEY_FILE"))


def _sftp_login(host: str, port: int) -> tuple[dict, str] | None:
    """Return the key file and password for an SFTP host and where they came from; None for a host not listed.

    Only the hosts an operator listed in SFTP_HOSTS (and IMPEX_STORAGE's host) get a login: an entry's own, or the
    defaults SFTP_KEY_FILE / SFTP_PASSWORD for an entry without one. A host a connection editor names is not sent them.
    """
    found = listed_entry(settings.SFTP_HOSTS, host, port)
    if found is not None:
        listed, entry = found
        if entry.get("key_file") or entry.get("password"):
            return {"key_file": entry.get("key_file"), "password": entry.get("password")}, f"SFTP_HOSTS[{listed!r}]"
        return {"key_file": settings.SFTP_KEY_FILE, "password": settings.SFTP_PASSWORD}, ""
    if _is_hub_host(host, port):
        return {"key_file": settings.SFTP_KEY_FILE, "password": settings.SFTP_PASSWORD}, ""
    return None


def _is_hub_host(host: str, port: int) -> bool:
    """Tell whether host:port is the SFTP server of IMPEX_STORAGE, which the operator chose (not an editor)."""
    return is_hub_host(host, port, schemes=(SFTPBackend.scheme,), default_port=22)


def _unlisted(host: str, port: int) -> str:
    return (
        f"the SFTP host {host}:{port} is not listed in SFTP_HOSTS, and the hub logs in only to the hosts listed there "
        "(an entry of {} takes SFTP_PASSWORD / SFTP_KEY_FILE): ask the operator to list it"
    )


def sftp_host_refusal(host: str, port: int, *, resolve: bool = True) -> str:
    """Say why the hub may not use an SFTP host (empty: it may): not listed in SFTP_HOSTS, or an address refused.

    resolve: also resolve the name and check its addresses (impex.outbound), as a connection does.
    """
    unlisted = _unlisted(host, port) if _sftp_login(host, port) is None else ""
    return server_refusal(host, port, unlisted=unlisted, hub=_is_hub_host(host, port), resolve=resolve)


@register_backend
class SFTPBackend(Backend):
    """A folder on an SFTP server (sftp://[user@]host[:port]/path), on django-storages' SFTPStorage (checked: see
    impex.storage.sftp_client). Its public sftp client (paramiko's SFTPClient) serves where SFTPStorage has no call."""

    scheme = "sftp"
    storage: CheckedSFTPStorage

    @classmethod
    def at(cls, location: Location) -> SFTPBackend:
        from impex.storage.sftp_client import CheckedSFTPStorage

        shown, host, port = location.shown, location.host, location.port or 22
        if not host:
            raise ConfigurationError(f"storage location {shown!r} has no host: use sftp://[user@]host[:port]/path")
        if location.has_password:
            raise ConfigurationError(
                f"storage location {shown!r} holds a password: "
                "set SFTP_PASSWORD or SFTP_KEY_FILE instead (locations are shown in the admin)"
            )
        login = _sftp_login(host, port)
        if login is None:
            raise LocationRefused(f"storage location {shown!r}: {_unlisted(host, port)}")
        credentials, login_from = login
        params = {"port": port, "timeout": SFTP_TIMEOUT_SECONDS}
        if location.username:
            params["username"] = location.username
        if credentials.get("key_file"):
            params["key_filename"] = credentials["key_file"]
        if credentials.get("password"):
            params["password"] = credentials["password"]
        return cls(
            CheckedSFTPStorage(
                host=host,
                root_path=location.path,
                params=params,
                known_host_file=settings.SFTP_KNOWN_HOST_FILE,
                allow_unknown_hosts=settings.SFTP_ALLOW_UNKNOWN_HOSTS,
                login_from=login_from,
                check_address=not _is_hub_host(host, port),
            )
        )

    def _remote(self, name: str) -> str:
        """Return a name's path on the server (SFTPStorage joins its root_path so, privately)."""
        return posixpath.join(self.storage.root_path, name)

    def where(self, name: str) -> str:
        return f"sftp://{self.storage.host}{posixpath.join(self.storage.root_path or '/', name)}"

    def open(self, name: str) -> IO[bytes]:
        from impex.storage.sftp_client import SFTPReader

        # SFTPStorage.open reads the whole file into memory, and fails only at the first read.
        return SFTPReader(self.storage.sftp.open(self._remote(name), "rb"))

    def save(self, name: str, source: str | Path | IO[bytes]) -> str:
        # SFTPStorage.save writes straight under the final name: a scan could take a partial file, and a file given
        # that name meanwhile would be overwritten. So it saves under a hidden name beside it, renamed when complete.
        hidden = hidden_name(name)
        try:
            with opened(source) as stream:
                self._save_hidden(hidden, stream)
            while True:
                name = self.storage.get_available_name(name)
                try:
                    # SFTPStorage has no rename; SFTP's plain one (not posix-rename) never replaces an existing file.
                    self.storage.sftp.rename(self._remote(hidden), self._remote(name))
                    return name
                except OSError:
                    if not self.storage.exists(name):
                        raise
                    # the name was taken since get_available_name: try the next free one
        except BaseException:
            import paramiko

            with suppress(OSError, paramiko.SSHException):  # best effort: the connection may be what failed
                self.storage.sftp.remove(self._remote(hidden))
            raise

    def _save_hidden(self, hidden: str, stream: IO[bytes]) -> None:
        try:
            self.storage.save(hidden, File(stream))
        except OSError:
            # Another writer may have made the folder between SFTPStorage's look and its mkdir: nothing was sent.
            if self.storage.exists(hidden) or not self.storage.exists(posixpath.dirname(hidden) or "."):
                raise
            self.storage.save(hidden, File(stream))

    def delete(self, name: str) -> None:
        # SFTPStorage.delete swallows every error: a file it could not remove would be taken as gone.
        with suppress(FileNotFoundError):
            self.storage.sftp.remove(self._remote(name))

    def _stat(self, name: str) -> paramiko.SFTPAttributes | None:
        """Return a name's attributes in one round trip (SFTPStorage.exists says True for a folder too)."""
        try:
            return self.storage.sftp.stat(self._remote(name))
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        attrs = self._stat(name)
        return attrs is not None and stat.S_ISREG(attrs.st_mode)

    def look_at(self, name: str) -> StoredFile | None:
        attrs = self._stat(name)  # size and time of one moment
        return self._file(name, attrs) if attrs is not None and stat.S_ISREG(attrs.st_mode) else None

    def _file(self, name: str, attrs: paramiko.SFTPAttributes) -> StoredFile:
        tz = UTC if settings.USE_TZ else None
        return StoredFile(name=name, size=attrs.st_size, modified=datetime.fromtimestamp(attrs.st_mtime, tz=tz))

    def entries(self, folder: str) -> tuple[list[str], list[StoredFile]]:
        # The client's listing carries each entry's size and time: SFTPStorage.listdir has names only, then a round
        # trip per file.
        path = self._remote(folder)
        try:
            entries = self.storage.sftp.listdir_attr(path)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        dirs, files = [], []
        for attrs in sorted(entries, key=lambda a: a.filename):
            entry = attrs.filename
            if entry.startswith("."):
                continue
            if stat.S_ISLNK(attrs.st_mode or 0):
                attrs = self._stat(posixpath.join(folder, entry))  # what the link points to
                if attrs is None:
                    continue  # a dangling link, or removed since the listing
            if stat.S_ISDIR(attrs.st_mode or 0):
                dirs.append(entry)
            elif stat.S_ISREG(attrs.st_mode or 0):
                files.append(self._file(posixpath.join(folder, entry), attrs))
        return dirs, files

    def close(self) -> None:
        self.storage.close()
