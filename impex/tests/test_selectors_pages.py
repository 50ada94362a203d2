"""The reads of the admin's pages (impex.selectors.pages), on the real database."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from impex.choices import Convention, ExportTrigger, GroupDirection
from impex.models import (
    Connection,
    ConnectionState,
    DataDescriptor,
    DataGroup,
    ExportRun,
    ExportState,
    ImportFile,
    ImportJob,
    InboxFile,
    RowError,
    SentFile,
)
from impex.selectors.pages import (
    connection_inbox,
    connections_next_scan,
    entity_descriptors,
    group_export_runs,
    group_export_state,
    group_sent_files,
    job_real_runs,
    job_row_errors,
)
from impex.services.schedules import scan_schedule_name

pytestmark = pytest.mark.django_db


def kore(code: str, integration: str) -> Connection:
    return Connection.objects.create(code=code, convention=Convention.KORE, integration_id=integration)


def test_next_scans_come_from_each_connections_own_schedule():
    pos, erp, idle = kore("POS", "INT1"), kore("ERP", "INT2"), kore("IDLE", "INT3")
    soon, later = timezone.now() + timedelta(minutes=5), timezone.now() + timedelta(hours=1)
    Schedule.objects.create(name=scan_schedule_name(pos), func="impex.tasks.scan", next_run=soon)
    Schedule.objects.create(name=scan_schedule_name(erp), func="impex.tasks.scan", next_run=later)
    Schedule.objects.create(name="something else", func="impex.tasks.scan", next_run=timezone.now())

    assert connections_next_scan(connections=[pos, erp, idle]) == {pos.pk: soon, erp.pk: later}


def test_a_connections_inbox_shows_its_state_next_scan_and_newest_files():
    pos, other = kore("POS", "INT1"), kore("ERP", "INT2")
    at = timezone.now() + timedelta(minutes=5)
    Schedule.objects.create(name=scan_schedule_name(pos), func="impex.tasks.scan", next_run=at)
    state = ConnectionState.objects.create(connection=pos, last_scan_at=timezone.now(), last_scan_ok=True)
    start = timezone.now() - timedelta(hours=1)
    for n in range(3):
        InboxFile.objects.create(connection=pos, name=f"f{n}", first_seen=start + timedelta(minutes=n))
    InboxFile.objects.create(connection=other, name="theirs", first_seen=timezone.now())

    inbox = connection_inbox(connection=pos, limit=2)

    assert inbox.state == state
    assert inbox.next_scan_at == at
    assert [f.name for f in inbox.files] == ["f2", "f1"]
    bare = connection_inbox(connection=other, limit=2)
    assert (bare.state, bare.next_scan_at, [f.name for f in bare.files]) == (None, None, ["theirs"])


def test_a_jobs_row_errors_are_narrowed_by_file_column_and_text():
    job, other_job = ImportJob.objects.create(), ImportJob.objects.create()
    first = ImportFile.objects.create(job=job, name="a.csv")
    second = ImportFile.objects.create(job=job, name="b.csv")
    elsewhere = ImportFile.objects.create(job=other_job, name="c.csv")
    RowError.objects.create(file=second, row=2, column="email", value="x@", message="not an e-mail address")
    RowError.objects.create(file=first, row=5, column="birthday", value="31.02.", message="not a date")
    RowError.objects.create(file=first, row=3, column="email", value="bad", message="not an e-mail address")
    RowError.objects.create(file=elsewhere, row=1, column="email", value="y@", message="not an e-mail address")
    files = [first, second]

    def rows(**narrow):
        return [(e.file.name, e.row) for e in job_row_errors(files=files, **narrow)]

    assert rows() == [("a.csv", 3), ("a.csv", 5), ("b.csv", 2)]
    assert rows(file=str(second.pk)) == [("b.csv", 2)]
    assert rows(file="not a number") == rows()
    assert rows(column="email") == [("a.csv", 3), ("b.csv", 2)]
    assert rows(q="date") == [("a.csv", 5)]
    assert rows(q="31.02") == [("a.csv", 5)]
    assert rows(file=str(first.pk), column="email", q="bad") == [("a.csv", 3)]


def test_a_dry_runs_real_runs_oldest_first():
    dry, other_dry = ImportJob.objects.create(dry_run=True), ImportJob.objects.create(dry_run=True)
    first = ImportJob.objects.create(dry_run_of=dry)
    second = ImportJob.objects.create(dry_run_of=dry)
    ImportJob.objects.create(dry_run_of=other_dry)

    assert job_real_runs(job=dry) == [first, second]
    assert job_real_runs(job=first) == []


def test_an_export_groups_latest_runs_files_and_watermark():
    group = DataGroup.objects.create(code="out", name="Out", direction=GroupDirection.EXPORT)
    other = DataGroup.objects.create(code="other", name="Other", direction=GroupDirection.EXPORT)
    start = timezone.now() - timedelta(hours=1)
    runs = [
        ExportRun.objects.create(group=group, trigger=ExportTrigger.ADMIN, created_at=start + timedelta(minutes=n))
        for n in range(3)
    ]
    ExportRun.objects.create(group=other, trigger=ExportTrigger.ADMIN)
    for n, run in enumerate(runs):
        SentFile.objects.create(
            run=run, group=group, name=f"out_{n}.csv", location="/out", path=f"/out/out_{n}.csv",
            copy_path=f"sent/out_{n}.csv", sha256="0" * 64, sent_at=start + timedelta(minutes=n),
        )  # fmt: skip

    assert list(group_export_runs(group=group, limit=2)) == [runs[2], runs[1]]
    assert [f.name for f in group_sent_files(group=group, limit=2)] == ["out_2.csv", "out_1.csv"]
    assert group_export_state(group=group) is None
    assert group_export_state(group=DataGroup(code="new", name="New")) is None
    state = ExportState.objects.create(group=group, watermark=start, watermark_destination="/out")
    assert group_export_state(group=group) == state


def test_an_entitys_descriptors_built_in_first_then_by_precedence():
    late = DataDescriptor.objects.create(code="CUST_LATE", entity="customer", precedence=300)
    early = DataDescriptor.objects.create(code="CUST_EARLY", entity="customer", precedence=1)
    tie = DataDescriptor.objects.create(code="CUST_A", entity="customer", precedence=300)

    found = list(entity_descriptors(entity="customer"))

    assert {d.entity for d in found} == {"customer"}
    built_in = [d for d in found if d.builtin]
    assert found[: len(built_in)] == built_in
    assert found[len(built_in) :] == [early, tie, late]
    assert list(entity_descriptors(entity=None)) == []
