"""One door to every file the hub reads or writes: a local folder, S3 or SFTP, named by a location string.

Each URL scheme has one Backend class, registered by its scheme in BACKENDS (as NetBox registers its data backends),
built on its django-storages class's public API. The functions below are what the rest of the hub calls: they refuse
a name that would leave its storage, then ask the backend. boto3 and paramiko are imported only when an S3 or SFTP
location is first used (a quarter of a second of every command's start-up otherwise).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import logging
import os
import posixpath
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar, TextIO

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.core.signals import setting_changed
from django.dispatch import receiver

from impex import outbound
from impex.exceptions import ConfigurationError, LocationRefused
from impex.locations import LOCATION_FORMS, Location, confined, hub_folder, parse_location

if TYPE_CHECKING:
    import paramiko
    from storages.backends.s3 import S3Storage

    from impex.storage_sftp import CheckedSFTPStorage

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
SFTP_TIMEOUT_SECONDS = 30
# SFTPStorage.params keys of the credentials, and the settings they come from.
SFTP_CREDENTIALS = (("password", "SFTP_PASSWORD"), ("key_filename", "SFTP_KEY_FILE"))
# S3's rules for bucket names (lower case, digits, dots and hyphens, 3 to 63 characters).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class StoredFile:
    """A file found by list_files: its name inside the storage, size in bytes and last modification."""

    name: str
    size: int
    modified: datetime


# -- the interface and its registry -----------------------------------------------------------------

BACKENDS: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a Backend class under its URL scheme."""
    BACKENDS[cls.scheme] = cls
    return cls


class Backend:
    """The file operations the hub needs, on one django storage (self.storage); one subclass per URL scheme.

    Names reach these methods checked by the module's functions (a relative path that stays inside the storage).
    A file appears under its name only once complete, and never replaces another: a taken name gets a free variant.
    """

    scheme: ClassVar[str]
    # Built once per location and process, keeping its client and connection; False: built (and checked) per use.
    kept: ClassVar[bool] = True

    def __init__(self, storage: Storage):
        self.storage = storage

    @classmethod
    def at(cls, location: Location) -> Backend:
        """Return the backend of a parsed location of this scheme; ConfigurationError if it cannot work."""
        raise NotImplementedError

    def where(self, name: str) -> str:
        """Say where a stored file is, for people."""
        raise NotImplementedError

    def local_file(self, name: str) -> str | None:
        """Return the path of a stored file on local disk; None where files are not on local disk."""
        return None

    def link(self, name: str, src: str) -> str | None:
        """Give the local file src a name (or a free variant of it) here without a copy; None where that can't be."""
        return None

    def confine(self, name: str, *, what: str) -> None:
        """Refuse (LocationRefused) a stored folder or file the hub may not use; only local disk has such places."""

    def open(self, name: str) -> IO[bytes]:
        """Open a stored file for reading as a binary stream; FileNotFoundError if missing."""
        raise NotImplementedError

    def save(self, name: str, source: str | Path | IO[bytes]) -> str:
        """Store a local file or a binary stream under name (a free variant if taken), a chunk at a time; return it."""
        raise NotImplementedError

    def adopt(self, name: str, source: str | Path) -> str:
        """Store a local file the caller gives away under name (a free variant if taken); return it."""
        return self.save(name, source)

    def replace_text(self, name: str, write: Callable[[TextIO], object], *, encoding: str, scratch: Path) -> None:
        """Write a text file under name with write(stream), replacing a file of that name; it appears whole.

        Written in the local folder scratch first, then the old file is deleted and the new one saved.
        """
        local = scratch / posixpath.basename(name)
        with open(local, "w", encoding=encoding, newline="") as stream:
            write(stream)
        self.delete(name)
        self.save(name, local)
        local.unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        """Delete a stored file; a missing file is not an error."""
        self.storage.delete(name)

    def exists(self, name: str) -> bool:
        """Tell whether a file (not a folder) of that name is stored."""
        return self.storage.exists(name)

    def size(self, name: str) -> int:
        """Return a stored file's size in bytes; FileNotFoundError if missing."""
        return self.storage.size(name)

    def look_at(self, name: str) -> StoredFile | None:
        """Look at one stored file again: its size and modification time now, or None if it is gone."""
        try:
            return StoredFile(name=name, size=self.storage.size(name), modified=self.storage.get_modified_time(name))
        except FileNotFoundError:
            return None

    def entries(self, folder: str) -> tuple[list[str], list[StoredFile]]:
        """Return the sub-folder names and the files right in a folder, without hidden ones; nothing if missing."""
        raise NotImplementedError

    def list_folder(self, prefix: str) -> Iterator[StoredFile]:
        """Yield the files right in a folder (not in its sub-folders), skipping hidden names."""
        yield from self.entries(prefix)[1]

    def list_files(self, prefix: str) -> Iterator[StoredFile]:
        """Yield every file under a folder, recursively, skipping hidden names."""
        dirs, files = self.entries(prefix)
        yield from files
        for dir_name in dirs:
            yield from self.list_files(posixpath.join(prefix, dir_name))

    def check_folder(self, prefix: str, *, create: bool) -> None:
        """Create a folder (create) or refuse one that is not there (FileNotFoundError); only local disk has folders
        to check (object stores have none; an SFTP folder is made by its first file)."""

    def remove_empty_folders(self, prefix: str) -> None:
        """Remove the empty folders of a tree where folders are real (local disk)."""

    def close(self) -> None:
        """Let go of a connection kept open."""


def _is_safe(name: str) -> bool:
    """Tell whether a name is a plain relative path that stays inside its storage."""
    return bool(name) and "\x00" not in name and all(part not in ("", ".", "..") for part in name.split("/"))


def _check_name(name: str, *, what: str = "file name") -> str:
    """Refuse a name that is not a plain relative path inside its storage (path traversal)."""
    if not isinstance(name, str) or not _is_safe(name):
        raise SuspiciousFileOperation(
            f"unsafe {what} {name!r}: it must be a relative path inside its storage, without '..', '.' or empty parts"
        )
    return name


def _hidden_name(name: str) -> str:
    """Return a hidden name beside name for its partial file, under the file-name limit (255 bytes) whatever it is."""
    folder, base = posixpath.split(name)
    return posixpath.join(folder, f".{base[:100]}.{uuid.uuid4().hex[:12]}.part")


def _spool(stream: IO[bytes], path: str | Path) -> None:
    """Copy a stream into a local file, a chunk at a time."""
    with open(path, "wb") as out:
        shutil.copyfileobj(stream, out, CHUNK_BYTES)


@contextmanager
def _opened(source: str | Path | IO[bytes]) -> Iterator[IO[bytes]]:
    """Yield a binary stream of a local file or of a stream given as it is."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            yield fh
    else:
        yield source


# -- local disk ------------------------------------------------------------------------------------


def _link_local(storage: FileSystemStorage, name: str, src: str) -> str:
    """Give the local file src a second name (or a free variant of it) in storage; return the name."""
    while True:
        name = storage.get_available_name(name)
        target = storage.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.link(src, target, follow_symlinks=False)
        except FileExistsError:
            continue
        return name


@register_backend
class LocalBackend(Backend):
    """A folder on local disk (an absolute path or file:///path), on Django's FileSystemStorage."""

    scheme = "file"
    kept = False  # confined on every use: a link changed since is seen
    storage: FileSystemStorage

    @classmethod
    def at(cls, location: Location) -> LocalBackend:
        return cls(FileSystemStorage(location=confined(location.path)))

    def where(self, name: str) -> str:
        return self.storage.path(name)

    def local_file(self, name: str) -> str:
        return self.storage.path(name)

    def link(self, name: str, src: str) -> str | None:
        try:
            return _link_local(self.storage, name, src)
        except OSError:  # another device, or no hard links here
            return None

    def confine(self, name: str, *, what: str) -> None:
        confined(self.storage.path(_check_name(name, what=f"{what} name")), what=what)

    def open(self, name: str) -> IO[bytes]:
        return open(self.storage.path(name), "rb")

    def _part_file(self, name: str) -> tuple[Path, str]:
        """Return a file's path and a fresh hidden .part file beside it (its folder made), for writing it whole."""
        target = Path(self.storage.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".part")
        os.close(fd)
        return target, tmp

    def save(self, name: str, source: str | Path | IO[bytes]) -> str:
        # Readers never see a partial file: write under a hidden name beside it, then give it its name.
        _, tmp = self._part_file(name)
        try:
            if isinstance(source, str | os.PathLike):
                shutil.copyfile(source, tmp)
            else:
                _spool(source, tmp)
            if self.storage.file_permissions_mode is not None:
                os.chmod(tmp, self.storage.file_permissions_mode)
            try:
                # A hard link appears whole and fails if the name was taken since get_available_name.
                name = _link_local(self.storage, name, tmp)
            except OSError:
                # No hard links here (another device, some network file systems): rename, which may race.
                name = self.storage.get_available_name(name)
                os.rename(tmp, self.storage.path(name))
            return name
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def adopt(self, name: str, source: str | Path) -> str:
        # A hard link gives it the name without copying it (a zip's entries, extracted beside the hub's storage),
        # with the mode save leaves: the storage's, else private (mkstemp's 0600).
        mode = self.storage.file_permissions_mode
        os.chmod(source, mode if mode is not None else 0o600)
        return self.link(name, str(source)) or self.save(name, source)

    def replace_text(self, name: str, write: Callable[[TextIO], object], *, encoding: str, scratch: Path) -> None:
        # Written under a hidden .part name beside it and renamed over the name: no copy, never a missing name.
        target, tmp = self._part_file(name)
        try:
            with open(tmp, "w", encoding=encoding, newline="") as stream:
                write(stream)
            if self.storage.file_permissions_mode is not None:
                os.chmod(tmp, self.storage.file_permissions_mode)
            os.replace(tmp, target)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self.storage.path(name))

    def entries(self, folder: str) -> tuple[list[str], list[StoredFile]]:
        try:
            dirs, files = self.storage.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        found = []
        for file_name in sorted(files):
            if file_name.startswith("."):
                continue
            name = posixpath.join(folder, file_name)
            try:
                mode = os.lstat(self.storage.path(name)).st_mode
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(mode):
                # A link could hand the hub any file it can read (outside the folder), a pipe would block a reader
                # for ever: only regular files are files here.
                logger.warning("skipped %s: not a regular file", self.storage.path(name))
                continue
            found.append(self.look_at(name))
        return sorted(d for d in dirs if not d.startswith(".")), [f for f in found if f is not None]

    def check_folder(self, prefix: str, *, create: bool) -> None:
        path = self.storage.path(prefix) if prefix else self.storage.location
        if create:
            os.makedirs(path, exist_ok=True)
        elif not os.path.isdir(path):
            raise FileNotFoundError(f"there is no folder {path}")

    def remove_empty_folders(self, prefix: str) -> None:
        folder = Path(self.storage.path(prefix))
        if not folder.is_dir():
            return
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(sub.iterdir()):
                sub.rmdir()
        if not any(folder.iterdir()):
            folder.rmdir()


# -- S3 --------------------------------------------------------------------------------------------


def _s3_missing(exc: Exception) -> bool:
    """Tell whether an S3 error says the object is not there."""
    return exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound")


@register_backend
class S3Backend(Backend):
    """A key prefix in an S3 bucket (s3://bucket/prefix), on django-storages' S3Storage.

    S3Storage.bucket (a documented boto3 Bucket) is used where S3Storage has no call for it: streamed reads, uploads
    from a local file, listings that carry sizes and times.
    """

    scheme = "s3"
    storage: S3Storage

    @classmethod
    def at(cls, location: Location) -> S3Backend:
        from boto3.s3.transfer import TransferConfig
        from storages.backends.s3 import S3Storage

        shown = location.shown
        if not BUCKET_NAME.fullmatch(location.netloc):
            raise ConfigurationError(
                f"storage location {shown!r} does not name a valid S3 bucket (s3://bucket/prefix; "
                "3 to 63 lower-case letters, digits, dots or hyphens; credentials come from the settings, not the URL)"
            )
        prefix = location.path.strip("/")
        if prefix and not _is_safe(prefix):
            raise ConfigurationError(f"storage location {shown!r} has a prefix with '..', '.' or empty parts")
        endpoint = settings.AWS_S3_ENDPOINT_URL
        return cls(
            S3Storage(
                bucket_name=location.netloc,
                location=prefix,
                # Never replace a file silently: a taken name gets a suffix, as on local disk.
                file_overwrite=False,
                endpoint_url=endpoint,
                region_name=settings.AWS_S3_REGION_NAME,
                # S3-compatible servers (MinIO, moto, ...) rarely resolve bucket.host names.
                addressing_style="path" if endpoint else None,
                # One part at a time: ~2 MB of memory whatever the size (boto3's 10 threads: 13 MB for a 60 MB file),
                # and no threads in worker processes. Reading the file (the import) is slower than sending it anyway.
                transfer_config=TransferConfig(use_threads=False),
            )
        )

    def _key(self, name: str) -> str:
        return posixpath.join(self.storage.location, name)

    def where(self, name: str) -> str:
        return f"s3://{self.storage.bucket_name}/{self._key(name)}"

    def open(self, name: str) -> IO[bytes]:
        from botocore.exceptions import ClientError

        try:
            # S3Storage.open downloads the whole object first (into memory by default); its body streams.
            return self.storage.bucket.Object(self._key(name)).get()["Body"]
        except ClientError as exc:
            if _s3_missing(exc):
                raise FileNotFoundError(f"no file {name!r} in {self.where('')}") from exc
            raise

    def save(self, name: str, source: str | Path | IO[bytes]) -> str:
        # An object appears only once complete. boto3 holds the parts of a stream in memory (about twice the file,
        # measured; S3Storage.save sends a stream) but reads a local file lazily: a stream goes through one first.
        if not isinstance(source, str | os.PathLike):
            with temporary_folder() as folder:
                _spool(source, folder / "upload")
                return self.save(name, folder / "upload")
        name = self.storage.get_available_name(name)
        key = self._key(name)
        obj = self.storage.bucket.Object(key)
        obj.upload_file(
            os.fspath(source), ExtraArgs=self.storage.get_object_parameters(key), Config=self.storage.transfer_config
        )
        return name

    def look_at(self, name: str) -> StoredFile | None:
        from botocore.exceptions import ClientError

        obj = self.storage.bucket.Object(self._key(name))
        try:
            obj.load()  # size and time in one request (S3Storage.size and get_modified_time: one each)
        except ClientError as exc:
            if _s3_missing(exc):
                return None
            raise
        return StoredFile(name=name, size=obj.content_length, modified=obj.last_modified)

    def _objects(self, prefix: str, **options) -> Iterator[tuple[str, object]]:
        """Yield the objects under a folder with their names relative to it, in one paginated listing."""
        base = posixpath.join(self.storage.location, prefix, "") if (self.storage.location or prefix) else ""
        for obj in self.storage.bucket.objects.filter(Prefix=base, **options):
            yield obj.key[len(base) :], obj

    def _file(self, name: str, obj) -> StoredFile:
        return StoredFile(name=name, size=obj.size, modified=obj.last_modified)

    def list_folder(self, prefix: str) -> Iterator[StoredFile]:
        for name, obj in self._objects(prefix, Delimiter="/"):
            if name and not name.startswith(".") and "/" not in name and _is_safe(name):
                yield self._file(posixpath.join(prefix, name), obj)

    def list_files(self, prefix: str) -> Iterator[StoredFile]:
        for name, obj in self._objects(prefix):
            if obj.key.endswith("/") or any(part.startswith(".") for part in name.split("/")):
                continue  # folder markers made by consoles, hidden names
            if not _is_safe(name):
                logger.warning("skipped S3 object %r in %s: its name leaves its folder", obj.key, self.where(""))
                continue
            yield self._file(posixpath.join(prefix, name) if prefix else name, obj)


# -- SFTP ------------------------------------------------------------------------------------------


def _sftp_login(host: str, port: int) -> tuple[dict, str] | None:
    """Return the key file and password for an SFTP host and where they came from; None for a host not listed.

    Only the hosts an operator listed in SFTP_HOSTS (and IMPEX_STORAGE's host) get a login: an entry's own, or the
    defaults SFTP_KEY_FILE / SFTP_PASSWORD for an entry without one. A host a connection editor names is not sent them.
    """
    for key in (f"{host}:{port}", host):
        for listed, entry in settings.SFTP_HOSTS.items():
            if listed.lower() != key.lower():
                continue
            if entry.get("key_file") or entry.get("password"):
                return {"key_file": entry.get("key_file"), "password": entry.get("password")}, f"SFTP_HOSTS[{listed!r}]"
            return {"key_file": settings.SFTP_KEY_FILE, "password": settings.SFTP_PASSWORD}, ""
    if _is_hub_host(host, port):
        return {"key_file": settings.SFTP_KEY_FILE, "password": settings.SFTP_PASSWORD}, ""
    return None


def _is_hub_host(host: str, port: int) -> bool:
    """Tell whether host:port is the SFTP server of IMPEX_STORAGE, which the operator chose (not an editor)."""
    try:
        hub = parse_location(settings.IMPEX_STORAGE)
    except ConfigurationError:
        return False
    return hub.scheme == SFTPBackend.scheme and (hub.host, hub.port or 22) == (host.lower(), port)


def _unlisted(host: str, port: int) -> str:
    return (
        f"the SFTP host {host}:{port} is not listed in SFTP_HOSTS, and the hub logs in only to the hosts listed there "
        "(an entry of {} takes SFTP_PASSWORD / SFTP_KEY_FILE): ask the operator to list it"
    )


def sftp_host_refusal(host: str, port: int, *, resolve: bool = True) -> str:
    """Say why the hub may not use an SFTP host (empty: it may): not listed in SFTP_HOSTS, or an address refused.

    resolve: also resolve the name and check its addresses (impex.outbound), as a connection does.
    """
    if _sftp_login(host, port) is None:
        return _unlisted(host, port)
    if resolve and not _is_hub_host(host, port):
        return outbound.host_refusal(host, port)
    return ""


@register_backend
class SFTPBackend(Backend):
    """A folder on an SFTP server (sftp://[user@]host[:port]/path), on django-storages' SFTPStorage (checked: see
    impex.storage_sftp). Its public sftp client (paramiko's SFTPClient) is used where SFTPStorage has no call for it."""

    scheme = "sftp"
    storage: CheckedSFTPStorage

    @classmethod
    def at(cls, location: Location) -> SFTPBackend:
        from impex.storage_sftp import CheckedSFTPStorage

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
        from impex.storage_sftp import SFTPReader

        # SFTPStorage.open reads the whole file into memory, and fails only at the first read.
        return SFTPReader(self.storage.sftp.open(self._remote(name), "rb"))

    def save(self, name: str, source: str | Path | IO[bytes]) -> str:
        # SFTPStorage.save writes straight under the final name: a scan could take a partial file, and a file given
        # that name meanwhile would be overwritten. So it saves under a hidden name beside it, renamed when complete.
        hidden = _hidden_name(name)
        try:
            with _opened(source) as stream:
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


# -- building a location's backend -----------------------------------------------------------------


def storage_for(location: str) -> Backend:
    """Return the storage of a location: an absolute folder, file:///path, s3://bucket/prefix or sftp://host/path.

    A local folder is confined (impex.locations) on every call, so a link changed since is seen: LocationRefused.
    """
    parsed = parse_location(location)
    backend = BACKENDS.get(parsed.scheme)
    if backend is None:
        raise ConfigurationError(f"unknown storage location {parsed.shown!r}: use {LOCATION_FORMS}")
    return _kept_storage(location) if backend.kept else backend.at(parsed)


@functools.cache
def _kept_storage(location: str) -> Backend:
    """Return the storage of a location kept for the process (an SFTP one keeps its connection)."""
    parsed = parse_location(location)
    return BACKENDS[parsed.scheme].at(parsed)


@receiver(setting_changed)
def _forget_storages(*, setting: str, **kwargs) -> None:
    """Drop the cached storages when a setting they were built from changes (Django signals it in tests only)."""
    if setting.startswith(("AWS_", "SFTP_")) or setting == "IMPEX_STORAGE":
        _kept_storage.cache_clear()


def hub_storage() -> Backend:
    """Return where the hub keeps its own files (job copies, archives, error folders, outbox).

    The operator's choice (IMPEX_STORAGE, else IMPEX_ROOT), so not confined like the locations an editor names.
    """
    folder = hub_folder()
    if folder is not None:
        return LocalBackend(FileSystemStorage(location=folder))
    return storage_for(settings.IMPEX_STORAGE)


@dataclass(frozen=True)
class Folder:
    """A folder of some storage: where a connection's inbox, archive, error folder or outbox is."""

    storage: Backend
    prefix: str  # inside the storage; "" for its root
    location: str  # as configured, for people and for paths kept outside the hub's storage
    in_hub: bool  # inside the hub's own storage: paths of its files are kept relative to it

    def name(self, file_name: str) -> str:
        """Return a file's name inside the storage."""
        return posixpath.join(self.prefix, file_name) if self.prefix else file_name

    def path(self, name: str) -> str:
        """Return how a file of this folder (its name in the storage) is recorded: see resolve_path."""
        return name if self.in_hub else f"{self.location.rstrip('/')}/{name[len(self.prefix) :].lstrip('/')}"


def folder_at(location: str, *, default: str) -> Folder:
    """Return the folder a location names; empty: default, a folder inside the hub's storage (relative path).

    A local folder is confined (impex.locations): LocationRefused if it, or a link on its way, leads where it may not.
    """
    value = location.strip()
    if not value or not (value.startswith("/") or "://" in value):
        prefix = (value or default).strip("/")
        _check_name(prefix, what="folder name")
        hub = hub_storage()
        hub.confine(prefix, what="folder")  # a link inside the hub's folder may not lead out of it
        return Folder(hub, prefix, prefix, in_hub=True)
    return Folder(storage_for(value.rstrip("/") or "/"), "", value, in_hub=False)


def resolve_path(path: str) -> tuple[Backend, str]:
    """Return the storage and name of a recorded file path: relative to the hub's storage, or a full location.

    A local file is confined like its folder, the file itself included (a link to elsewhere): LocationRefused.
    """
    if path.startswith("/") or "://" in path:
        folder, _, name = path.rpartition("/")
        storage = storage_for(folder or "/")
    else:
        storage, name = hub_storage(), path
    storage.confine(name, what="file")
    return storage, name


# -- what the hub calls: names checked, then the backend's operation -------------------------------


@contextmanager
def temporary_folder() -> Iterator[Path]:
    """Yield a fresh folder under IMPEX_CACHE_DIR, removed with everything in it afterwards."""
    os.makedirs(settings.IMPEX_CACHE_DIR, exist_ok=True)
    folder = tempfile.mkdtemp(dir=settings.IMPEX_CACHE_DIR)
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def location_of(storage: Backend, name: str) -> str:
    """Say where a stored file is, for people: a local path, s3://bucket/key or sftp://host/path."""
    return storage.where(_check_name(name))


def save_file(storage: Backend, name: str, source: str | Path | IO[bytes]) -> str:
    """Store a local file or a binary stream under name (a free variant if taken) so that it appears whole, in one
    step, a chunk at a time; return the name it got."""
    return storage.save(_check_name(name), source)


# The name exporters use for a file that must appear whole: every backend's save does that.
place_file = save_file


def adopt_file(storage: Backend, name: str, source: str | Path) -> str:
    """Store a local file the caller gives away (a temporary copy) under name (a free variant if taken); return it.

    On local disk a hard link gives it the name without copying it; elsewhere, or across devices, it is copied.
    """
    return storage.adopt(_check_name(name), source)


def replace_text(
    storage: Backend, name: str, write: Callable[[TextIO], object], *, encoding: str, scratch: Path
) -> None:
    """Write a text file under name with write(stream), replacing a file of that name; it appears whole, in one step.

    scratch: a local folder for the text where it cannot be written beside its name (S3, SFTP).
    """
    storage.replace_text(_check_name(name), write, encoding=encoding, scratch=scratch)


def open_file(storage: Backend, name: str) -> IO[bytes]:
    """Open a stored file for reading as a binary stream (use it in a with block); FileNotFoundError if missing."""
    return storage.open(_check_name(name))


def delete_file(storage: Backend, name: str) -> None:
    """Delete a stored file; a missing file is not an error."""
    storage.delete(_check_name(name))


def file_exists(storage: Backend, name: str) -> bool:
    """Tell whether a file (not a folder) of that name is stored."""
    return storage.exists(_check_name(name))


def file_size(storage: Backend, name: str) -> int:
    """Return a stored file's size in bytes; FileNotFoundError if missing."""
    return storage.size(_check_name(name))


def look_at(storage: Backend, name: str) -> StoredFile | None:
    """Look at one stored file again: its size and modification time now, or None if it is gone."""
    return storage.look_at(_check_name(name))


def list_files(storage: Backend, prefix: str = "") -> Iterator[StoredFile]:
    """Yield every file under a folder (prefix; empty: all), recursively, skipping hidden names (starting with '.').

    Hidden names include the partial files of writers that give a file its name once complete (ours, rsync).
    """
    if prefix:
        _check_name(prefix, what="folder name")
    return storage.list_files(prefix)


def list_folder(storage: Backend, prefix: str = "") -> Iterator[StoredFile]:
    """Yield the files right in a folder (not in its sub-folders), skipping hidden names (starting with '.')."""
    if prefix:
        _check_name(prefix, what="folder name")
    return storage.list_folder(prefix)


@contextmanager
def local_copy(storage: Backend, name: str) -> Iterator[Path]:
    """Yield a local path to a stored file: the file itself on local disk, else a download removed afterwards.

    Hold it for as long as the file is read (e.g. across all the chunks a worker imports): each entry downloads.
    """
    path = storage.local_file(_check_name(name))
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no file {path}")
        yield Path(path)
        return
    with temporary_folder() as folder:
        path = folder / posixpath.basename(name)
        with storage.open(name) as stream:
            _spool(stream, path)
        yield path


def copy_file(storage: Backend, name: str, *, to: Backend, to_name: str) -> str:
    """Give a stored file a second copy at to_name in storage to (a free variant if taken); return the name it got.

    A hard link on the same local disk (no bytes copied); otherwise a copy that appears whole. The source stays:
    the caller deletes it once the copy is recorded (move_file in two steps, never a moment with no file recorded).
    """
    src = storage.local_file(_check_name(name))
    _check_name(to_name)
    if src is None:
        with storage.open(name) as stream:
            return to.save(to_name, stream)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"no file {src}")
    return to.link(to_name, src) or to.save(to_name, Path(src))


def move_file(storage: Backend, name: str, *, to: Backend, to_name: str) -> str:
    """Move a file to to_name in storage to (a free variant if taken) and return the name it got there.

    copy_file (a hard link on the same local disk), then the source is deleted only once the copy is complete.
    """
    stored = copy_file(storage, name, to=to, to_name=to_name)
    delete_file(storage, name)
    return stored


class HashingReader(io.RawIOBase):
    """A binary stream that computes the SHA-256 and size of what is read through it."""

    def __init__(self, stream: IO[bytes]):
        super().__init__()
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def copy_in(storage: Backend, name: str, *, to: Backend, to_name: str) -> tuple[str, str, int]:
    """Copy a stored file to to_name in storage to (a free variant if taken); return that name, SHA-256 and size.

    The source stays where it is. On one local disk the copy is a hard link: no bytes are written twice.
    """
    src = storage.local_file(_check_name(name))
    _check_name(to_name)
    if src is not None:
        return _copy_local(src, to=to, to_name=to_name)
    with storage.open(name) as raw:
        reader = HashingReader(raw)
        stored = to.save(to_name, reader)
    return stored, reader.digest.hexdigest(), reader.size


def _open_regular(path: str) -> IO[bytes]:
    """Open a local file for reading only if it is a regular file: never through a link, never a pipe or device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileNotFoundError(f"{path} is a symbolic link, not a file") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def _copy_local(src: str, *, to: Backend, to_name: str) -> tuple[str, str, int]:
    """Copy a local regular file into storage to, checked against the file opened (a name swapped meanwhile)."""
    with _open_regular(src) as fh:
        opened = os.fstat(fh.fileno())
        digest, size = hashlib.sha256(), 0
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
        stored = to.link(to_name, src)
        if stored is not None:
            linked = os.lstat(to.local_file(stored))
            if (linked.st_dev, linked.st_ino) == (opened.st_dev, opened.st_ino):
                return stored, digest.hexdigest(), size
            os.unlink(to.local_file(stored))  # the name was swapped after it was opened: copy what was opened
        fh.seek(0)
        reader = HashingReader(fh)
        stored = to.save(to_name, reader)
    return stored, reader.digest.hexdigest(), reader.size
