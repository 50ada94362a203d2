"""WriteBatch builds a statement's SQL once per shape and reuses it: what it writes is what the ORM would (issue 18)."""

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from impex.models import ImportFile, ImportJob
from impex.services.sql import Plus, WriteBatch, statement_shapes

pytestmark = pytest.mark.django_db


@pytest.fixture
def files(kore_connection):
    job = ImportJob.objects.create(connection=kore_connection)
    return [
        ImportFile.objects.create(job=job, connection=kore_connection, name=f"F{n}", message="first") for n in range(3)
    ]


def test_a_shape_built_once_writes_each_calls_own_values(files):
    later = timezone.now() + timedelta(hours=1)
    counts = []
    for n, f in enumerate(files):
        with WriteBatch() as batch:
            batch.update_where(
                ImportFile,
                {"pk": f.pk, "status": "queued"},
                {"message": f"m{n}", "header": ["a", n], "rows_total": Plus(n + 1), "finished_at": later},
                then=counts.append,
            )
    assert counts == [1, 1, 1]
    rows = ImportFile.objects.filter(pk__in=[f.pk for f in files]).order_by("pk")
    assert [(r.message, r.header, r.rows_total, r.finished_at) for r in rows] == [
        (f"m{n}", ["a", n], n + 1, later) for n in range(3)
    ]
    shapes = [sql for key, sql in statement_shapes().items() if key[2] == "impex.ImportFile"]
    assert shapes and False not in shapes  # built by the ORM once, then reused


def test_a_null_in_where_or_values_is_its_own_shape(files):
    first, second, _ = files
    ImportFile.objects.filter(pk=first.pk).update(finished_at=timezone.now())
    with WriteBatch() as batch:
        batch.update_where(ImportFile, {"pk": first.pk}, {"finished_at": None})
        batch.update_where(ImportFile, {"pk": second.pk, "finished_at": None}, {"message": "no end yet"})
    assert ImportFile.objects.get(pk=first.pk).finished_at is None
    assert ImportFile.objects.get(pk=second.pk).message == "no end yet"


def test_an_expression_or_a_model_instance_in_where_is_built_by_the_orm(files, kore_connection):
    first, second, _ = files
    with WriteBatch() as batch:  # the shape {pk, name} is known with plain values first
        batch.update_where(ImportFile, {"pk": first.pk, "name": "F0"}, {"message": "plain"})
    counts = []
    with WriteBatch() as batch:
        batch.update_where(ImportFile, {"pk": first.pk, "name": F("name")}, {"message": "F"}, then=counts.append)
        batch.update_where(ImportFile, {"pk": second.pk, "connection": kore_connection}, {"message": "instance"})
    assert counts == [1]
    assert ImportFile.objects.get(pk=first.pk).message == "F"
    assert ImportFile.objects.get(pk=second.pk).message == "instance"


def test_a_plus_goes_to_the_orm_with_an_instance_in_where(files, kore_connection):
    first = files[0]
    with WriteBatch() as batch:
        batch.update_where(ImportFile, {"pk": first.pk, "connection": kore_connection}, {"rows_total": Plus(2)})
        batch.update_where(ImportFile, {"pk": first.pk}, {"rows_done": Plus(1), "message": F("name")})
    first.refresh_from_db()
    assert (first.rows_total, first.rows_done, first.message) == (2, 1, "F0")
