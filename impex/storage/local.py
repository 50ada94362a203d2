"""Local folders (an absolute path or file:///path) on Django's FileSystemStorage."""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TextIO

from django.core.files.storage import FileSystemStorage

from impex.locations import Location, confined
from impex.storage.base import Backend, StoredFile, check_name, register_backend, spool

logger = logging.getLogger(__name__)


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


def open_regular(path: str) -> IO[bytes]:
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


@register_backend
class LocalBackend(Backend):
    """A folder on local disk (an absolute path or file:///path), on Django's FileSystemStorage."""

    scheme = "file"
    kept = False  # confined on every use: a link changed since is seen
    storage: FileSystemStorage

    @classmethod
    def at(cls, location: Location) -> LocalBackend:
        return cls(FileSystemStorage(location=confined(location.path)))

    @classmethod
    def trusted(cls, folder: str) -> LocalBackend:
        """Return the backend of the hub's own folder: the operator's choice, so not confined."""
        return cls(FileSystemStorage(location=folder))

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
        confined(self.storage.path(check_name(name, what=f"{what} name")), what=what)

    def open(self, name: str) -> IO[bytes]:
        path = self.storage.path(name)
        # O_NOFOLLOW guards the file's own name; a linked folder on the way is refused here.
        base = os.path.realpath(self.storage.location)
        if os.path.commonpath([base, os.path.realpath(os.path.dirname(path))]) != base:
            raise FileNotFoundError(f"{path} is reached through a symbolic link out of its folder")
        return open_regular(path)

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
                spool(source, tmp)
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
        # A linked folder could lead out of the folder too: only real folders are walked.
        real = [
            d
            for d in dirs
            if not d.startswith(".") and not os.path.islink(self.storage.path(posixpath.join(folder, d)))
        ]
        return sorted(real), [f for f in found if f is not None]

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
