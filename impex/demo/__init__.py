"""The demo data set: three connections, their sample files in their inboxes, an admin login, scanned at once."""

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from impex.demo.shop import SHOP_GROUP, shop_layout_save
from impex.models import Connection, ImportedFileName
from impex.selectors import job_report
from impex.services.connections import connection_save
from impex.services.inbox import inbox_scan

SAMPLES_DIR = Path(__file__).resolve().parent
ADMIN_USERNAME = "admin"
ADMIN_URL = "http://127.0.0.1:8000/admin/"
RESET_HINT = "`make run RESET_PASSWORD=1` or `python manage.py impex_demo --reset-password`"

INBOX_README = """\
This is the inbox of the demo connection '{code}' ({convention} naming convention).

`python manage.py impex_demo` put the sample files here and scanned this inbox at once:
they were imported in order and moved to the archive folder (see Import jobs and Inbox
files in the admin).

Drop new files here that follow the connection's naming convention: the scheduler (the
django-q2 cluster that `make run` starts) scans this folder every {interval} minutes and imports
them, moving each to the archive, or to the error folder with a .reason.txt beside it.
"Sync now" on the connection's page in the admin, or `python manage.py impex_scan
--connection {code}`, scans at once. Give a file its name only once it is complete, or
write it as NAME.part and rename it: files still being written are left for the next scan.
This README and hidden files are never imported.
"""


@dataclass(frozen=True)
class DemoConnection:
    """A demo connection: what connection_save gets, and which sample files it sends."""

    code: str
    settings: dict
    files: tuple[str, ...]
    # Sent after the first orders went out (impex_demo imports them after one export pass): a cancellation and an
    # amendment of exported orders, which the exporters then send again.
    later_files: tuple[str, ...] = ()
    # Sets up what the connection needs first (a third-party layout and its import group).
    layout: Callable[[], None] | None = None


DEMO_CONNECTIONS = (
    DemoConnection(
        code="acme-pos",
        settings={
            "convention": "bspk",
            "company_name": "Acme",
            "timezone": "Europe/London",
            "contacts": "integration@acme.example",
        },
        files=(
            "SPECIAL-ORDERS_V2_Acme_202611010900.csv",
            "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611010900.csv",
            "SPECIAL-ORDER-EVENTS_V2_Acme_202611010900.csv",
        ),
    ),
    DemoConnection(
        code="kore-erp",
        settings={"convention": "kore", "integration_id": "INT1"},
        files=(
            "ERP_0000001_INT1_KS_CUSTOMERS.FULL",
            "ERP_0000002_INT1_KS_PRODUCTS.FULL",
            "ERP_0000003_INT1_KS_INVENTORY.NET",
            "ERP_0000003_INT1_KS_PRICES.NET",
            "ERP_0000004_INT1_KS_ORDERS.NET",
            "ERP_0000004_INT1_KS_ORDER_LINES.NET",
            "ERP_0000005_INT1_KS_ORDERS.NET",
            "ERP_0000005_INT1_KS_ORDER_LINES.NET",
            "ERP_0000005_INT1_KS_SHIPMENTS.NET",
        ),
        later_files=("ERP_0000006_INT1_KS_ORDERS.NET",),
    ),
    # A shop platform names its exports its own way: the patterns convention, by its import group's file patterns.
    DemoConnection(
        code="shop",
        settings={"convention": "patterns", "groups": [SHOP_GROUP]},
        files=("customers_export_1.csv",),
        layout=shop_layout_save,
    ),
)


def demo_inbox(code: str) -> Path:
    """Return the local inbox folder of a demo connection."""
    return Path(settings.IMPEX_ROOT) / code / "inbox"


@dataclass(frozen=True)
class AdminLogin:
    """The demo's admin login: its password when it is known to work (else None), and what changed."""

    username: str
    password: str | None
    created: bool
    password_changed: bool


@dataclass(frozen=True)
class DemoImport:
    """What the demo import did for one connection."""

    connection: str
    imported_before: tuple[str, ...]
    earlier_jobs: tuple[int, ...]
    report: dict | None


def demo_password_file() -> Path:
    """Return the file that keeps the admin password impex_demo generated (under VAR_DIR, out of the repository)."""
    return Path(settings.VAR_DIR) / "demo_admin_password"


def _password_store(password: str) -> None:
    """Keep a generated password in the password file, readable by its owner only."""
    path = demo_password_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # An existing file keeps its mode on open: narrow it before the secret is written.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")


def _password_stored() -> str | None:
    """Return the password impex_demo generated last, if its file is there."""
    try:
        return demo_password_file().read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


@transaction.atomic
def demo_admin_save(*, password: str | None = None, reset: bool = False) -> AdminLogin:
    """Create the superuser 'admin' with a random password, or keep its password unless one is given or reset."""
    User = get_user_model()
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    created = user is None
    if created:
        user = User(username=ADMIN_USERNAME, email="admin@impex-hub.example")
    user.is_staff = user.is_superuser = user.is_active = True
    if password:
        # A password the user chose is theirs to remember: it is not kept in a file.
        user.set_password(password)
        user.save()
        demo_password_file().unlink(missing_ok=True)
        return AdminLogin(username=ADMIN_USERNAME, password=password, created=created, password_changed=True)
    if created or reset:
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        _password_store(password)
        return AdminLogin(username=ADMIN_USERNAME, password=password, created=created, password_changed=True)
    user.save()
    # The file is only a memo: it is shown again only while it still logs in (the admin may have changed it since).
    stored = _password_stored()
    known = stored if stored and user.check_password(stored) else None
    return AdminLogin(username=ADMIN_USERNAME, password=known, created=created, password_changed=False)


def demo_connection_save(*, demo: DemoConnection) -> tuple[Connection, bool]:
    """Create or update a demo connection and fill its local inbox with the sample files and a README."""
    inbox = demo_inbox(demo.code)
    inbox.mkdir(parents=True, exist_ok=True)
    if demo.layout is not None:
        demo.layout()
    conn, created = connection_save(code=demo.code, inbox=str(inbox), **demo.settings)
    _samples_copy(connection=conn, files=demo.files)
    readme = INBOX_README.format(code=conn.code, convention=conn.convention, interval=conn.interval_minutes)
    (inbox / "README.txt").write_text(readme, encoding="utf-8")
    return conn, created


def _samples_copy(*, connection: Connection, files: tuple[str, ...]) -> None:
    """Put the sample files the connection's ledger lacks (by name and content) in its inbox."""
    ledger = dict(
        ImportedFileName.objects.filter(connection=connection, name__in=files).values_list("name", "content_hash")
    )
    for name in files:
        if ledger.get(name) != _sha256(SAMPLES_DIR / name):
            # copy2 keeps the samples' old modification time: the scan sees files at rest, not being written.
            shutil.copy2(SAMPLES_DIR / name, demo_inbox(connection.code) / name)


def _sha256(path: Path) -> str:
    """Return the SHA-256 of a file, as the import ledger keeps it."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def demo_import(*, connection: Connection, demo: DemoConnection, later: bool = False) -> DemoImport:
    """Import the sample files of a demo connection that its ledger lacks (by name and content) with the job runner;
    with later, its later files, which are put in its inbox first."""
    files = demo.later_files if later else demo.files
    if later:
        _samples_copy(connection=connection, files=files)
    ledger = {
        name: (content_hash, job_id)
        for name, content_hash, job_id in ImportedFileName.objects.filter(
            connection=connection, name__in=files
        ).values_list("name", "content_hash", "file__job")
    }
    before = [name for name in files if name in ledger and ledger[name][0] == _sha256(SAMPLES_DIR / name)]
    new = [name for name in files if name not in before]
    earlier_jobs = tuple(sorted({ledger[name][1] for name in before if ledger[name][1] is not None}))
    if not new:
        return DemoImport(
            connection=connection.code, imported_before=tuple(before), earlier_jobs=earlier_jobs, report=None
        )
    # The samples were put in the inbox: a scan imports them, as the scheduler would, and moves them out.
    job = inbox_scan(connection=connection, run_here=True).job
    if job is None:
        return DemoImport(
            connection=connection.code, imported_before=tuple(before), earlier_jobs=earlier_jobs, report=None
        )
    report = job_report(job, max_errors=100)
    report["connection"] = connection.code
    report["error"] = job.error
    return DemoImport(
        connection=connection.code, imported_before=tuple(before), earlier_jobs=earlier_jobs, report=report
    )
