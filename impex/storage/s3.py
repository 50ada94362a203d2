"""S3 locations (s3://bucket/prefix) on django-storages' S3Storage; boto3 is imported when the first is built."""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings

from impex.exceptions import ConfigurationError
from impex.locations import Location
from impex.storage.base import Backend, StoredFile, is_safe, register_backend, spool, temporary_folder

if TYPE_CHECKING:
    from storages.backends.s3 import S3Storage

logger = logging.getLogger(__name__)

# S3's rules for bucket names (lower case, digits, dots and hyphens, 3 to 63 characters).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


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
        if prefix and not is_safe(prefix):
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
                spool(source, folder / "upload")
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
            if name and not name.startswith(".") and "/" not in name and is_safe(name):
                yield self._file(posixpath.join(prefix, name), obj)

    def list_files(self, prefix: str) -> Iterator[StoredFile]:
        for name, obj in self._objects(prefix):
            if obj.key.endswith("/") or any(part.startswith(".") for part in name.split("/")):
                continue  # folder markers made by consoles, hidden names
            if not is_safe(name):
                logger.warning("skipped S3 object %r in %s: its name leaves its folder", obj.key, self.where(""))
                continue
            yield self._file(posixpath.join(prefix, name) if prefix else name, obj)
