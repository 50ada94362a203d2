"""FTP and FTPS locations (ftp://[user@]host[:port]/path, ftps://... for explicit TLS) on django-storages' FTPStorage,
made to check addresses, verify certificates, time out and stream (impex.storage.ftp_client, imported when the
first is built). They work like SFTP ones: only hosts listed in FTP_HOSTS get a login, and only at an address the
hub may call (SPEC 13).
"""

from __future__ import annotations

import posixpath
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.core.files import File

from impex.exceptions import ConfigurationError, LocationRefused
from impex.locations import Location
from impex.storage.base import Backend, StoredFile, hidden_name, opened, register_backend
from impex.storage.hosts import is_hub_host, listed_entry, server_refusal

if TYPE_CHECKING:
    from impex.storage.ftp_client import CheckedFTPStorage

FTP_PORT = 21  # ftps:// is explicit TLS (AUTH TLS on the usual port); implicit FTPS (990) is not offered
FTP_SCHEMES = ("ftp", "ftps")


def _ftp_login(host: str, port: int) -> tuple[str, str] | None:
    """Return the password for an FTP host and where it came from; None for a host not listed.

    As for SFTP (impex.storage.sftp): only the hosts an operator listed in FTP_HOSTS (and IMPEX_STORAGE's host) get a
    login, an entry's own password or FTP_PASSWORD for an entry of {}; a host a connection editor names is not sent
    one. Passwords live in the environment only, never in a location (which the admin shows).
    """
    found = listed_entry(settings.FTP_HOSTS, host, port)
    if found is not None:
        listed, entry = found
        if entry.get("password"):
            return entry["password"], f"FTP_HOSTS[{listed!r}]"
        return settings.FTP_PASSWORD or "", ""
    if _is_hub_host(host, port):
        return settings.FTP_PASSWORD or "", ""
    return None


def _is_hub_host(host: str, port: int) -> bool:
    """Tell whether host:port is the FTP server of IMPEX_STORAGE, which the operator chose (not an editor)."""
    return is_hub_host(host, port, schemes=FTP_SCHEMES, default_port=FTP_PORT)


def _unlisted(host: str, port: int) -> str:
    return (
        f"the FTP host {host}:{port} is not listed in FTP_HOSTS, and the hub logs in only to the hosts listed there "
        "(an entry of {} takes FTP_PASSWORD): ask the operator to list it"
    )


def ftp_host_refusal(host: str, port: int, *, resolve: bool = True) -> str:
    """Say why the hub may not use an FTP host (empty: it may): not listed in FTP_HOSTS, or an address refused.

    resolve: also resolve the name and check its addresses (impex.outbound), as every connection does.
    """
    unlisted = _unlisted(host, port) if _ftp_login(host, port) is None else ""
    return server_refusal(host, port, unlisted=unlisted, hub=_is_hub_host(host, port), resolve=resolve)


@register_backend
class FTPBackend(Backend):
    """A folder on an FTP server (ftp://[user@]host[:port]/path; the password and the files cross the network in
    clear: prefer ftps:// or SFTP), on django-storages' FTPStorage (checked: see
    impex.storage.ftp_client). FTPStorage saves; its connection's ftplib calls serve where FTPStorage falls short
    (its listing breaks on names with spaces, its reads go into memory, it has no times and says 0 for a missing
    file's size)."""

    scheme = "ftp"
    storage: CheckedFTPStorage
    has_mlsd = True  # until the server says it does not understand MLSD

    @classmethod
    def at(cls, location: Location) -> FTPBackend:
        from impex.storage.ftp_client import CheckedFTPStorage

        shown, host, port = location.shown, location.host, location.port or FTP_PORT
        form = f"{cls.scheme}://[user@]host[:port]/path"
        if not host:
            raise ConfigurationError(f"storage location {shown!r} has no host: use {form}")
        if location.has_password:
            raise ConfigurationError(
                f"storage location {shown!r} holds a password: list the host in FTP_HOSTS with its password, or set "
                "FTP_PASSWORD, instead (locations are shown in the admin)"
            )
        login = _ftp_login(host, port)
        if login is None:
            raise LocationRefused(f"storage location {shown!r}: {_unlisted(host, port)}")
        password, login_from = login
        return cls(
            CheckedFTPStorage(
                location=shown,
                host=host,
                port=port,
                user=location.username or "anonymous",
                password=password,
                secure=cls.scheme == "ftps",
                root_path=posixpath.normpath("/" + location.path.strip("/")),
                timeout=settings.FTP_TIMEOUT_SECONDS,
                login_from=login_from,
                check_address=not _is_hub_host(host, port),
            )
        )

    def _remote(self, name: str) -> str:
        """Return a name's absolute path on the server (FTPStorage works relative to its working folder)."""
        return posixpath.join(self.storage.root_path, name)

    def where(self, name: str) -> str:
        port = "" if self.storage.port == FTP_PORT else f":{self.storage.port}"
        return f"{self.scheme}://{self.storage.host}{port}{self._remote(name)}"

    def _missing(self, exc: Exception, name: str) -> FileNotFoundError:
        return FileNotFoundError(f"no file {name!r} in {self.where('')} ({exc})")

    def open(self, name: str) -> IO[bytes]:
        import ftplib

        from impex.storage.ftp_client import FTPFailure, download

        try:
            expected = self.size(name)
            return download(self.storage.ftp, self._remote(name), expected=expected, shown=self.where(name))
        except ftplib.error_perm as exc:
            raise self._missing(exc, name) from exc
        except FTPFailure:
            self.storage.close()  # the control connection may be out of step: the next call connects afresh
            raise

    def save(self, name: str, source: str | Path | IO[bytes]) -> str:
        from storages.backends.ftp import FTPStorageException

        from impex.storage.ftp_client import FTP_ERRORS, FTPFailure

        # Under a hidden name beside it, renamed when complete, as on SFTP: FTPStorage writes straight under the
        # final name, so a scan could take a partial file.
        self.storage.enter_root()
        hidden = hidden_name(name)
        try:
            with opened(source) as stream:
                try:
                    # Storage.save picks a free name (FTPStorage.exists: NLST) and FTPStorage._put_file makes the
                    # folders and STORs the stream a chunk at a time.
                    self.storage.save(hidden, File(stream))
                except FTPStorageException as exc:
                    cause = exc.__context__ or exc  # it says only "Error writing file" or "Cannot create directory"
                    raise FTPFailure(f"the upload of {self.where(name)} failed ({cause})") from exc
            ftp = self.storage.ftp
            while True:
                name = self.storage.get_available_name(name)
                # RNTO replaces a file of that name on most servers: the name is checked free just before, so only
                # a file given the same name in that moment is at risk (SFTP's rename refuses; FTP has no such one).
                ftp.rename(self._remote(hidden), self._remote(name))
                return name
        except BaseException:
            with suppress(*FTP_ERRORS):  # best effort: the connection may be what failed
                self.storage.ftp.delete(self._remote(hidden))
            raise

    def delete(self, name: str) -> None:
        import ftplib

        try:
            self.storage.ftp.delete(self._remote(name))
        except ftplib.error_perm:
            # 550 is both "no such file" and "not allowed": only a file that is gone is not an error.
            if self.look_at(name) is not None:
                raise

    def exists(self, name: str) -> bool:
        return self.look_at(name) is not None

    def size(self, name: str) -> int:
        import ftplib

        ftp = self.storage.ftp
        # Binary first: servers refuse SIZE in ASCII mode, or count line ends differently (listings switch to ASCII).
        ftp.voidcmd("TYPE I")
        try:
            # FTPStorage.size lists the folder (breaking on spaces) and says 0 for a missing file.
            size = ftp.size(self._remote(name))
        except ftplib.error_perm as exc:
            raise self._missing(exc, name) from exc
        if size is None:
            raise self._missing(Exception("no size"), name)
        return size

    def _modified(self, name: str) -> datetime | None:
        import ftplib

        from impex.storage.ftp_client import parse_mlsd_time

        try:
            reply = self.storage.ftp.sendcmd(f"MDTM {self._remote(name)}")
        except ftplib.error_perm:
            return None
        return parse_mlsd_time(reply[4:].strip())

    def look_at(self, name: str) -> StoredFile | None:
        # SIZE, then MDTM (FTPStorage has no modification time): a file still being uploaded changes size between
        # two looks, which the scan's quiet rule needs.
        try:
            size = self.size(name)
        except FileNotFoundError:
            return None
        return StoredFile(name=name, size=size, modified=self._modified(name))

    def entries(self, folder: str) -> tuple[list[str], list[StoredFile]]:
        import ftplib

        from impex.storage.ftp_client import listing

        path = self._remote(folder)
        ftp = self.storage.ftp
        try:
            found = listing(ftp, path) if self.has_mlsd else None
            if found is None:
                self.has_mlsd = False  # asked once per location and process
                found = self._listing_by_name(path)
            found = sorted(found)
        except ftplib.error_perm:
            return [], []  # no such folder (yet): an SFTP folder is made by its first file, an FTP one too
        dirs, files = [], []
        for entry, kind, size, modified in found:
            if entry.startswith(".") or "/" in entry:
                continue
            if kind not in ("file", "dir"):
                if kind in ("cdir", "pdir"):
                    continue
                look = self.look_at(posixpath.join(folder, entry))  # a link: what it points to
                if look is None:
                    kind = "dir" if self._is_folder(posixpath.join(path, entry)) else ""
                else:
                    kind, size, modified = "file", look.size, look.modified
            if kind == "dir":
                dirs.append(entry)
            elif kind == "file":
                files.append(StoredFile(name=posixpath.join(folder, entry), size=size, modified=modified))
        return dirs, files

    def _listing_by_name(self, path: str) -> list[tuple[str, str, int, datetime | None]]:
        """List a folder by NLST, then SIZE and MDTM per name, for a server without MLSD (LIST's lines have no fixed
        form); a name that has no size is a folder if it can be entered."""
        found = []
        for entry in self.storage.ftp.nlst(path):
            base = posixpath.basename(entry.rstrip("/"))
            if base in ("", ".", ".."):
                continue
            found.append((base, "unknown", 0, None))
        return found

    def _is_folder(self, path: str) -> bool:
        import ftplib

        ftp = self.storage.ftp
        try:
            here = ftp.pwd()
            ftp.cwd(path)
        except ftplib.error_perm:
            return False
        ftp.cwd(here)
        return True

    def close(self) -> None:
        self.storage.close()


@register_backend
class FTPSBackend(FTPBackend):
    """ftps://: explicit FTPS (AUTH TLS, data protected with PROT P), the server's certificate verified."""

    scheme = "ftps"
