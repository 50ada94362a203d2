"""The hub's temporary files in IMPEX_CACHE_DIR: those of export runs that ended, and any left there too long, go."""

import os
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from impex.choices import ExportRunStatus
from impex.models import ExportRun

# An export run's temporary folder is named export-run-<id>-<random>: the sweeper removes it once the run has ended.
RUN_FOLDER_PREFIX = "export-run-"
_RUN_FOLDER = re.compile(rf"{RUN_FOLDER_PREFIX}(\d+)-[a-z0-9_]{{8}}")
# The other temporary folders are Python's tempfile names (tmp<random>). Nothing else is touched, should the
# setting point at a folder that holds more than the hub's temporary files.
_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")


def cache_clean(*, now=None) -> list[str]:
    """Remove the temporary folders of export runs that ended, and whatever has sat unchanged for too long.

    A process killed in the middle of a run leaves its folder behind. An export run's folder goes as soon as the run
    is no longer queued or running (the sweeper fails a dead run first); another temporary folder (an import's local
    copy, an upload's, a folder of a run the database no longer has) goes once nothing in it changed for
    IMPEX_CACHE_ORPHAN_HOURS. Only names the hub gives its temporary files are looked at. Return the names removed.
    """
    cache = Path(settings.IMPEX_CACHE_DIR)
    if not cache.is_dir():
        return []
    oldest = (now or timezone.now()).timestamp() - settings.IMPEX_CACHE_ORPHAN_HOURS * 3600
    entries = [e for e in os.scandir(cache) if _RUN_FOLDER.fullmatch(e.name) or _TEMPORARY.fullmatch(e.name)]
    run_of = {entry.name: int(m[1]) for entry in entries if (m := _RUN_FOLDER.fullmatch(entry.name))}
    status_of = dict(ExportRun.objects.filter(pk__in=set(run_of.values())).values_list("pk", "status"))
    removed = []
    for entry in entries:
        status = status_of.get(run_of.get(entry.name))
        if status in (ExportRunStatus.QUEUED, ExportRunStatus.RUNNING):
            continue
        try:
            if status is None and _last_change(entry) > oldest:
                continue
        except FileNotFoundError:
            continue  # removed while we looked
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def _last_change(entry: os.DirEntry) -> float:
    """Return when anything in an entry of the cache last changed (the entry itself, or anything under it)."""
    newest = entry.stat(follow_symlinks=False).st_mtime
    if entry.is_dir(follow_symlinks=False):
        for folder, dirs, files in os.walk(entry.path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
                except FileNotFoundError:
                    continue  # removed while we looked
    return newest
