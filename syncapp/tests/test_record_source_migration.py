"""Migration syncapp 0003 gives records back the connection that created them where the import history tells it."""

import importlib
from datetime import timedelta

from django.apps import apps

from impex.models import Connection, ImportFile, ImportJob
from impex.tests.helpers import customer_row, run_import, write_kore
from syncapp.models import Customer

MIGRATION = importlib.import_module("syncapp.migrations.0003_record_source_from_import_history")


def test_a_source_overwritten_by_a_later_file_goes_back_to_the_creator_the_history_names(tmp_path, db):
    Connection.objects.create(code="pos", name="POS", convention="kore", integration_id="POS1")
    erp = Connection.objects.create(code="erp", name="ERP", convention="kore", integration_id="ERP1")
    rows = [customer_row("C1"), customer_row("C2")]
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows, mode="FULL", integration="POS1"))[0] == 0
    erp_rows = [customer_row("C2", accounting_id="A2"), customer_row("C9")]
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, erp_rows, integration="ERP1"))[0] == 0
    # What the upsert did before issue 16: the ERP's update took C2 over. C0 was created before any kept history.
    Customer.objects.filter(customer_id="C2").update(connection=erp)
    old = Customer.objects.create(customer_id="C0", email="c0@example.com", connection=erp)
    Customer.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(days=365))
    sheet = Customer.objects.create(customer_id="C5", email="c5@example.com")  # an admin's sheet: no source
    stamps = dict(Customer.objects.values_list("customer_id", "updated_at"))

    MIGRATION.restore_sources(apps, None)

    assert dict(Customer.objects.values_list("customer_id", "connection__code")) == {
        "C0": "erp",
        "C1": "pos",
        "C2": "pos",
        "C5": None,
        "C9": "erp",
    }
    assert dict(Customer.objects.values_list("customer_id", "updated_at")) == stamps
    assert Customer.objects.get(pk=sheet.pk).connection_id is None


def test_overlapping_imports_of_two_connections_name_no_creator():
    t = [0, 10, 20, 30, 40]

    spans = MIGRATION.single_owner_spans([(t[0], t[2], "pos"), (t[1], t[3], "erp"), (t[4], t[4] + 5, "pos")])

    assert spans == [(0, 10, "pos"), (20, 30, "erp"), (40, 45, "pos")]
    starts = [s[0] for s in spans]
    assert [MIGRATION.owner_at(spans, starts, x) for x in (5, 15, 25, 35, 42)] == ["pos", None, "erp", None, "pos"]


def test_a_record_whose_source_had_a_file_running_when_it_was_created_keeps_that_source(tmp_path, db):
    pos = Connection.objects.create(code="pos", name="POS", convention="kore", integration_id="POS1")
    erp = Connection.objects.create(code="erp", name="ERP", convention="kore", integration_id="ERP1")
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C7")], integration="POS1"))[0] == 0
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C8")], integration="ERP1"))[0] == 0
    pos_file, erp_file = ImportFile.objects.get(connection=pos), ImportFile.objects.get(connection=erp)
    # The POS job was killed midway: its file never reached "imported" nor finished; the ERP's file ran meanwhile.
    ImportFile.objects.filter(pk=pos_file.pk).update(status="running", finished_at=None)
    ImportJob.objects.filter(pk=pos_file.job_id).update(status="running", finished_at=None)
    ImportFile.objects.filter(pk=erp_file.pk).update(started_at=pos_file.started_at - timedelta(seconds=1))
    assert erp_file.finished_at > Customer.objects.get(customer_id="C7").created_at > pos_file.started_at

    MIGRATION.restore_sources(apps, None)

    assert dict(Customer.objects.values_list("customer_id", "connection__code")) == {"C7": "pos", "C8": "erp"}


def test_running_spans_tell_whether_a_connection_had_a_file_running():
    running = MIGRATION.running_spans([(0, 10, "pos"), (5, 20, "pos"), (30, None, "pos"), (12, 14, "erp")])

    assert [x for x in (0, 15, 20, 25, 30, 10**6) if MIGRATION.was_running(running, "pos", x)] == [0, 15, 20, 30, 10**6]
    assert [x for x in (11, 12, 14, 15) if MIGRATION.was_running(running, "erp", x)] == [12, 14]
    assert not MIGRATION.was_running(running, "web", 12)
