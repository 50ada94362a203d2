"""The rules a data descriptor must keep to read and write files: one book for the admin, the engine and migrations."""

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from impex.choices import ColumnType
from impex.entities import EntitySpec, entity_spec
from impex.exceptions import FileRejected

# Fields the engine fills itself: a column may not fill them.
ENGINE_FIELDS = frozenset({"connection", "created_at", "updated_at"})
# The column a "download rejected rows" file adds: read past on import unless a descriptor declares it.
ERRORS_COLUMN = "errors"

_TYPE_NAMES = {
    ColumnType.STRING: "text",
    ColumnType.INTEGER: "whole number",
    ColumnType.DECIMAL: "decimal number",
    ColumnType.BOOLEAN: "yes/no",
    ColumnType.DATE: "date",
    ColumnType.DATETIME: "date-time",
    ColumnType.CHOICE: "choice",
    ColumnType.REFERENCE: "reference",
}


@dataclass(frozen=True)
class DescriptorProblem:
    """One thing wrong with a descriptor: its message, and where it is (a column's index and attribute, or a field)."""

    message: str
    column: int | None = None  # index in the columns checked; None for the descriptor or the columns as a whole
    attr: str = ""  # the column's attribute (name, field, type, ...) or the descriptor's field (true_words, ...)


def split_words(text: str) -> list[str]:
    """Return the comma-separated words of a true_words or false_words setting."""
    return [word.strip() for word in text.split(",") if word.strip()]


def boolean_words(descriptor) -> tuple[list[str], list[str]] | None:
    """Return a descriptor's own true and false words, or None when its boolean style applies."""
    true_words, false_words = split_words(descriptor.true_words), split_words(descriptor.false_words)
    if true_words and false_words:
        return true_words, false_words
    return None


def entity_fields(spec: EntitySpec, *, export_only: bool = False) -> list[str]:
    """Return the fields of an entity that a column may fill (or, export only, write), in the model's order."""
    barred = set() if export_only else {*ENGINE_FIELDS, *spec.hub_fields}
    return [
        f.name
        for f in spec.model._meta.concrete_fields
        if not f.primary_key and f.name not in barred and not f.name.endswith("_ptr")
    ]


def model_field_of(spec: EntitySpec, path: str, *, export_only: bool = False) -> models.Field:
    """Return the model field a column's field names ("title", or "product.title" of a record it names).

    Fields the engine or the hub sets (updated_at, an order's state) are a column's only in an export-only layout.
    """
    model = spec.model
    parent, dot, name = path.partition(".")
    if dot:
        relation = model._meta.get_field(parent)
        if not relation.many_to_one:
            raise FieldDoesNotExist(parent)
        model = relation.related_model
    else:
        name = parent
    field = model._meta.get_field(name)
    if not field.concrete or field.primary_key:
        raise FieldDoesNotExist(name)
    if not export_only and (field.name in ENGINE_FIELDS or (not dot and field.name in spec.hub_fields)):
        raise FieldDoesNotExist(name)
    return field


def type_fits(kind: str, field: models.Field) -> bool:
    """Tell whether a column type can fill a model field."""
    if kind == ColumnType.REFERENCE:
        return field.many_to_one is True
    if field.is_relation:
        return False
    if kind == ColumnType.STRING:
        return isinstance(field, models.CharField | models.TextField) and not field.choices
    if kind == ColumnType.CHOICE:
        return isinstance(field, models.CharField | models.TextField)
    if kind == ColumnType.INTEGER:
        return isinstance(field, models.IntegerField)
    if kind == ColumnType.DECIMAL:
        return isinstance(field, models.DecimalField)
    if kind == ColumnType.BOOLEAN:
        return isinstance(field, models.BooleanField)
    if kind == ColumnType.DATETIME:
        return isinstance(field, models.DateTimeField)
    if kind == ColumnType.DATE:
        return isinstance(field, models.DateField) and not isinstance(field, models.DateTimeField)
    return False


def fitting_types(field: models.Field) -> list[str]:
    """Return the column types that can fill a model field."""
    return [kind for kind in ColumnType.values if type_fits(kind, field)]


def key_alias_field(spec: EntitySpec, key_fields: set[str], filled: set[str]) -> str | None:
    """Return the entity's key field that a key column filling another field (a customer's email) stands in for."""
    if len(spec.key_fields) != 1 or len(key_fields) != 1:
        return None
    (alias,) = key_fields
    target = spec.key_aliases.get(alias)
    if target is None or target != spec.key_fields[0] or target in filled:
        return None
    return target


def descriptor_check(*, descriptor, columns: Sequence) -> list[DescriptorProblem]:
    """Check a descriptor and its columns (saved or not); return every problem found, none if it can work."""
    problems = _word_problems(descriptor)
    try:
        spec = entity_spec(descriptor.entity)
    except KeyError:
        return [*problems, DescriptorProblem(f"Unknown entity '{descriptor.entity}'.", attr="entity")]
    export_only = bool(getattr(descriptor, "export_only", False))
    fields = entity_fields(spec, export_only=export_only)
    names: dict[str, int] = {}
    filled: dict[str, int] = {}
    key_fields: dict[str, int] = {}
    for index, column in enumerate(columns):
        problems += _column_problems(spec, column, index=index, fields=fields, export_only=export_only)
        name = column.name.strip()
        if name in names:
            problems.append(
                DescriptorProblem(
                    f"Two columns are called '{name}' (rows {names[name] + 1} and {index + 1}): "
                    "a file's header names each column once.",
                    column=index,
                    attr="name",
                )
            )
        names.setdefault(name, index)
        if column.ignored or not column.field:
            continue
        if column.field in filled:
            problems.append(
                DescriptorProblem(
                    f"Two columns fill the field '{column.field}' (rows {filled[column.field] + 1} and {index + 1}): "
                    "a field takes its value from one column; ignore the other column.",
                    column=index,
                    attr="field",
                )
            )
        filled.setdefault(column.field, index)
        if column.is_key:
            key_fields.setdefault(column.field, index)
    problems += _key_problems(spec, set(key_fields), set(filled))
    return problems


def _word_problems(descriptor) -> list[DescriptorProblem]:
    """Check the descriptor's own boolean words: both sets or neither, and no word in both."""
    true_words, false_words = split_words(descriptor.true_words), split_words(descriptor.false_words)
    if bool(true_words) != bool(false_words):
        missing = "false_words" if true_words else "true_words"
        return [
            DescriptorProblem(
                f"Give the words for {'false' if true_words else 'true'} too (e.g. yes and no), "
                "or leave both empty to use the boolean style.",
                attr=missing,
            )
        ]
    both = sorted({w.lower() for w in true_words} & {w.lower() for w in false_words})
    if both:
        return [
            DescriptorProblem(
                f"'{both[0]}' cannot mean both true and false: remove it from one of the lists.", attr="false_words"
            )
        ]
    return []


def _column_problems(
    spec: EntitySpec, column, *, index: int, fields: list[str], export_only: bool
) -> list[DescriptorProblem]:
    """Check one column on its own: its name, its field and whether its type fits the field."""
    out = []
    name = column.name.strip()
    if not name:
        out.append(DescriptorProblem("A column needs its name in the file.", column=index, attr="name"))
    if column.ignored:
        if column.field:
            out.append(
                DescriptorProblem(
                    "An ignored column fills no field: clear the field, or untick 'ignored' to import it.",
                    column=index,
                    attr="field",
                )
            )
        if column.is_key or column.required:
            out.append(
                DescriptorProblem(
                    "An ignored column is read past: it cannot be a key or required.", column=index, attr="ignored"
                )
            )
        return out
    if not column.field:
        return [
            *out,
            DescriptorProblem(
                f"Name the field this column fills ({spec.verbose_name.lower()} fields: {', '.join(fields)}), "
                "or ignore the column to read past it.",
                column=index,
                attr="field",
            ),
        ]
    try:
        field = model_field_of(spec, column.field, export_only=export_only)
    except FieldDoesNotExist:
        if column.field in {*ENGINE_FIELDS, *spec.hub_fields}:
            return [
                *out,
                DescriptorProblem(
                    f"'{column.field}' is set by the hub itself, never by a file: only an export-only descriptor "
                    "may have a column for it.",
                    column=index,
                    attr="field",
                ),
            ]
        return [
            *out,
            DescriptorProblem(
                f"{spec.verbose_name} has no field '{column.field}'. Its fields: {', '.join(fields)}.",
                column=index,
                attr="field",
            ),
        ]
    if column.type not in ColumnType.values:
        return [*out, DescriptorProblem(f"Unknown column type '{column.type}'.", column=index, attr="type")]
    if not type_fits(column.type, field):
        fitting = fitting_types(field)
        hint = f"use {' or '.join(fitting)}" if fitting else "no column type fills it"
        out.append(
            DescriptorProblem(
                f"A {_TYPE_NAMES[column.type]} column cannot fill '{column.field}' ({_describe(field)}): {hint}.",
                column=index,
                attr="type",
            )
        )
    elif column.type == ColumnType.CHOICE and not column.choices.strip() and not field.choices:
        out.append(
            DescriptorProblem(
                f"List the allowed values (comma separated): the field '{column.field}' has no choices of its own.",
                column=index,
                attr="choices",
            )
        )
    elif column.choices.strip() and column.type != ColumnType.CHOICE:
        out.append(
            DescriptorProblem(
                "Allowed values apply to choice columns only: clear them or make the column a choice.",
                column=index,
                attr="choices",
            )
        )
    return out


def _describe(field: models.Field) -> str:
    """Say what kind of field a model field is, for a message."""
    if field.many_to_one:
        return f"a reference to a {field.related_model._meta.verbose_name}"
    if field.choices:
        return "a field with fixed choices"
    kind = {
        "CharField": "a text field",
        "TextField": "a text field",
        "DecimalField": "a decimal field",
        "BooleanField": "a yes/no field",
        "DateField": "a date field",
        "DateTimeField": "a date-time field",
    }.get(field.get_internal_type())
    if kind is None and isinstance(field, models.IntegerField):
        kind = "a whole-number field"
    return kind or f"a {field.get_internal_type()}"


def _key_problems(spec: EntitySpec, key_fields: set[str], filled: set[str]) -> list[DescriptorProblem]:
    """Check that the key columns fill the entity's key fields (or a field the registry lets stand in for it)."""
    wanted = set(spec.key_fields)
    if key_fields == wanted or key_alias_field(spec, key_fields, filled) is not None:
        return []
    aliases = [alias for alias, target in spec.key_aliases.items() if target in wanted]
    keyed_by = " and ".join(spec.key_fields)
    if aliases:
        keyed_by += f" (or by {' or '.join(aliases)}, which then is the {spec.key_fields[0]} too)"
    if not key_fields:
        message = f"No key column: tick 'is key' on the columns that fill {keyed_by}."
    else:
        message = (
            f"The key columns fill {', '.join(sorted(key_fields))}, but a {spec.verbose_name.lower()} "
            f"is keyed by {keyed_by}."
        )
    return [DescriptorProblem(message)]


def descriptor_claiming(*, name: str, group, cache: dict | None = None) -> object | None:
    """Return the descriptor of a group that claims a file by its pattern alone (no naming convention), or None.

    A third-party export (a shop's customers_export.csv) follows neither naming convention: a descriptor without
    one claims it by its file pattern, on an upload to a group that holds that descriptor. cache: a dict kept
    across the files of a job, where the group's descriptors are read once.
    """
    if group is None:
        return None
    key = ("claiming", group.pk)
    if cache is None or key not in cache:
        found = list(
            group.descriptors.filter(convention="", export_only=False).exclude(file_pattern="").order_by("code")
        )
        if cache is None:
            cache = {}
        cache[key] = found
    claiming = [d for d in cache[key] if fnmatch.fnmatchcase(name, d.file_pattern)]
    if len(claiming) > 1:
        raise FileRejected(
            f"{name}: the patterns of several descriptors match it ({', '.join(d.code for d in claiming)}); "
            "make them tell the files apart"
        )
    return claiming[0] if claiming else None
