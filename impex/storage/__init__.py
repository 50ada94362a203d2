"""One door to every file the hub reads or writes: a local folder, S3, SFTP or FTP(S), named by a location string.

Each URL scheme has one Backend class (impex.storage.base), registered by its scheme in BACKENDS as NetBox
registers its data backends, and built on its django-storages class's public API: local.py, s3.py, sftp.py, ftp.py.
The functions below are what the rest of the hub calls: they refuse a name that would leave its storage, then ask
the backend. boto3 and paramiko are imported only when an S3 or SFTP location is first built (a quarter of a second
of every command's start-up otherwise).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from impex.exceptions import ConfigurationError
from impex.locations import LOCATION_FORMS, hub_folder, is_location, parse_location
from impex.storage.base import BACKENDS, CHUNK_BYTES, Backend, StoredFile, check_name, spool, temporary_folder
from impex.storage.ftp import FTPBackend, FTPSBackend, ftp_host_refusal
from impex.storage.local import LocalBackend, open_regular
from impex.storage.s3 import S3Backend
from impex.storage.sftp import SFTPBackend, sftp_host_refusal

__all__ = [
    "BACKENDS",
    "FTPBackend",
    "FTPSBackend",
    "Backend",
    "Folder",
    "HashingReader",
    "LocalBackend",
    "S3Backend",
    "SFTPBackend",
    "StoredFile",
    "adopt_file",
    "copy_file",
    "copy_in",
    "delete_file",
    "file_exists",
    "file_size",
    "ftp_host_refusal",
    "folder_at",
    "hub_storage",
    "list_files",
    "list_folder",
    "local_copy",
    "location_of",
    "look_at",
    "move_file",
    "open_file",
    "place_file",
    "replace_text",
    "resolve_path",
    "save_file",
    "sftp_host_refusal",
    "storage_for",
    "temporary_folder",
]


def storage_for(location: str) -> Backend:
    """Return the storage of a location: an absolute folder, file:///path, s3://bucket/prefix, sftp://host/path,
    ftp://host/path or ftps://host/path.

    A local folder is confined (impex.locations) on every call, so a link changed since is seen: LocationRefused.
    """
    parsed = parse_location(location)
    backend = BACKENDS.get(parsed.scheme)
    if backend is None:
        raise ConfigurationError(f"unknown storage location {parsed.shown!r}: use {LOCATION_FORMS}")
    return _kept_storage(location) if backend.kept else backend.at(parsed)


@functools.cache
def _kept_storage(location: str) -> Backend:
    """Return the storage of a location kept for the process (an SFTP or FTP one keeps its connection)."""
    parsed = parse_location(location)
    return BACKENDS[parsed.scheme].at(parsed)


@receiver(setting_changed)
def _forget_storages(*, setting: str, **kwargs) -> None:
    """Drop the cached storages when a setting they were built from changes (Django signals it in tests only)."""
    if setting.startswith(("AWS_", "SFTP_", "FTP_", "FTPS_")) or setting == "IMPEX_STORAGE":
        _kept_storage.cache_clear()


def hub_storage() -> Backend:
    """Return where the hub keeps its own files (job copies, archives, error folders, outbox).

    The operator's choice (IMPEX_STORAGE, else IMPEX_ROOT), so not confined like the locations an editor names.
    """
    folder = hub_folder()
    if folder is not None:
        return LocalBackend.trusted(folder)
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
    if not is_location(value):
        prefix = (value or default).strip("/")
        check_name(prefix, what="folder name")
        hub = hub_storage()
        hub.confine(prefix, what="folder")  # a link inside the hub's folder may not lead out of it
        return Folder(hub, prefix, prefix, in_hub=True)
    return Folder(storage_for(value.rstrip("/") or "/"), "", value, in_hub=False)


def resolve_path(path: str) -> tuple[Backend, str]:
    """Return the storage and name of a recorded file path: relative to the hub's storage, or a full location.

    A local file is confined like its folder, the file itself included (a link to elsewhere): LocationRefused.
    """
    if is_location(path):
        folder, _, name = path.rpartition("/")
        storage = storage_for(folder or "/")
    else:
        storage, name = hub_storage(), path
    storage.confine(name, what="file")
    return storage, name


# -- what the hub calls: names checked, then the backend's operation -------------------------------


def location_of(storage: Backend, name: str) -> str:
    """Say where a stored file is, for people: a local path, s3://bucket/key, sftp://host/path or ftp(s)://host/path."""
    return storage.where(check_name(name))


def save_file(storage: Backend, name: str, source: str | Path | IO[bytes]) -> str:
    """Store a local file or a binary stream under name (a free variant if taken) so that it appears whole, in one
    step, a chunk at a time; return the name it got."""
    return storage.save(check_name(name), source)


# The name exporters use for a file that must appear whole: every backend's save does that.
place_file = save_file


def adopt_file(storage: Backend, name: str, source: str | Path) -> str:
    """Store a local file the caller gives away (a temporary copy) under name (a free variant if taken); return it.

    On local disk a hard link gives it the name without copying it; elsewhere, or across devices, it is copied.
    """
    return storage.adopt(check_name(name), source)


def replace_text(
    storage: Backend, name: str, write: Callable[[TextIO], object], *, encoding: str, scratch: Path
) -> None:
    """Write a text file under name with write(stream), replacing a file of that name; it appears whole, in one step.

    scratch: a local folder for the text where it cannot be written beside its name (S3, SFTP, FTP).
    """
    storage.replace_text(check_name(name), write, encoding=encoding, scratch=scratch)


def open_file(storage: Backend, name: str) -> IO[bytes]:
    """Open a stored file for reading as a binary stream (use it in a with block); FileNotFoundError if missing."""
    return storage.open(check_name(name))


def delete_file(storage: Backend, name: str) -> None:
    """Delete a stored file; a missing file is not an error."""
    storage.delete(check_name(name))


def file_exists(storage: Backend, name: str) -> bool:
    """Tell whether a file (not a folder) of that name is stored."""
    return storage.exists(check_name(name))


def file_size(storage: Backend, name: str) -> int:
    """Return a stored file's size in bytes; FileNotFoundError if missing."""
    return storage.size(check_name(name))


def look_at(storage: Backend, name: str) -> StoredFile | None:
    """Look at one stored file again: its size and modification time now, or None if it is gone."""
    return storage.look_at(check_name(name))


def list_files(storage: Backend, prefix: str = "") -> Iterator[StoredFile]:
    """Yield every file under a folder (prefix; empty: all), recursively, skipping hidden names (starting with '.').

    Hidden names include the partial files of writers that give a file its name once complete (ours, rsync).
    """
    if prefix:
        check_name(prefix, what="folder name")
    return storage.list_files(prefix)


def list_folder(storage: Backend, prefix: str = "") -> Iterator[StoredFile]:
    """Yield the files right in a folder (not in its sub-folders), skipping hidden names (starting with '.')."""
    if prefix:
        check_name(prefix, what="folder name")
    return storage.list_folder(prefix)


@contextmanager
def local_copy(storage: Backend, name: str) -> Iterator[Path]:
    """Yield a local path to a stored file: the file itself on local disk, else a download removed afterwards.

    Hold it for as long as the file is read (e.g. across all the chunks a worker imports): each entry downloads.
    """
    path = storage.local_file(check_name(name))
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no file {path}")
        yield Path(path)
        return
    with temporary_folder() as folder:
        path = folder / posixpath.basename(name)
        with storage.open(name) as stream:
            spool(stream, path)
        yield path


def copy_file(storage: Backend, name: str, *, to: Backend, to_name: str) -> str:
    """Give a stored file a second copy at to_name in storage to (a free variant if taken); return the name it got.

    A hard link on the same local disk (no bytes copied); otherwise a copy that appears whole. The source stays:
    the caller deletes it once the copy is recorded (move_file in two steps, never a moment with no file recorded).
    """
    src = storage.local_file(check_name(name))
    check_name(to_name)
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
    src = storage.local_file(check_name(name))
    check_name(to_name)
    if src is not None:
        return _copy_local(src, to=to, to_name=to_name)
    with storage.open(name) as raw:
        reader = HashingReader(raw)
        stored = to.save(to_name, reader)
    return stored, reader.digest.hexdigest(), reader.size


def _copy_local(src: str, *, to: Backend, to_name: str) -> tuple[str, str, int]:
    """Copy a local regular file into storage to, checked against the file opened (a name swapped meanwhile)."""
    with open_regular(src) as fh:
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
