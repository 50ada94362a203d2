"""The demo data set: two connections, their sample files, an admin login, imported with the engine."""

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from impex.choices import JobSource
from impex.models import Connection
from impex.runner import run_job
from impex.selectors import job_report
from impex.services.connections import connection_save
from impex.services.jobs import job_create

SAMPLES_DIR = Path(__file__).resolve().parent
ADMIN_USERNAME = "admin"
ADMIN_URL = "http://127.0.0.1:8000/admin/"

INBOX_README = """\
This is the inbox of the demo connection '{code}' ({convention} naming convention).

The sample files here were copied by `python manage.py impex_demo`, which also imported
them straight away (see Import jobs in the admin); importing them again reports them as
duplicates, because each file name is imported once.

Drop new files here that follow the connection's naming convention, then import them with
`python manage.py impex_import PATH... --connection {code}`. The inbox scan
(`python manage.py impex_scan`, run by the scheduler) that picks new files up from this
folder by itself comes with a later issue.
"""


@dataclass(frozen=True)
class DemoConnection:
    """A demo connection: what connection_save gets, and which sample files it sends."""

    code: str
    settings: dict
    files: tuple[str, ...]


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
            "ERP_0000005_INT1_KS_SHIPMENTS.NET",
        ),
    ),
)


def demo_inbox(code: str) -> Path:
    """Return the local inbox folder of a demo connection."""
    return Path(settings.IMPEX_ROOT) / code / "inbox"


@transaction.atomic
def demo_admin_save(*, password: str | None = None) -> tuple[str, bool]:
    """Create or update the superuser 'admin' with the given or a new random password; return it and if created."""
    password = password or secrets.token_urlsafe(12)
    User = get_user_model()
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    created = user is None
    if created:
        user = User(username=ADMIN_USERNAME, email="admin@impex-hub.example")
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return password, created


def demo_connection_save(*, demo: DemoConnection) -> tuple[Connection, bool]:
    """Create or update a demo connection and fill its local inbox with the sample files and a README."""
    inbox = demo_inbox(demo.code)
    inbox.mkdir(parents=True, exist_ok=True)
    conn, created = connection_save(code=demo.code, inbox=str(inbox), **demo.settings)
    for name in demo.files:
        shutil.copyfile(SAMPLES_DIR / name, inbox / name)
    (inbox / "README.txt").write_text(INBOX_README.format(code=conn.code, convention=conn.convention), encoding="utf-8")
    return conn, created


def demo_import(*, connection: Connection, demo: DemoConnection) -> dict:
    """Import a demo connection's sample files now with the job runner; return the job report."""
    # job_create copies the files into the job's own folder, so the samples themselves are never moved.
    job = job_create(paths=[SAMPLES_DIR / name for name in demo.files], connection=connection, source=JobSource.COMMAND)
    job = run_job(job.pk)
    report = job_report(job, max_errors=100)
    report["connection"] = connection.code
    report["error"] = job.error
    return report
