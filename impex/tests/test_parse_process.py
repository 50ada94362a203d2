"""Big files are read and converted in a forked process: the result is the same as reading them inline."""

import multiprocessing

import pytest

from impex.models import ImportFile, RowError
from impex.runner import run_job
from impex.services.jobs import job_create
from syncapp.models import Customer

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="the parse process needs the fork start method"
)


def customers_file(folder, *, mode="NET"):
    """A file with good rows, bad cells, a duplicate key in a later batch and parents further down."""
    rows = ["customer_id\temail\tdiscount_percentage\tparent_customer_id\tactive"]
    for n in range(60):
        parent = f"C{n + 7:03d}" if n % 10 == 3 and n + 7 < 60 else ""
        rows.append(f"C{n:03d}\tc{n}@example.com\t{n % 30}.5\t{parent}\ttrue")
    rows.append("C010\tagain@example.com\t1\t\ttrue")  # duplicate of an earlier batch's key
    rows.append("C900\t\t1\t\ttrue")  # missing e-mail
    rows.append("C901\tx@example.com\t12,5\t\tmaybe")  # two bad cells
    rows.append("C902\ty@example.com\t1\tNOBODY\ttrue")  # parent that never comes
    path = folder / f"ERP_0000001_INT1_KS_CUSTOMERS.{mode}"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def outcome(job):
    f = ImportFile.objects.get(job=job)
    errors = sorted(RowError.objects.filter(file=f).values_list("row", "column", "message"))
    data = sorted(Customer.objects.values_list("customer_id", "email", "discount_percentage", "parent__customer_id"))
    return f.status, (f.created, f.updated, f.unchanged, f.retired, f.failed), errors, data


@pytest.mark.parametrize("mode", ["NET", "FULL"])
def test_a_file_read_in_the_parse_process_imports_exactly_as_inline(tmp_path, kore_connection, settings, mode):
    settings.IMPEX_BATCH_SIZE = 7
    settings.IMPEX_CHUNK_ROWS = 20

    settings.IMPEX_PARSE_PROCESS_MIN_ROWS = 10**18
    inline = outcome(run_job(job_create(paths=[customers_file(tmp_path, mode=mode)], connection=kore_connection).pk))
    Customer.objects.update(parent=None)
    Customer.objects.all().delete()
    ImportFile.objects.all().delete()
    kore_connection.imported_names.all().delete()
    kore_connection.next_expected_sequence = None
    kore_connection.save()

    settings.IMPEX_PARSE_PROCESS_MIN_ROWS = 1
    forked = outcome(run_job(job_create(paths=[customers_file(tmp_path, mode=mode)], connection=kore_connection).pk))

    assert forked == inline
    status, counts, errors, data = forked
    assert status == "imported"
    assert counts[0] == 60 and counts[4] == 4
    assert [e[:2] for e in errors] == [
        (62, "customer_id"),
        (63, "email"),
        (64, "active"),
        (64, "discount_percentage"),
        (65, "parent_customer_id"),
    ]
    assert ("C003", "c3@example.com", pytest.approx(3.5), "C010") in [
        (c, e, float(d), p) for c, e, d, p in data if c == "C003"
    ]
