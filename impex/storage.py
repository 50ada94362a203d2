"""One door to every file the hub reads or writes: a local folder, S3 or SFTP, named by a location string.

boto3 and paramiko are imported only when an S3 or SFTP location is first used (a quarter of a second of every
command's start-up otherwise): a storage of a backend whose module is not imported yet cannot exist.
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
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO
from urllib.parse import SplitResult, unquote, urlsplit

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.core.signals import setting_changed
from django.dispatch import receiver

from impex import outbound
from impex.exceptions import ConfigurationError, LocationRefused
from impex.locations import confined, hub_folder, local_path

if TYPE_CHECKING:
    import paramiko
    from storages.backends.s3 import S3Storage
    from storages.backends.sftpstorage import SFTPStorage

    from impex.storage_sftp import CheckedSFTPStorage

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
SFTP_TIMEOUT_SECONDS = 30
# Read-ahead of an SFTP download: a window of requests of paramiko's largest read size, so many in flight at once.
SFTP_WINDOW_REQUESTS = 128
SFTP_IN_FLIGHT = 64
SFTP_REQUEST_BYTES = 32768
# SFTPStorage.params keys of the credentials, and the settings they come from.
SFTP_CREDENTIALS = (("password", "SFTP_PASSWORD"), ("key_filename", "SFTP_KEY_FILE"))
LOCATION_FORMS = "an absolute folder path, file:///path, s3://bucket/prefix or sftp://[user@]host[:port]/path"
# The password of a user:password@ part, kept out of error messages.
URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*):[^/@]*@", re.IGNORECASE)
# S3's rules for bucket names (lower case, digits, dots and hyphens, 3 to 63 characters).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class StoredFile:
    """A file found by list_files: its name inside the storage, size in bytes and last modification."""

    name: str
    size: int
    modified: datetime


def _is_s3(storage: Storage) -> bool:
    module = sys.modules.get("storages.backends.s3")
    return module is not None and isinstance(storage, module.S3Storage)


def _is_sftp(storage: Storage) -> bool:
    module = sys.modules.get("storages.backends.sftpstorage")
    return module is not None and isinstance(storage, module.SFTPStorage)


def _s3_errors() -> tuple[type[BaseException], ...]:
    """The errors of S3 calls (none before boto3 is imported: nothing could raise them)."""
    module = sys.modules.get("botocore.exceptions")
    return (module.ClientError,) if module is not None else ()


def storage_for(location: str) -> Storage:
    """Return the storage of a location: an absolute folder, file:///path, s3://bucket/prefix or sftp://host/path.

    A local folder is confined (impex.locations) on every call, so a link changed since is seen: LocationRefused.
    """
    if not location:
        raise ConfigurationError(f"empty storage location: use {LOCATION_FORMS}")
    if location.startswith("/"):
        return FileSystemStorage(location=confined(location))
    shown, url, _ = _parse(location)
    if url.scheme.lower() == "file":
        path = local_path(location)
        if path is None:
            raise ConfigurationError(f"storage location {shown!r} must be file:///absolute/path")
        return FileSystemStorage(location=confined(path))
    return _remote_storage(location)


def _parse(location: str) -> tuple[str, SplitResult, int | None]:
    """Split a location URL; return it as shown to people (no password), its parts and its port."""
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
    return shown, url, port


@functools.cache
def _remote_storage(location: str) -> Storage:
    """Return the storage of an s3:// or sftp:// location, kept for the process (an SFTP one keeps its connection)."""
    shown, url, port = _parse(location)
    scheme = url.scheme.lower()
    if scheme == "s3":
        return _s3_storage(shown, url)
    if scheme == "sftp":
        return _sftp_storage(shown, url, port)
    raise ConfigurationError(f"unknown storage location {shown!r}: use {LOCATION_FORMS}")


def _s3_storage(shown: str, url: SplitResult) -> S3Storage:
    from boto3.s3.transfer import TransferConfig
    from storages.backends.s3 import S3Storage

    if not BUCKET_NAME.fullmatch(url.netloc):
        raise ConfigurationError(
            f"storage location {shown!r} does not name a valid S3 bucket (s3://bucket/prefix; "
            "3 to 63 lower-case letters, digits, dots or hyphens; credentials come from the settings, not the URL)"
        )
    prefix = unquote(url.path).strip("/")
    if prefix and not _is_safe(prefix):
        raise ConfigurationError(f"storage location {shown!r} has a prefix with '..', '.' or empty parts")
    endpoint = settings.AWS_S3_ENDPOINT_URL
    return S3Storage(
        bucket_name=url.netloc,
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


def _sftp_storage(shown: str, url: SplitResult, port: int | None) -> CheckedSFTPStorage:
    from impex.storage_sftp import CheckedSFTPStorage

    if not url.hostname:
        raise ConfigurationError(f"storage location {shown!r} has no host: use sftp://[user@]host[:port]/path")
    if url.password is not None:
        raise ConfigurationError(
            f"storage location {shown!r} holds a password: "
            "set SFTP_PASSWORD or SFTP_KEY_FILE instead (locations are shown in the admin)"
        )
    params = {"port": port or 22, "timeout": SFTP_TIMEOUT_SECONDS}
    if url.username:
        params["username"] = unquote(url.username)
    login = _sftp_login(url.hostname, port or 22)
    if login is None:
        raise LocationRefused(f"storage location {shown!r}: {_unlisted(url.hostname, port or 22)}")
    credentials, login_from = login
    if credentials.get("key_file"):
        params["key_filename"] = credentials["key_file"]
    if credentials.get("password"):
        params["password"] = credentials["password"]
    return CheckedSFTPStorage(
        host=url.hostname,
        root_path=unquote(url.path),
        params=params,
        known_host_file=settings.SFTP_KNOWN_HOST_FILE,
        allow_unknown_hosts=settings.SFTP_ALLOW_UNKNOWN_HOSTS,
        login_from=login_from,
        check_address=not _is_hub_host(url.hostname, port or 22),
    )


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
    if not settings.IMPEX_STORAGE.lower().startswith("sftp://"):
        return False
    try:
        hub = urlsplit(settings.IMPEX_STORAGE)
        return (hub.hostname, hub.port or 22) == (host.lower(), port)
    except ValueError:
        return False


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


@receiver(setting_changed)
def _forget_storages(*, setting: str, **kwargs) -> None:
    """Drop the cached storages when a setting they were built from changes (Django signals it in tests only)."""
    if setting.startswith(("AWS_", "SFTP_")) or setting == "IMPEX_STORAGE":
        _remote_storage.cache_clear()


def hub_storage() -> Storage:
    """Return where the hub keeps its own files (job copies, archives, error folders, outbox).

    The operator's choice (IMPEX_STORAGE, else IMPEX_ROOT), so not confined like the locations an editor names.
    """
    folder = hub_folder()
    if folder is not None:
        return FileSystemStorage(location=folder)
    return storage_for(settings.IMPEX_STORAGE)


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


def _is_local(storage: Storage) -> bool:
    return isinstance(storage, FileSystemStorage)


def _s3_key(storage: S3Storage, name: str) -> str:
    return posixpath.join(storage.location, name)


def _spool(stream: IO[bytes], path: str | Path) -> None:
    """Copy a stream into a local file, a chunk at a time."""
    with open(path, "wb") as out:
        shutil.copyfileobj(stream, out, CHUNK_BYTES)


@contextmanager
def temporary_folder() -> Iterator[Path]:
    """Yield a fresh folder under IMPEX_CACHE_DIR, removed with everything in it afterwards."""
    os.makedirs(settings.IMPEX_CACHE_DIR, exist_ok=True)
    folder = tempfile.mkdtemp(dir=settings.IMPEX_CACHE_DIR)
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def location_of(storage: Storage, name: str) -> str:
    """Say where a stored file is, for people: a local path, s3://bucket/key or sftp://host/path."""
    _check_name(name)
    if _is_local(storage):
        return storage.path(name)
    if _is_s3(storage):
        return f"s3://{storage.bucket_name}/{_s3_key(storage, name)}"
    if _is_sftp(storage):
        return f"sftp://{storage.host}{posixpath.join(storage.root_path or '/', name)}"
    return name


def _claim_local(storage: FileSystemStorage, name: str, src: str) -> str:
    """Give the local file src the name (or a free variant of it) in storage, never replacing a file; return it."""
    try:
        # A hard link appears whole and fails if the name was taken since get_available_name.
        name = _link_local(storage, name, src)
    except OSError:
        # No hard links here (another device, some network file systems): rename, which may race.
        name = storage.get_available_name(name)
        os.rename(src, storage.path(name))
        return name
    os.unlink(src)
    return name


def save_file(storage: Storage, name: str, source: str | Path | IO[bytes]) -> str:
    """Store a local file or a binary stream under name (a free variant if taken), a chunk at a time; return it."""
    _check_name(name)
    is_path = isinstance(source, str | os.PathLike)
    if _is_local(storage):
        target = Path(storage.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        # Readers never see a partial file: write under a hidden name beside it, then give it its name.
        # The hidden name stays under the file-name limit (255 bytes) whatever the name's length.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".part")
        os.close(fd)
        try:
            if is_path:
                shutil.copyfile(source, tmp)
            else:
                _spool(source, tmp)
            if storage.file_permissions_mode is not None:
                os.chmod(tmp, storage.file_permissions_mode)
            return _claim_local(storage, name, tmp)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if _is_s3(storage):
        return _save_s3(storage, name, source, is_path=is_path)
    if _is_sftp(storage):
        return _save_sftp(storage, name, source, is_path=is_path)
    if is_path:
        with open(source, "rb") as fh:
            return storage.save(name, File(fh))
    return storage.save(name, File(source))


def _save_s3(storage: S3Storage, name: str, source, *, is_path: bool) -> str:
    # boto3 holds the parts of a stream in memory (about twice the file measured) but reads a file lazily,
    # so a stream goes through a local file first. An S3 object appears only once complete.
    name = storage.get_available_name(name)
    key = _s3_key(storage, name)
    obj = storage.bucket.Object(key)
    params = storage.get_object_parameters(key)
    if is_path:
        obj.upload_file(os.fspath(source), ExtraArgs=params, Config=storage.transfer_config)
        return name
    with temporary_folder() as folder:
        spooled = folder / "upload"
        _spool(source, spooled)
        obj.upload_file(str(spooled), ExtraArgs=params, Config=storage.transfer_config)
    return name


def _save_sftp(storage: SFTPStorage, name: str, source, *, is_path: bool) -> str:
    # SFTPStorage.save writes straight under the final name: a scan could take a partial file, and a file
    # given that name meanwhile would be overwritten. Write under a hidden name beside it, then rename:
    # a plain SFTP rename (not posix-rename) never replaces an existing file.
    sftp = storage.sftp
    folder = posixpath.dirname(storage._remote_path(name))
    if folder and not storage._path_exists(folder):
        try:
            storage._mkdir(folder)
        except OSError:
            if not storage._path_exists(folder):  # else another writer made it first
                raise
    tmp = posixpath.join(folder, f".{posixpath.basename(name)[:100]}.{uuid.uuid4().hex[:12]}.part")
    try:
        if is_path:
            sftp.put(os.fspath(source), tmp)
        else:
            sftp.putfo(source, tmp)
        if storage.file_mode is not None:
            sftp.chmod(tmp, storage.file_mode)
        while True:
            name = storage.get_available_name(name)
            try:
                sftp.rename(tmp, storage._remote_path(name))
                return name
            except OSError:
                if not storage.exists(name):
                    raise
                # the name was taken since get_available_name: try the next free one
    except BaseException:
        import paramiko

        with suppress(OSError, paramiko.SSHException):  # best effort: the connection may be what failed
            sftp.remove(tmp)
        raise


class SFTPReader(io.RawIOBase):
    """A remote SFTP file read front to back, a window of read-ahead at a time.

    Without read-ahead each 32 KB waits for its round trip (3 MB/s on loopback). paramiko's prefetch() asks for
    the whole file from a thread of its own that outlives close(): a file closed after its first bytes (a header,
    a download cut off) went on being fetched, into memory, through the connection's next reads. Here each window
    (SFTP_WINDOW_REQUESTS requests, 4 MB) is asked for only once the one before is read.
    """

    def __init__(self, remote: paramiko.SFTPFile):
        super().__init__()
        self._remote = remote
        self._size = remote.stat().st_size
        self._asked = 0  # bytes of the file asked for so far
        self._pieces: Iterator[bytes] = iter(())
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            piece = next(self._pieces, None)
            if piece is not None:
                self._left = piece
                continue
            if self._asked >= self._size:
                return 0
            end = min(self._size, self._asked + SFTP_WINDOW_REQUESTS * SFTP_REQUEST_BYTES)
            chunks = [(at, min(SFTP_REQUEST_BYTES, end - at)) for at in range(self._asked, end, SFTP_REQUEST_BYTES)]
            self._asked = end
            self._pieces = self._remote.readv(chunks, SFTP_IN_FLIGHT)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._remote.close()
        super().close()


def open_file(storage: Storage, name: str) -> IO[bytes]:
    """Open a stored file for reading as a binary stream (use it in a with block); FileNotFoundError if missing."""
    _check_name(name)
    if _is_local(storage):
        return open(storage.path(name), "rb")
    if _is_s3(storage):
        # S3Storage.open downloads the whole object first (into memory by default); this streams it.
        try:
            return storage.bucket.Object(_s3_key(storage, name)).get()["Body"]
        except _s3_errors() as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"no file {name!r} in {storage.bucket_name}/{storage.location}") from exc
            raise
    if _is_sftp(storage):
        # SFTPStorage.open fails only at the first read; this fails here, as the other storages do.
        return SFTPReader(storage.sftp.open(storage._remote_path(name), "rb"))
    return storage.open(name, "rb")


@contextmanager
def local_copy(storage: Storage, name: str) -> Iterator[Path]:
    """Yield a local path to a stored file: the file itself on local disk, else a download removed afterwards.

    Hold it for as long as the file is read (e.g. across all the chunks a worker imports): each entry downloads.
    """
    _check_name(name)
    if _is_local(storage):
        path = Path(storage.path(name))
        if not path.is_file():
            raise FileNotFoundError(f"no file {name!r} in {storage.location}")
        yield path
        return
    with temporary_folder() as folder:
        path = folder / posixpath.basename(name)
        with open_file(storage, name) as stream:
            _spool(stream, path)
        yield path


def copy_file(storage: Storage, name: str, *, to: Storage, to_name: str) -> str:
    """Give a stored file a second copy at to_name in storage to (a free variant if taken); return the name it got.

    A hard link on the same local disk (no bytes copied); otherwise a copy that appears whole. The source stays:
    the caller deletes it once the copy is recorded (move_file in two steps, never a moment with no file recorded).
    """
    _check_name(name)
    _check_name(to_name)
    if _is_local(storage) and _is_local(to):
        src = storage.path(name)
        if not os.path.isfile(src):
            raise FileNotFoundError(f"no file {name!r} in {storage.location}")
        try:
            return _link_local(to, to_name, src)
        except OSError:  # another device, or no hard links here: a copy
            pass
    if _is_local(storage):
        return save_file(to, to_name, Path(storage.path(name)))
    with open_file(storage, name) as stream:
        return save_file(to, to_name, stream)


def move_file(storage: Storage, name: str, *, to: Storage, to_name: str) -> str:
    """Move a file to to_name in storage to (a free variant if taken) and return the name it got there.

    copy_file (a hard link on the same local disk), then the source is deleted only once the copy is complete.
    """
    stored = copy_file(storage, name, to=to, to_name=to_name)
    delete_file(storage, name)
    return stored


def delete_file(storage: Storage, name: str) -> None:
    """Delete a stored file; a missing file is not an error."""
    _check_name(name)
    if _is_sftp(storage):
        # SFTPStorage.delete swallows every error: a file it could not remove would be taken as gone.
        try:
            storage.sftp.remove(storage._remote_path(name))
        except FileNotFoundError:
            pass
        return
    storage.delete(name)


def file_exists(storage: Storage, name: str) -> bool:
    """Tell whether a file (not a folder) of that name is stored."""
    _check_name(name)
    if _is_local(storage):
        return os.path.isfile(storage.path(name))
    if _is_sftp(storage):
        try:
            return stat.S_ISREG(storage.sftp.stat(storage._remote_path(name)).st_mode)
        except FileNotFoundError:
            return False
    return storage.exists(name)


def file_size(storage: Storage, name: str) -> int:
    """Return a stored file's size in bytes; FileNotFoundError if missing."""
    return storage.size(_check_name(name))


def list_files(storage: Storage, prefix: str = "") -> Iterator[StoredFile]:
    """Yield every file under a folder (prefix; empty: all), recursively, skipping hidden names (starting with '.').

    Hidden names include the partial files of writers that give a file its name once complete (ours, rsync).
    """
    if prefix:
        _check_name(prefix, what="folder name")
    if _is_s3(storage):
        yield from _list_s3(storage, prefix)
    else:
        yield from _walk(storage, prefix)


def _list_s3(storage: S3Storage, prefix: str) -> Iterator[StoredFile]:
    base = posixpath.join(storage.location, "")
    key_prefix = posixpath.join(storage.location, prefix, "") if prefix else base
    for obj in storage.bucket.objects.filter(Prefix=key_prefix):
        name = obj.key[len(base) :]
        if obj.key.endswith("/") or any(part.startswith(".") for part in name.split("/")):
            continue  # folder markers made by consoles, hidden names
        if not _is_safe(name):
            logger.warning(
                "skipped S3 object %r in bucket %s: its name leaves its folder", obj.key, storage.bucket_name
            )
            continue
        yield StoredFile(name=name, size=obj.size, modified=obj.last_modified)


def _walk(storage: Storage, folder: str) -> Iterator[StoredFile]:
    dirs, files = _entries(storage, folder)
    yield from files
    for dir_name in dirs:
        yield from _walk(storage, posixpath.join(folder, dir_name))


def _entries(storage: Storage, folder: str) -> tuple[list[str], list[StoredFile]]:
    """Return the sub-folder names and the files right in a folder of a local or SFTP storage, without hidden ones."""
    if _is_sftp(storage):
        return _sftp_entries(storage, folder)
    try:
        dirs, files = storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    found = []
    for file_name in sorted(files):
        if file_name.startswith("."):
            continue
        name = posixpath.join(folder, file_name)
        try:
            mode = os.lstat(storage.path(name)).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            # A link could hand the hub any file it can read (outside the folder), a pipe would block a reader
            # for ever: only regular files are files here.
            logger.warning("skipped %s: not a regular file", storage.path(name))
            continue
        try:
            found.append(StoredFile(name=name, size=storage.size(name), modified=storage.get_modified_time(name)))
        except FileNotFoundError:
            continue  # moved away since the listing
    return sorted(d for d in dirs if not d.startswith(".")), found


def _sftp_entries(storage: SFTPStorage, folder: str) -> tuple[list[str], list[StoredFile]]:
    # The listing carries each entry's size and time: no round trip per file as with storage.size().
    path = storage._remote_path(folder)
    try:
        entries = storage.sftp.listdir_attr(path)
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    dirs, files = [], []
    for attrs in sorted(entries, key=lambda a: a.filename):
        entry = attrs.filename
        if entry.startswith("."):
            continue
        if stat.S_ISLNK(attrs.st_mode or 0):
            try:
                attrs = storage.sftp.stat(posixpath.join(path, entry))  # what the link points to
            except FileNotFoundError:
                continue  # a dangling link, or removed since the listing
        if stat.S_ISDIR(attrs.st_mode or 0):
            dirs.append(entry)
        elif stat.S_ISREG(attrs.st_mode or 0):
            files.append(_sftp_file(storage, posixpath.join(folder, entry), attrs))
    return dirs, files


def _sftp_file(storage: SFTPStorage, name: str, attrs: paramiko.SFTPAttributes) -> StoredFile:
    return StoredFile(name=name, size=attrs.st_size, modified=storage._datetime_from_timestamp(attrs.st_mtime))


@dataclass(frozen=True)
class Folder:
    """A folder of some storage: where a connection's inbox, archive, error folder or outbox is."""

    storage: Storage
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
        if _is_local(hub):
            confined(hub.path(prefix))  # a link inside the hub's folder may not lead out of it
        return Folder(hub, prefix, prefix, in_hub=True)
    return Folder(storage_for(value.rstrip("/") or "/"), "", value, in_hub=False)


def resolve_path(path: str) -> tuple[Storage, str]:
    """Return the storage and name of a recorded file path: relative to the hub's storage, or a full location.

    A local file is confined like its folder, the file itself included (a link to elsewhere): LocationRefused.
    """
    if path.startswith("/") or "://" in path:
        folder, _, name = path.rpartition("/")
        storage = storage_for(folder or "/")
    else:
        storage, name = hub_storage(), path
    if _is_local(storage):
        confined(storage.path(_check_name(name)), what="file")
    return storage, name


def list_folder(storage: Storage, prefix: str = "") -> Iterator[StoredFile]:
    """Yield the files right in a folder (not in its sub-folders), skipping hidden names (starting with '.')."""
    if prefix:
        _check_name(prefix, what="folder name")
    if _is_s3(storage):
        base = posixpath.join(storage.location, prefix, "") if (storage.location or prefix) else ""
        for obj in storage.bucket.objects.filter(Prefix=base, Delimiter="/"):
            name = obj.key[len(base) :]
            if not name or name.startswith(".") or "/" in name or not _is_safe(name):
                continue
            yield StoredFile(name=posixpath.join(prefix, name), size=obj.size, modified=obj.last_modified)
        return
    yield from _entries(storage, prefix)[1]


def look_at(storage: Storage, name: str) -> StoredFile | None:
    """Look at one stored file again: its size and modification time now, or None if it is gone."""
    _check_name(name)
    try:
        if _is_s3(storage):
            obj = storage.bucket.Object(_s3_key(storage, name))
            obj.load()
            return StoredFile(name=name, size=obj.content_length, modified=obj.last_modified)
        if _is_sftp(storage):
            attrs = storage.sftp.stat(storage._remote_path(name))  # size and time of one moment
            return _sftp_file(storage, name, attrs) if stat.S_ISREG(attrs.st_mode) else None
        return StoredFile(name=name, size=storage.size(name), modified=storage.get_modified_time(name))
    except FileNotFoundError:
        return None
    except _s3_errors() as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def copy_in(storage: Storage, name: str, *, to: Storage, to_name: str) -> tuple[str, str, int]:
    """Copy a stored file to to_name in storage to (a free variant if taken); return that name, SHA-256 and size.

    The source stays where it is. On one local disk the copy is a hard link: no bytes are written twice.
    """
    _check_name(name)
    _check_name(to_name)
    if _is_local(storage):
        return _copy_local(storage.path(name), to=to, to_name=to_name)
    with open_file(storage, name) as raw:
        reader = HashingReader(raw)
        stored = save_file(to, to_name, reader)
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


def _copy_local(src: str, *, to: Storage, to_name: str) -> tuple[str, str, int]:
    """Copy a local regular file into storage to, checked against the file opened (a name swapped meanwhile)."""
    with _open_regular(src) as fh:
        opened = os.fstat(fh.fileno())
        digest, size = hashlib.sha256(), 0
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
        if _is_local(to):
            try:
                stored = _link_local(to, to_name, src)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
            else:
                linked = os.lstat(to.path(stored))
                if (linked.st_dev, linked.st_ino) == (opened.st_dev, opened.st_ino):
                    return stored, digest.hexdigest(), size
                os.unlink(to.path(stored))  # the name was swapped after it was opened: copy what was opened
        fh.seek(0)
        reader = HashingReader(fh)
        stored = save_file(to, to_name, reader)
    return stored, reader.digest.hexdigest(), reader.size


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


class HashingReader:
    """A binary stream that computes the SHA-256 and size of what is read through it."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def replace_text(
    storage: Storage, name: str, write: Callable[[TextIO], object], *, encoding: str, scratch: Path
) -> None:
    """Write a text file under name with write(stream), replacing a file of that name; it appears whole, in one step.

    Local disk: written under a hidden .part name beside it and renamed over the name (no copy of the bytes, and
    the name is never missing). Elsewhere: written in the local folder scratch, the old copy deleted, then placed.
    """
    _check_name(name)
    if not _is_local(storage):
        local = scratch / posixpath.basename(name)
        with open(local, "w", encoding=encoding, newline="") as stream:
            write(stream)
        delete_file(storage, name)
        place_file(storage, name, local)
        local.unlink(missing_ok=True)
        return
    target = Path(storage.path(name))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".part")
    try:
        with open(fd, "w", encoding=encoding, newline="") as stream:
            write(stream)
        if storage.file_permissions_mode is not None:
            os.chmod(tmp, storage.file_permissions_mode)
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def adopt_file(storage: Storage, name: str, source: str | Path) -> str:
    """Store a local file the caller gives away (a temporary copy) under name (a free variant if taken); return it.

    On local disk a hard link gives it the name without copying it (a zip's entries, extracted beside the hub's
    storage); elsewhere, or across devices, it is copied as save_file does.
    """
    _check_name(name)
    if _is_local(storage):
        # As save_file leaves its copies: the storage's mode, else private (mkstemp's 0600).
        mode = storage.file_permissions_mode
        os.chmod(source, mode if mode is not None else 0o600)
        try:
            return _link_local(storage, name, str(source))
        except OSError:  # another device, or no hard links here: a copy
            pass
    return save_file(storage, name, source)


def place_file(storage: Storage, name: str, source: str | Path) -> str:
    """Store a local file under name (a free variant if taken) so that it appears whole, in one step; return it.

    Local disk writes a hidden .part file and links it into place, and an S3 object appears only once complete
    (save_file does both); SFTP writes a hidden .part file beside the name and renames it.
    """
    _check_name(name)
    if not _is_sftp(storage):
        return save_file(storage, name, source)
    folder, base = posixpath.split(name)
    hidden = posixpath.join(folder, f".{base[:100]}.{uuid.uuid4().hex[:8]}.part")
    with open(source, "rb") as fh:
        storage.save(hidden, File(fh))
    try:
        while True:
            name = storage.get_available_name(name)
            try:
                # SFTP's own rename refuses a taken name (unlike posix_rename): a file written meanwhile stays.
                storage.sftp.rename(storage._remote_path(hidden), storage._remote_path(name))
            except OSError:
                if storage.exists(name):
                    continue
                raise
            return name
    finally:
        if storage.exists(hidden):
            storage.delete(hidden)
