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
    InboxFile,
    SentFile,
)
from impex.selectors.pages import (
    connection_inbox,
    connections_next_scan,
    entity_descriptors,
    group_export_runs,
    group_export_state,
    group_sent_files,
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
