"""Extract uploaded zip archives safely: no path traversal, links, or zip bombs."""

import hashlib
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from impex.exceptions import ArchiveError

CHUNK_BYTES = 64 * 1024
# Small entries may compress extremely well (a column of zeros) without being a threat.
RATIO_MIN_BYTES = 1024 * 1024
_DRIVE = re.compile(r"[A-Za-z]:")
_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END_OF_CENTRAL_DIRECTORY = b"PK\x06\x06"
# A local file header, an empty archive's end record, a spanned archive's marker.
_ZIP_STARTS = (b"PK\x03\x04", _END_OF_CENTRAL_DIRECTORY, b"PK\x07\x08")


@dataclass
class ExtractedFile:
    """A file written out of an archive."""

    name: str
    path: Path
    size: int
    sha256: str = ""  # of its content, as written


def is_zip(path: str | Path) -> bool:
    """Tell whether the file is a zip archive by its first bytes (a damaged one too, so it is refused as a zip)."""
    with open(path, "rb") as raw:
        return is_zip_start(raw.read(4))


def is_zip_start(head: bytes) -> bool:
    """Tell whether a file's first four bytes are those of a zip archive."""
    return head in _ZIP_STARTS


def extract_zip(
    path: str | Path, *, dest: str | Path, max_entries: int, max_total_bytes: int, max_file_bytes: int, max_ratio: int
) -> list[ExtractedFile]:
    """Extract the archive's files, flattened to their base names, into dest; raise ArchiveError if it is unsafe."""
    archive, members = _open_checked(
        path,
        max_entries=max_entries,
        max_total_bytes=max_total_bytes,
        max_file_bytes=max_file_bytes,
        max_ratio=max_ratio,
    )
    with archive:
        dest = Path(dest)
        created_dest = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        extracted: list[ExtractedFile] = []
        written: list[Path] = []
        try:
            total = 0
            for base, info in members:
                target = dest / base
                if target.exists():
                    raise ArchiveError(f'"{base}" already exists in {dest}')
                written.append(target)
                size, digest = _copy_entry(
                    archive,
                    info,
                    target=target,
                    already=total,
                    max_total_bytes=max_total_bytes,
                    max_file_bytes=max_file_bytes,
                    max_ratio=max_ratio,
                )
                extracted.append(ExtractedFile(name=base, path=target, size=size, sha256=digest))
                total += size
        except BaseException:
            for target in written:
                target.unlink(missing_ok=True)
            if created_dest and not any(dest.iterdir()):
                dest.rmdir()
            raise
    return extracted


def zip_member_names(source: str | Path | BinaryIO, **limits: int) -> list[str]:
    """Return the base names of the files an archive would extract, from its central directory alone (nothing is
    decompressed); raise ArchiveError if extract_zip would refuse it by its entries (paths, links, declared sizes).

    limits: extract_zip's max_entries, max_total_bytes, max_file_bytes and max_ratio.
    """
    archive, members = _open_checked(source, **limits)
    archive.close()
    return [base for base, _ in members]


def _open_checked(
    source: str | Path | BinaryIO, *, max_entries: int, max_total_bytes: int, max_file_bytes: int, max_ratio: int
) -> tuple[zipfile.ZipFile, list[tuple[str, zipfile.ZipInfo]]]:
    """Open an archive (a path or a seekable binary file) and return it with its files to extract, refusing it if
    any entry is unsafe; too many entries are refused before ZipFile reads them all."""
    declared = _declared_entry_count(source)
    if declared is not None and declared > max_entries:
        raise ArchiveError(f"the archive has {declared:,} entries, more than the limit of {max_entries:,}")
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        with _reading(source) as raw:
            damaged = is_zip_start(raw.read(4))
        if damaged:
            raise ArchiveError(f"the zip archive is damaged or truncated ({exc}): send it again") from None
        raise ArchiveError(f"not a readable zip archive: {exc}") from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}") from None
    try:
        members = _members(
            archive.infolist(),
            max_entries=max_entries,
            max_total_bytes=max_total_bytes,
            max_file_bytes=max_file_bytes,
            max_ratio=max_ratio,
        )
    except ArchiveError:
        archive.close()
        raise
    return archive, members


@contextmanager
def _reading(source: str | Path | BinaryIO) -> Iterator[BinaryIO]:
    """Open a path for reading, or rewind a file given open (and rewind it again afterwards)."""
    if isinstance(source, str | Path):
        with open(source, "rb") as raw:
            yield raw
        return
    source.seek(0)
    try:
        yield source
    finally:
        source.seek(0)


def _declared_entry_count(source: str | Path | BinaryIO) -> int | None:
    """Return the entry count the archive's end record (or its ZIP64 record) declares, before ZipFile loads every
    entry into memory."""
    try:
        with _reading(source) as raw:
            raw.seek(0, 2)
            size = raw.tell()
            tail_size = min(size, 22 + 0xFFFF)
            raw.seek(size - tail_size)
            tail = raw.read()
            at = tail.rfind(_END_OF_CENTRAL_DIRECTORY)
            if at < 0 or len(tail) - at < 22:
                return None
            total = struct.unpack_from("<H", tail, at + 10)[0]
            if total != 0xFFFF:
                return total
            # 0xFFFF: the count is in the ZIP64 end record, which the locator just before the end record points to.
            locator = tail[max(at - 20, 0) : at]
            if len(locator) < 20 or not locator.startswith(_ZIP64_LOCATOR):
                return None
            raw.seek(struct.unpack_from("<Q", locator, 8)[0])
            record = raw.read(40)
    except (OSError, ValueError, OverflowError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}") from None
    if len(record) < 40 or not record.startswith(_ZIP64_END_OF_CENTRAL_DIRECTORY):
        return None  # not where the locator says (data before the archive): ZipFile finds it
    return struct.unpack_from("<Q", record, 32)[0]


def _members(
    infos: list[zipfile.ZipInfo], *, max_entries: int, max_total_bytes: int, max_file_bytes: int, max_ratio: int
) -> list[tuple[str, zipfile.ZipInfo]]:
    """Return (base name, entry) of the files to extract, refusing the archive if any entry is unsafe."""
    if len(infos) > max_entries:
        raise ArchiveError(f"the archive has {len(infos):,} entries, more than the limit of {max_entries:,}")
    members: list[tuple[str, zipfile.ZipInfo]] = []
    owners: dict[str, str] = {}
    total = 0
    for info in infos:
        parts = _safe_parts(info)
        if info.is_dir() or _is_junk(parts):
            continue
        base = parts[-1]
        if base in owners:
            raise ArchiveError(
                f'the entries "{owners[base]}" and "{info.filename}" have the same file name "{base}"; '
                "rename one of them"
            )
        owners[base] = info.filename
        total += info.file_size
        _check_declared_size(
            info, total=total, max_total_bytes=max_total_bytes, max_file_bytes=max_file_bytes, max_ratio=max_ratio
        )
        members.append((base, info))
    return members


def _safe_parts(info: zipfile.ZipInfo) -> list[str]:
    """Return the parts of the entry's path, refusing one that could be written outside the folder."""
    name = info.filename
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise ArchiveError(f'the entry "{name}" has an absolute path')
    # Some Windows tools write backslashes as separators; treat them as such so "..\\" cannot slip through.
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f'the entry "{name}" has a path that leaves its folder ("..")')
    if not parts and not info.is_dir():
        raise ArchiveError(f'the entry "{name}" has no file name')
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f'the entry "{name}" is a symbolic link')
    if info.flag_bits & 0x1:
        raise ArchiveError(f'the entry "{name}" is encrypted')
    return parts


def _is_junk(parts: list[str]) -> bool:
    """Tell whether the entry is macOS metadata rather than a data file."""
    return "__MACOSX" in parts or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _check_declared_size(
    info: zipfile.ZipInfo, *, total: int, max_total_bytes: int, max_file_bytes: int, max_ratio: int
) -> None:
    """Refuse an entry whose declared size, the running total, or its compression ratio is beyond the limits."""
    if info.file_size > max_file_bytes:
        raise ArchiveError(
            f'the entry "{info.filename}" is {info.file_size:,} bytes, more than the limit of {max_file_bytes:,}'
        )
    if total > max_total_bytes:
        raise ArchiveError(
            f"the archive's files add up to more than the limit of {max_total_bytes:,} bytes "
            f'(at the entry "{info.filename}")'
        )
    if info.file_size > RATIO_MIN_BYTES and info.file_size > max_ratio * info.compress_size:
        raise ArchiveError(
            f'the entry "{info.filename}" expands more than {max_ratio} times (a zip bomb?): '
            f"{info.compress_size:,} bytes to {info.file_size:,}"
        )


def _copy_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    *,
    target: Path,
    already: int,
    max_total_bytes: int,
    max_file_bytes: int,
    max_ratio: int,
) -> tuple[int, str]:
    """Write one entry to target, counting the bytes as they come since declared sizes can lie; return its size
    and its SHA-256."""
    size = 0
    digest = hashlib.sha256()
    try:
        with archive.open(info) as source, open(target, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                size += len(chunk)
                digest.update(chunk)
                if size > max_file_bytes:
                    raise ArchiveError(
                        f'the entry "{info.filename}" expands past the limit of {max_file_bytes:,} bytes'
                    )
                if already + size > max_total_bytes:
                    raise ArchiveError(
                        f"the archive's files expand past the limit of {max_total_bytes:,} bytes "
                        f'(at the entry "{info.filename}")'
                    )
                if size > RATIO_MIN_BYTES and size > max_ratio * info.compress_size:
                    raise ArchiveError(f'the entry "{info.filename}" expands more than {max_ratio} times (a zip bomb?)')
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(f'the entry "{info.filename}" cannot be read: {exc}') from None
    return size, digest.hexdigest()
