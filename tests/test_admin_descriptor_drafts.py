"""'New descriptor from a sample file': a sample read, its columns mapped by name, the descriptor saved and used."""

import codecs
import csv
import io

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from impex.models import DataDescriptor, DataGroup, ImportJob, RowError
from impex.services.descriptor_drafts import pattern_from_name
from impex.tasks import import_job_run
from syncapp.models import Customer
from tests.admin_helpers import admin_url, post_data, staff_user, table_snapshot
from tests.shop import SHOP_HEADER, SHOP_ROWS, shop_row

pytestmark = pytest.mark.django_db

FROM_SAMPLE = reverse("admin:impex_datadescriptor_from_sample")
SHOP_GUESSES = {"First Name": "first_name", "Last Name": "last_name", "Email": "email", "Company": "company_name"}


def shop_text(delimiter: str = ",", rows=SHOP_ROWS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(SHOP_HEADER)
    writer.writerows(rows)
    return buffer.getvalue()


def read_sample(client, **data):
    """Post step 1 (the sample) and return the response: step 2's page, or step 1 again with its errors."""
    return client.post(
        FROM_SAMPLE, {"step": "read", "entity": "customer", "format": "csv", "encoding": "utf-8", **data}
    )


def drafted(response) -> dict:
    """Step 2's columns as drafted: header -> (field, type, key, required)."""
    assert response.status_code == 200 and response.context["step"] == 2, response.context.get("sample").errors
    return {
        form["name"].value(): (
            form["field"].value(),
            form["type"].value(),
            bool(form["is_key"].value()),
            bool(form["required"].value()),
        )
        for form in response.context["columns"].forms
    }


def save_data(response, *, fields: dict | None = None, **changes) -> dict:
    """Step 2's POST data as the browser sends the drafted page; fields: header -> field chosen instead."""
    columns = response.context["columns"]
    data = {"step": "save", **post_data(response.context["draft"], columns.management_form, *columns.forms)}
    for n, form in enumerate(columns.forms):
        name = form["name"].value()
        if fields and name in fields:
            data[f"columns-{n}-field"], data[f"columns-{n}-type"] = fields[name]
    return {**data, **changes}


@pytest.fixture
def adder(client, django_user_model):
    """A staff user who may view and add descriptors (not change them), logged in."""
    user = staff_user(
        django_user_model, "adder", "impex.view_datadescriptor", "impex.add_datadescriptor", "impex.view_datagroup"
    )
    client.force_login(user)
    return user


def test_the_list_and_the_add_page_offer_a_descriptor_from_a_sample(client, adder):
    for url in (admin_url(DataDescriptor, "changelist"), admin_url(DataDescriptor, "add")):
        page = client.get(url)
        assert page.status_code == 200
        assert f'href="{FROM_SAMPLE}"' in page.text and "New descriptor from a sample file" in page.text
    step1 = client.get(FROM_SAMPLE)
    assert step1.status_code == 200 and step1.context["step"] == 1
    assert 'name="header"' in step1.text and 'name="file"' in step1.text and 'name="delimiter"' in step1.text


def test_a_pasted_shop_header_is_mapped_by_name_keyed_by_email_the_rest_ignored(client, adder):
    response = read_sample(client, header=shop_text())

    columns = drafted(response)
    assert list(columns) == SHOP_HEADER
    assert {name: c[0] for name, c in columns.items() if c[0]} == SHOP_GUESSES
    # The customer's key (customer_id) is absent: the e-mail, which the registry lets stand in for it, keys them.
    assert [name for name, c in columns.items() if c[2]] == ["Email"]
    assert columns["Email"] == ("email", "string", True, True)
    assert columns["Zip"] == ("", "string", False, False) and columns["Tax Exempt"][0] == ""
    draft = response.context["draft"]
    assert (draft["delimiter"].value(), draft["format"].value(), draft["booleans"].value()) == (",", "csv", "yes/no")
    assert draft["file_pattern"].value() == ""  # a pasted header has no file name to go by
    # The pasted rows show beside each column; the field of each is a list of the customer's fields.
    assert "<span>ann@example.com</span>" in response.text and "<span>Archer Ltd</span>" in response.text
    assert '<option value="payment_on_account">payment_on_account</option>' in response.text
    assert '<option value="">(ignore this column)</option>' in response.text
    assert "imported with this descriptor" in response.text  # what the file pattern does


def test_an_uploaded_sample_with_a_bom_and_semicolons_is_read_and_named(client, adder):
    content = codecs.BOM_UTF8 + shop_text(";").encode("utf-8")
    response = read_sample(client, file=SimpleUploadedFile("customers_export_1.csv", content))

    columns = drafted(response)
    assert list(columns) == SHOP_HEADER  # the byte-order mark is not part of the first header
    assert columns["First Name"][0] == "first_name"
    draft = response.context["draft"]
    assert draft["delimiter"].value() == ";"
    assert draft["file_pattern"].value() == "customers_export*.csv"
    assert "delimited by the semicolon" in response.text
    # "vip, newsletter" holds a comma: the semicolon still cuts every line into 19 cells.
    assert "<span>vip, newsletter</span>" in response.text


def test_a_tab_delimited_sample_makes_a_tsv_descriptor(client, adder):
    response = read_sample(client, header="customer_id\temail\tactive\nC1\ta@example.com\tY\n")

    columns = drafted(response)
    assert columns == {
        "customer_id": ("customer_id", "string", True, True),
        "email": ("email", "string", False, False),
        "active": ("active", "boolean", False, False),
    }
    draft = response.context["draft"]
    assert (draft["format"].value(), draft["booleans"].value()) == ("tsv", "Y/N")


def test_a_chosen_delimiter_overrides_the_one_found(client, adder):
    response = read_sample(client, header="a;b,c\n1;2,3\n", delimiter=";")

    assert list(drafted(response)) == ["a", "b,c"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Upload a sample file or paste its header line."),
        ({"header": "   \n"}, "Upload a sample file or paste its header line."),
        (
            {"file": SimpleUploadedFile("c.csv", "Prénom,Email\n".encode("latin-1"))},
            "The sample is not utf-8 text (byte 3 cannot be read): choose the encoding it was saved in.",
        ),
        (
            {"header": "a,b", "file": SimpleUploadedFile("c.csv", b"a,b\n")},
            "Upload a sample file or paste its header line, not both.",
        ),
        (
            {"header": "Email,First Name,\na@example.com,Ann,\n"},
            "Column 3 of the sample's header has no name (a delimiter at the end of the line, or two in a row?): a "
            "descriptor names each column. Remove the empty column from the sample, or name it.",
        ),
        (
            {"header": "Email;Tags;First Name;Tags"},
            "Columns 2 and 4 of the sample's header are both called 'Tags': a file's header names each column once.",
        ),
        (
            {"header": "Email," + "x" * 101},
            "Column 2 of the sample's header is 101 characters long: a column's name may have at most 100.",
        ),
    ],
    ids=["nothing", "blank", "not-utf-8", "both", "unnamed-column", "same-name-twice", "name-too-long"],
)
def test_an_unreadable_sample_is_said_so_on_step_one(client, adder, data, message):
    response = read_sample(client, **data)

    assert response.status_code == 200 and response.context["step"] == 1
    assert response.context["sample"].non_field_errors() == [message]
    assert message.replace("'", "&#x27;") in response.text


def test_a_latin_1_sample_is_read_in_its_encoding(client, adder):
    content = "Prénom,Email\nZoé,z@example.com\n".encode("latin-1")
    response = read_sample(client, file=SimpleUploadedFile("c.csv", content), encoding="latin-1")

    assert list(drafted(response)) == ["Prénom", "Email"]


def test_saving_creates_the_descriptor_with_its_columns_in_order_and_opens_it(client, adder):
    step2 = read_sample(client, file=SimpleUploadedFile("customers_export_1.csv", shop_text().encode()))
    data = save_data(step2, code="SHOP_CUSTOMERS", name="Shop customers")

    response = client.post(FROM_SAMPLE, data)

    descriptor = DataDescriptor.objects.get(code="SHOP_CUSTOMERS")
    assert response.status_code == 302
    assert response["Location"] == admin_url(DataDescriptor, "change", descriptor.pk)
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "SHOP_CUSTOMERS was created with 19 columns (15 ignored). "
        "Put it in an import group to import files whose names match its pattern."
    ]
    columns = list(descriptor.columns.order_by("position"))
    assert [(c.position, c.name) for c in columns] == list(enumerate(SHOP_HEADER, start=1))
    assert {c.name: c.field for c in columns if not c.ignored} == SHOP_GUESSES
    assert all(c.field == "" for c in columns if c.ignored)
    assert [(c.name, c.is_key, c.required) for c in columns if c.is_key] == [("Email", True, True)]
    assert (descriptor.entity, descriptor.format, descriptor.delimiter, descriptor.encoding) == (
        "customer",
        "csv",
        ",",
        "utf-8",
    )
    assert (descriptor.file_pattern, descriptor.true_words, descriptor.false_words, descriptor.convention) == (
        "customers_export*.csv",
        "yes",
        "no",
        "",
    )
    assert descriptor.has_header and not descriptor.builtin


def test_a_sample_of_250_columns_is_saved_whole(client, adder):
    header = [*SHOP_HEADER, *(f"Extra {n}" for n in range(1, 232))]
    step2 = read_sample(client, header=",".join(header))

    response = client.post(FROM_SAMPLE, save_data(step2, code="WIDE_CUSTOMERS", name="Wide", file_pattern="wide_*.csv"))

    assert response.status_code == 302, response.content[:300]
    assert DataDescriptor.objects.get(code="WIDE_CUSTOMERS").columns.count() == 250


def test_problems_are_shown_on_the_form_and_nothing_is_created(client, adder):
    step2 = read_sample(client, header=shop_text())
    data = save_data(
        step2,
        fields={"Company": ("email", "string"), "Zip": ("active", "date")},
        code="KS_CUSTOMERS",  # a built-in's code
        file_pattern="customers*.csv",
    )
    data.pop("columns-2-is_key")  # the e-mail column is no longer the key
    before = table_snapshot()

    response = client.post(FROM_SAMPLE, data)

    assert response.status_code == 200 and response.context["step"] == 2
    assert response.context["draft"].errors["code"] == ["Data descriptor with this Code already exists."]
    errors = [form.errors for form in response.context["columns"].forms]
    assert errors[3]["field"] == [
        "Two columns fill the field 'email' (rows 3 and 4): a field takes its value from one column; "
        "ignore the other column."
    ]
    assert errors[11]["type"] == ["A date column cannot fill 'active' (a yes/no field): use boolean."]
    assert response.context["draft"].non_field_errors() == [
        "No key column: tick 'is key' on the columns that fill customer_id "
        "(or by email, which then is the customer_id too)."
    ]
    assert "Please correct the errors below." in response.text
    # The page keeps what was chosen and the sample's values.
    assert response.context["columns"].forms[11]["field"].value() == "active"
    assert "<span>ann@example.com</span>" in response.text
    assert table_snapshot() == before


def test_a_field_the_entity_lacks_is_refused_naming_its_fields(client, adder):
    step2 = read_sample(client, header="Email,Nick\n")
    data = save_data(step2, fields={"Nick": ("nickname", "string")}, code="X", file_pattern="x*.csv")

    response = client.post(FROM_SAMPLE, data)

    message = response.context["columns"].forms[1].errors["field"][0]
    assert message.startswith("Customer has no field 'nickname'. Its fields: customer_id, email, first_name")
    assert not DataDescriptor.objects.filter(code="X").exists()


def test_without_the_add_permission_both_steps_are_refused_and_nothing_changes(client, django_user_model):
    viewer = staff_user(django_user_model, "viewer", "impex.view_datadescriptor", "impex.change_datadescriptor")
    client.force_login(viewer)
    assert "New descriptor from a sample file" not in client.get(admin_url(DataDescriptor, "changelist")).text
    before = table_snapshot()

    assert client.get(FROM_SAMPLE).status_code == 403
    assert read_sample(client, header=shop_text()).status_code == 403
    response = client.post(
        FROM_SAMPLE,
        {
            "step": "save",
            "code": "SNEAKY",
            "file_pattern": "x*.csv",
            "precedence": "100",
            "booleans": "yes/no",
            "entity": "customer",
            "format": "csv",
            "delimiter": ",",
            "encoding": "utf-8",
            "columns-TOTAL_FORMS": "1",
            "columns-INITIAL_FORMS": "0",
            "columns-0-name": "Email",
            "columns-0-field": "email",
            "columns-0-type": "string",
            "columns-0-is_key": "on",
        },
    )

    assert response.status_code == 403
    assert table_snapshot() == before


def test_a_post_without_the_csrf_token_is_refused(django_user_model):
    user = staff_user(django_user_model, "adder", "impex.view_datadescriptor", "impex.add_datadescriptor")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = read_sample(client, header=shop_text())

    assert response.status_code == 403 and "CSRF" in response.text


def test_an_anonymous_user_goes_to_the_login_page(client):
    response = read_sample(client, header=shop_text())

    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("customers_export_1.csv", "customers_export*.csv"),
        ("customers_export.csv", "customers_export.csv"),
        ("orders-2026-12-07.CSV", "orders*.CSV"),
        ("C:\\exports\\stock[eu] 12.tsv", "stock[[]eu]*.tsv"),
        ("README", "README"),
    ],
)
def test_the_file_pattern_is_the_sample_s_name_with_its_numbers_as_a_star(name, pattern):
    assert pattern_from_name(name) == pattern


def test_a_descriptor_made_from_a_sample_imports_the_shop_file_uploaded_to_its_group(client, django_user_model):
    admin = staff_user(
        django_user_model,
        "integrator",
        "impex.view_datadescriptor",
        "impex.add_datadescriptor",
        "impex.view_importjob",
        "impex.run_import",
    )
    client.force_login(admin)
    rows = [*SHOP_ROWS, shop_row("Eve", "Egg", "eve@example.com", marketing="yes")]
    rows[-1][-1] = "yes"  # Eve is tax exempt
    step2 = read_sample(client, file=SimpleUploadedFile("customers_export_7.csv", shop_text(rows=rows).encode()))
    # The tax-exempt column fills a yes/no field of the customer: chosen in its list, its type follows.
    data = save_data(step2, fields={"Tax Exempt": ("payment_on_account", "boolean")}, code="SHOP_CUSTOMERS")
    assert client.post(FROM_SAMPLE, data).status_code == 302
    descriptor = DataDescriptor.objects.get(code="SHOP_CUSTOMERS")
    group = DataGroup.objects.create(code="shop", name="Shop exports")
    group.descriptors.add(descriptor)

    upload = SimpleUploadedFile("customers_export_8.csv", shop_text(rows=rows).encode())
    response = client.post(reverse("admin:impex_importjob_upload"), {"group": group.pk, "file": upload})
    assert response.status_code == 302, response.text[:2000]
    job = ImportJob.objects.get()
    import_job_run(job.pk)

    job.refresh_from_db()
    data_file = job.files.get()
    assert (data_file.status, data_file.descriptor, data_file.created, data_file.failed) == (
        "imported",
        descriptor,
        4,
        2,
    )
    customers = {c.email: c for c in Customer.objects.all()}
    assert sorted(customers) == ["ann@example.com", "cy@example.com", "dee@example.com", "eve@example.com"]
    ann = customers["ann@example.com"]
    assert (ann.customer_id, ann.first_name, ann.last_name, ann.company_name) == (
        "ann@example.com",
        "Ann",
        "Archer",
        "Archer Ltd",
    )
    assert ann.payment_on_account is False and customers["eve@example.com"].payment_on_account is True
    # The ignored columns (address, phone, totals, tags, note...) are read past: nothing else is filled.
    assert (ann.group, ann.accounting_id, ann.price_list) == ("", "", "")
    assert sorted(RowError.objects.values_list("row", "message")) == [
        (3, "Email is the key: a value is required"),
        (5, "duplicate key ann@example.com in this file (first at row 2)"),
    ]
