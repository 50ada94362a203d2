"""Descriptors in the admin: columns checked with the descriptor on save, and "Try it on a sample" (nothing written)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from impex.models import DataDescriptor, DescriptorColumn, ImportFile, ImportJob
from impex.services.descriptors import descriptor_check
from syncapp.models import Customer
from tests.admin_helpers import admin_url, staff_user, table_snapshot
from tests.shop import SHOP_HEADER, SHOP_PATTERN, SHOP_ROWS, shop_columns, write_shop_file

pytestmark = pytest.mark.django_db

COLUMN_FLAGS = ("required", "is_key", "ignored")


def descriptor_form(columns: list[dict], **fields) -> dict:
    """The POST data of the descriptor add form with its inline column rows."""
    data = {
        "code": "SHOP_CUSTOMERS",
        "name": "Shop customers export",
        "entity": "customer",
        "convention": "",
        "format": "csv",
        "delimiter": ",",
        "encoding": "utf-8",
        "has_header": "on",
        "file_pattern": SHOP_PATTERN,
        "precedence": "10",
        "date_format": "",
        "datetime_format": "",
        "boolean_style": "true/false",
        "true_words": "yes",
        "false_words": "no",
        "xml_root": "records",
        "xml_record": "record",
        "columns-TOTAL_FORMS": str(len(columns)),
        "columns-INITIAL_FORMS": "0",
        "columns-MIN_NUM_FORMS": "0",
        "columns-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for n, column in enumerate(columns):
        for key, value in column.items():
            if key in COLUMN_FLAGS:
                if value:
                    data[f"columns-{n}-{key}"] = "on"
            else:
                data[f"columns-{n}-{key}"] = str(value)
        data.setdefault(f"columns-{n}-type", "string")
        data.setdefault(f"columns-{n}-choices", "")
    return data


def column(position, name, field, **options) -> dict:
    return {"position": position, "name": name, "field": field, "type": "string", **options}


def customer_columns(*extra) -> list[dict]:
    return [column(1, "id", "customer_id", is_key=True, required=True), column(2, "mail", "email"), *extra]


def post_add(client, data):
    return client.post(admin_url(DataDescriptor, "add"), data)


def inline_errors(response) -> list[dict]:
    formset = response.context["inline_admin_formsets"][0].formset
    return [form.errors for form in formset.forms]


def general_errors(response) -> list[str]:
    return list(response.context["inline_admin_formsets"][0].formset.non_form_errors())


# -- the 19-column shop descriptor, made in the browser's form --------------------------------------------------


def test_the_shop_descriptor_is_made_by_posting_the_add_form_with_its_columns(admin_client):
    response = post_add(admin_client, descriptor_form(shop_columns()))

    assert response.status_code == 302, inline_errors(response) if response.context else response
    descriptor = DataDescriptor.objects.get(code="SHOP_CUSTOMERS")
    columns = list(descriptor.columns.order_by("position"))
    assert [c.name for c in columns] == SHOP_HEADER
    assert [c.name for c in columns if not c.ignored] == ["First Name", "Last Name", "Email", "Company"]
    assert [(c.name, c.field) for c in columns if c.is_key] == [("Email", "email")]
    assert (descriptor.true_words, descriptor.false_words, descriptor.convention) == ("yes", "no", "")


def test_the_change_page_links_to_try_it_on_a_sample(admin_client):
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    response = admin_client.get(admin_url(DataDescriptor, "change", descriptor.pk))
    sample_url = reverse("admin:impex_datadescriptor_sample", args=[descriptor.pk])
    assert f'href="{sample_url}"' in response.text
    assert "Try it on a sample" in response.text
    assert 'name="columns-0-ignored"' in response.text
    assert 'name="true_words"' in response.text


# -- the checks on save, each with its message ------------------------------------------------------------------


def test_an_unknown_field_is_refused_on_its_row_naming_the_fields_the_entity_has(admin_client):
    response = post_add(admin_client, descriptor_form(customer_columns(column(3, "nick", "nickname"))))

    assert response.status_code == 200
    message = inline_errors(response)[2]["field"][0]
    assert message.startswith("Customer has no field 'nickname'. Its fields: customer_id, email, first_name")
    assert "parent" in message and "connection" not in message
    assert not DataDescriptor.objects.filter(code="SHOP_CUSTOMERS").exists()


def test_two_columns_on_one_field_are_refused(admin_client):
    response = post_add(admin_client, descriptor_form(customer_columns(column(3, "e-mail", "email"))))

    assert inline_errors(response)[2]["field"] == [
        "Two columns fill the field 'email' (rows 2 and 3): a field takes its value from one column; "
        "tick 'ignored' on the other."
    ]
    assert not DescriptorColumn.objects.filter(descriptor__code="SHOP_CUSTOMERS").exists()


def test_two_columns_with_one_name_are_refused(admin_client):
    response = post_add(admin_client, descriptor_form(customer_columns(column(3, "mail", "first_name"))))

    assert inline_errors(response)[2]["name"] == [
        "Two columns are called 'mail' (rows 2 and 3): a file's header names each column once."
    ]


def test_no_key_column_is_refused_saying_what_the_key_is(admin_client):
    columns = [column(1, "id", "customer_id"), column(2, "mail", "email")]
    response = post_add(admin_client, descriptor_form(columns))

    assert general_errors(response) == [
        "No key column: tick 'is key' on the columns that fill customer_id "
        "(or by email, which then is the customer_id too)."
    ]
    assert not DataDescriptor.objects.filter(code="SHOP_CUSTOMERS").exists()


def test_a_key_on_a_field_that_cannot_key_the_entity_is_refused(admin_client):
    columns = [column(1, "id", "customer_id"), column(2, "name", "first_name", is_key=True)]
    response = post_add(admin_client, descriptor_form(columns))

    assert general_errors(response) == [
        "The key columns fill first_name, but a customer is keyed by customer_id "
        "(or by email, which then is the customer_id too)."
    ]


@pytest.mark.parametrize(
    ("field", "kind", "message"),
    [
        ("first_name", "boolean", "A yes/no column cannot fill 'first_name' (a text field): use string or choice."),
        ("active", "string", "A text column cannot fill 'active' (a yes/no field): use boolean."),
        ("discount_percentage", "integer", "A whole number column cannot fill 'discount_percentage' "),
        ("parent", "string", "A text column cannot fill 'parent' (a reference to a customer): use reference."),
        ("email", "reference", "A reference column cannot fill 'email' (a text field): use string or choice."),
    ],
)
def test_a_type_that_does_not_fit_the_field_is_refused(admin_client, field, kind, message):
    response = post_add(admin_client, descriptor_form(customer_columns(column(3, "x", field, type=kind))))

    assert inline_errors(response)[2]["type"][0].startswith(message)


def test_a_choice_column_needs_its_choices_when_the_field_has_none(admin_client):
    response = post_add(admin_client, descriptor_form(customer_columns(column(3, "grp", "group", type="choice"))))

    assert inline_errors(response)[2]["choices"] == [
        "List the allowed values (comma separated): the field 'group' has no choices of its own."
    ]
    fixed = customer_columns(column(3, "grp", "group", type="choice", choices="A,B"))
    assert post_add(admin_client, descriptor_form(fixed)).status_code == 302


def test_a_column_needs_a_field_unless_it_is_ignored(admin_client):
    response = post_add(admin_client, descriptor_form(customer_columns(column(3, "City", ""))))

    assert inline_errors(response)[2]["field"][0].startswith("Name the field this column fills (customer fields: ")
    ignored = post_add(admin_client, descriptor_form(customer_columns(column(3, "City", "", ignored=True))))
    assert ignored.status_code == 302


def test_an_ignored_column_fills_no_field_and_is_no_key(admin_client):
    bad = column(3, "City", "group", ignored=True, is_key=True)
    errors = inline_errors(post_add(admin_client, descriptor_form(customer_columns(bad))))[2]

    assert errors["field"] == ["An ignored column fills no field: clear the field, or untick 'ignored' to import it."]
    assert errors["ignored"] == ["An ignored column is read past: it cannot be a key or required."]


def test_boolean_words_come_in_pairs_and_mean_one_thing(admin_client):
    one_sided = post_add(admin_client, descriptor_form(customer_columns(), false_words=""))
    assert one_sided.context["adminform"].form.errors["false_words"] == [
        "Give the words for false too (e.g. yes and no), or leave both empty to use the boolean style."
    ]
    both = post_add(admin_client, descriptor_form(customer_columns(), true_words="yes, Y", false_words="no, y"))
    assert both.context["adminform"].form.errors["false_words"] == [
        "'y' cannot mean both true and false: remove it from one of the lists."
    ]
    assert not DataDescriptor.objects.filter(code="SHOP_CUSTOMERS").exists()


def test_a_change_that_breaks_a_saved_descriptor_is_refused_and_changes_nothing(admin_client):
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    page = admin_client.get(admin_url(DataDescriptor, "change", descriptor.pk))
    formset = page.context["inline_admin_formsets"][0].formset
    data = {
        **{k: v for k, v in descriptor_form([]).items() if not k.startswith("columns-")},
        "code": "KS_CUSTOMERS",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "file_pattern": descriptor.file_pattern,
        "true_words": "",
        "false_words": "",
        "columns-TOTAL_FORMS": str(len(formset.forms)),
        "columns-INITIAL_FORMS": str(len(formset.forms)),
        "columns-MIN_NUM_FORMS": "0",
        "columns-MAX_NUM_FORMS": "1000",
    }
    for n, form in enumerate(formset.forms):
        col = form.instance
        data[f"columns-{n}-id"] = str(col.pk)
        data[f"columns-{n}-descriptor"] = str(descriptor.pk)
        values = {"position": col.position, "name": col.name, "field": col.field, "type": col.type}
        values["choices"] = col.choices
        for key, value in values.items():
            data[f"columns-{n}-{key}"] = str(value)
        for flag in COLUMN_FLAGS:
            if getattr(col, flag):
                data[f"columns-{n}-{flag}"] = "on"
    key_row = next(n for n, form in enumerate(formset.forms) if form.instance.is_key)
    data.pop(f"columns-{key_row}-is_key")
    before = table_snapshot()

    response = admin_client.post(admin_url(DataDescriptor, "change", descriptor.pk), data)

    assert response.status_code == 200
    assert general_errors(response)[0].startswith("No key column")
    assert table_snapshot() == before
    data[f"columns-{key_row}-is_key"] = "on"
    assert admin_client.post(admin_url(DataDescriptor, "change", descriptor.pk), data).status_code == 302


def test_every_built_in_descriptor_keeps_the_rules():
    for descriptor in DataDescriptor.objects.filter(builtin=True):
        assert descriptor_check(descriptor=descriptor, columns=list(descriptor.columns.all())) == [], descriptor.code


# -- try it on a sample -----------------------------------------------------------------------------------------


@pytest.fixture
def shop_descriptor(admin_client):
    assert post_add(admin_client, descriptor_form(shop_columns())).status_code == 302
    return DataDescriptor.objects.get(code="SHOP_CUSTOMERS")


def sample_url(descriptor):
    return reverse("admin:impex_datadescriptor_sample", args=[descriptor.pk])


def upload(path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes(), content_type="text/csv")


def cache_files(settings):
    return [p for p in settings.IMPEX_CACHE_DIR.rglob("*") if p.is_file()] if settings.IMPEX_CACHE_DIR.exists() else []


def test_a_sample_shows_its_rows_as_the_descriptor_reads_them_and_writes_nothing(
    admin_client, shop_descriptor, tmp_path, settings
):
    before = table_snapshot()
    response = admin_client.post(sample_url(shop_descriptor), {"file": upload(write_shop_file(tmp_path))})

    assert response.status_code == 200
    sample = response.context["sample"]
    assert sample.problem == ""
    assert sample.header == SHOP_HEADER
    assert sample.notes["Email"] == "email" and sample.notes["City"] == "ignored"
    assert [row.row for row in sample.rows] == [2, 3, 4, 5, 6]
    assert [cell.text for cell in sample.rows[0].cells[:4]] == ["Ann", "Archer", "ann@example.com", "Archer Ltd"]
    assert len(sample.rows[0].cells) == 4 and sample.ignored == SHOP_HEADER[4:]
    assert sample.rows[1].cells[2].error == "Email is the key: a value is required"
    assert sample.rows[3].problems == ["duplicate key ann@example.com in this file (first at row 2)"]
    assert [row.refused for row in sample.rows] == [False, True, False, True, False]
    assert "5 rows: 2 would be refused" in " ".join(response.text.split())
    assert "Dunn &amp; Co" in response.text
    assert table_snapshot() == before
    assert not ImportJob.objects.exists() and not ImportFile.objects.exists() and not Customer.objects.exists()
    assert cache_files(settings) == []


def test_a_sample_with_an_unknown_column_says_so_and_reads_no_rows(admin_client, shop_descriptor, tmp_path):
    path = tmp_path / "customers_export.csv"
    path.write_text("Email,Fax\nann@example.com,123\n", encoding="utf-8")

    response = admin_client.post(sample_url(shop_descriptor), {"file": upload(path)})

    sample = response.context["sample"]
    assert sample.problem.startswith("The file would be rejected: unknown column 'Fax' (descriptor SHOP_CUSTOMERS has:")
    assert sample.notes == {"Email": "email", "Fax": "unknown"}
    assert sample.rows == []
    assert 'id="sample-problem"' in response.text


def test_a_sample_reads_the_errors_column_of_a_rejected_rows_file_past(admin_client, shop_descriptor, tmp_path):
    rows = [[*row, "Email: a value is required"] for row in SHOP_ROWS[:1]]
    path = write_shop_file(tmp_path, "customers_export_fixed.csv", rows, header=[*SHOP_HEADER, "errors"])

    sample = admin_client.post(sample_url(shop_descriptor), {"file": upload(path)}).context["sample"]

    assert sample.problem == ""
    assert sample.notes["errors"] == "ignored"
    assert not sample.rows[0].refused


def test_a_sample_over_the_size_limit_gets_a_form_error(admin_client, shop_descriptor, tmp_path, settings):
    settings.IMPEX_SAMPLE_MAX_BYTES = 100
    response = admin_client.post(sample_url(shop_descriptor), {"file": upload(write_shop_file(tmp_path))})

    assert response.status_code == 200
    assert response.context["form"].errors["file"][0].startswith("The file is ")
    assert "a sample may be up to 100" in response.context["form"].errors["file"][0]
    assert response.context["sample"] is None


def test_a_sample_of_a_bad_file_says_why_it_would_be_rejected(admin_client, shop_descriptor, tmp_path):
    path = tmp_path / "customers_export.csv"
    path.write_bytes(",".join(SHOP_HEADER).encode() + b"\nAnn,\xff\n")

    sample = admin_client.post(sample_url(shop_descriptor), {"file": upload(path)}).context["sample"]

    offset = len(",".join(SHOP_HEADER)) + len("\nAnn,")
    assert (
        sample.problem
        == f"The file would be rejected: not valid UTF-8 at byte {offset} (line 2): save the file as UTF-8"
    )


def test_trying_a_sample_needs_the_descriptor_change_permission(client, django_user_model, shop_descriptor, tmp_path):
    viewer = staff_user(django_user_model, "viewer", "impex.view_datadescriptor", "impex.run_import")
    client.force_login(viewer)
    change_page = client.get(admin_url(DataDescriptor, "change", shop_descriptor.pk))
    assert change_page.status_code == 200 and "Try it on a sample" not in change_page.text
    before = table_snapshot()

    assert client.get(sample_url(shop_descriptor)).status_code == 403
    response = client.post(sample_url(shop_descriptor), {"file": upload(write_shop_file(tmp_path))})

    assert response.status_code == 403
    assert table_snapshot() == before
    editor = staff_user(django_user_model, "editor", "impex.view_datadescriptor", "impex.change_datadescriptor")
    client.force_login(editor)
    assert client.get(sample_url(shop_descriptor)).status_code == 200


def test_an_anonymous_sample_post_goes_to_the_login_page(client, shop_descriptor, tmp_path):
    response = client.post(sample_url(shop_descriptor), {"file": upload(write_shop_file(tmp_path))})

    assert response.status_code == 302 and "/login/" in response["Location"]
