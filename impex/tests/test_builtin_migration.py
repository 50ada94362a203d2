"""Migration impex 0002 (with the columns later migrations add) installs a frozen copy of the built-ins that agrees
with impex.builtin, and never overwrites."""

import importlib

import pytest
from django.apps import apps

from impex.builtin import (
    BSPK_DESCRIPTORS,
    EXPORT_DESCRIPTORS,
    EXPORT_GROUPS,
    GROUPS,
    KORE_DESCRIPTORS,
    column_names,
    install_builtin,
)
from impex.models import DataDescriptor, DataGroup, DescriptorColumn

MIGRATION = importlib.import_module("impex.migrations.0002_builtin_descriptors")
EXPORT_MIGRATION = importlib.import_module("impex.migrations.0010_order_status_export")
STATUS_MIGRATION = importlib.import_module("impex.migrations.0019_ks_orders_status_column")
# Columns added to built-in descriptors by later migrations, after those of 0002.
ADDED_COLUMNS = {"KS_ORDERS": [tuple(STATUS_MIGRATION.STATUS.values())]}
SKIPPED_FIELDS = {"id", "created_at", "updated_at"}


def install_from_migration():
    """Run the migrations' install functions over the current database."""
    MIGRATION.forwards(apps, None)
    EXPORT_MIGRATION.forwards(apps, None)
    STATUS_MIGRATION.forwards(apps, None)


def built_ins():
    """Every descriptor with its fields and columns, and every group with its members, as plain data."""
    fields = [f.name for f in DataDescriptor._meta.concrete_fields if f.name not in SKIPPED_FIELDS]
    descriptors = {d["code"]: d for d in DataDescriptor.objects.values(*fields)}
    for code, descriptor in descriptors.items():
        descriptor["columns"] = list(
            DescriptorColumn.objects.filter(descriptor__code=code)
            .order_by("position")
            .values_list("position", "name", "field", "type", "required", "is_key", "choices")
        )
    groups = {
        g.code: (g.name, g.direction, sorted(g.descriptors.values_list("code", flat=True)))
        for g in DataGroup.objects.all()
    }
    return descriptors, groups


def clear():
    """Delete every descriptor and group (columns go with their descriptors)."""
    DataGroup.objects.all().delete()
    DataDescriptor.objects.all().delete()


def test_frozen_data_lists_the_same_descriptors_columns_and_groups_as_impex_builtin():
    live = {d["code"]: d for d in BSPK_DESCRIPTORS + KORE_DESCRIPTORS}

    frozen = {d["code"]: d for d in MIGRATION.DESCRIPTORS}

    assert list(frozen) == list(live)
    for code, spec in frozen.items():
        assert (spec["name"], spec["entity"], spec["precedence"]) == (
            live[code]["name"],
            live[code]["entity"],
            live[code]["precedence"],
        ), code
        columns = spec["columns"] + ADDED_COLUMNS.get(code, [])
        assert columns == live[code]["columns"], code
        assert tuple(column[0] for column in columns) == column_names(code)
    assert [(g["code"], g["name"], g["descriptors"]) for g in MIGRATION.GROUPS] == [
        (g["code"], g["name"], g["descriptors"]) for g in GROUPS
    ]


@pytest.mark.django_db
def test_migration_installs_what_impex_builtin_installs():
    clear()
    install_from_migration()
    from_migration = built_ins()
    clear()

    install_builtin(apps)

    assert built_ins() == from_migration
    assert len(from_migration[0]) == 11
    assert set(from_migration[1]) == {"bspk-special-orders", "kore-inbound", "order-status"}


@pytest.mark.django_db
def test_installing_again_keeps_admin_edits_and_creates_only_what_is_missing():
    customers = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    customers.columns.filter(name="email").update(name="e_mail")
    customers.name = "Customers (edited)"
    customers.delimiter = ";"
    customers.save()
    customers.columns.filter(name="active").delete()
    kore = DataGroup.objects.get(code="kore-inbound")
    kore.descriptors.remove(DataDescriptor.objects.get(code="KS_PRICES"))
    kore.name = "Kore (edited)"
    kore.save()
    DataDescriptor.objects.filter(code="KS_SHIPMENTS").delete()
    before = built_ins()

    install_from_migration()

    descriptors, groups = built_ins()
    assert {code: d for code, d in descriptors.items() if code != "KS_SHIPMENTS"} == before[0]
    assert descriptors["KS_CUSTOMERS"]["name"] == "Customers (edited)"
    assert [c[1] for c in descriptors["KS_CUSTOMERS"]["columns"]] == [
        name.replace("email", "e_mail") for name in column_names("KS_CUSTOMERS") if name != "active"
    ]
    assert [c[1] for c in descriptors["KS_SHIPMENTS"]["columns"]] == list(column_names("KS_SHIPMENTS"))
    assert groups["kore-inbound"][0] == "Kore (edited)"
    assert "KS_PRICES" not in groups["kore-inbound"][2]
    assert "KS_SHIPMENTS" in groups["kore-inbound"][2]
    assert groups["bspk-special-orders"] == before[1]["bspk-special-orders"]


def test_export_migration_holds_the_same_order_status_layout_and_group_as_impex_builtin():
    (live,) = EXPORT_DESCRIPTORS
    frozen = EXPORT_MIGRATION.ORDER_STATUS

    assert (frozen["code"], frozen["name"], frozen["entity"], frozen["precedence"]) == (
        live["code"],
        live["name"],
        live["entity"],
        live["precedence"],
    )
    assert frozen["columns"] == live["columns"]
    assert frozen["export_only"] is True
    assert [(EXPORT_MIGRATION.GROUP["code"], EXPORT_MIGRATION.GROUP["name"])] == [
        (g["code"], g["name"]) for g in EXPORT_GROUPS
    ]
