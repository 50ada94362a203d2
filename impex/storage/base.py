"""The interface every storage backend implements, the registry of backends by URL scheme, and their helpers."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, ClassVar, TextIO

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import Storage

from impex.locations import Location

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredFile:
    """A file found by list_files: its name inside the storage, size in bytes and last modification."""

    name: str
    size: int
    modified: datetime


BACKENDS: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a Backend class under its URL scheme."""
    BACKENDS[cls.scheme] = cls
    return cls


class Backend(ABC):
    """The file operations the hub needs, on one django storage (self.storage); one subclass per URL scheme.

    Names reach these methods checked by impex.storage's functions (a relative path that stays inside the storage).
    A file appears under its name only once complete, and never replaces another: a taken name gets a free variant.
    """

    scheme: ClassVar[str]
    # Built once per location and process, keeping its client and connection; False: built (and checked) per use.
    kept: ClassVar[bool] = True

    def __init__(self, storage: Storage):
        self.storage = storage

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where('')}>"

    @classmethod
    @abstractmethod
    def at(cls, location: Location) -> Backend:
        """Return the backend of a parsed location of this scheme; ConfigurationError if it cannot work."""
        raise NotImplementedError

    @abstractmethod
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
        return None

    @abstractmethod
    def open(self, name: str) -> IO[bytes]:
        """Open a stored file for reading as a binary stream; FileNotFoundError if missing."""
        raise NotImplementedError

    @abstractmethod
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
        return None

    def remove_empty_folders(self, prefix: str) -> None:
        """Remove the empty folders of a tree where folders are real (local disk)."""
        return None

    def close(self) -> None:
        """Let go of a connection kept open."""
        return None


def is_safe(name: str) -> bool:
    """Tell whether a name is a plain relative path that stays inside its storage."""
    return bool(name) and "\x00" not in name and all(part not in ("", ".", "..") for part in name.split("/"))


def check_name(name: str, *, what: str = "file name") -> str:
    """Refuse a name that is not a plain relative path inside its storage (path traversal)."""
    if not isinstance(name, str) or not is_safe(name):
        raise SuspiciousFileOperation(
            f"unsafe {what} {name!r}: it must be a relative path inside its storage, without '..', '.' or empty parts"
        )
    return name


def hidden_name(name: str) -> str:
    """Return a hidden name beside name for its partial file, under the file-name limit (255 bytes) whatever it is."""
    folder, base = posixpath.split(name)
    return posixpath.join(folder, f".{base[:100]}.{uuid.uuid4().hex[:12]}.part")


def spool(stream: IO[bytes], path: str | Path) -> None:
    """Copy a stream into a local file, a chunk at a time."""
    with open(path, "wb") as out:
        shutil.copyfileobj(stream, out, CHUNK_BYTES)


@contextmanager
def opened(source: str | Path | IO[bytes]) -> Iterator[IO[bytes]]:
    """Yield a binary stream of a local file or of a stream given as it is."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            yield fh
    else:
        yield source


@contextmanager
def temporary_folder() -> Iterator[Path]:
    """Yield a fresh folder under IMPEX_CACHE_DIR, removed with everything in it afterwards."""
    os.makedirs(settings.IMPEX_CACHE_DIR, exist_ok=True)
    folder = tempfile.mkdtemp(dir=settings.IMPEX_CACHE_DIR)
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
