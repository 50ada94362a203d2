"""Compile a data descriptor into fast per-column converters, and format values for export."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from impex.choices import ColumnType
from impex.entities import EntitySpec, entity_spec, natural_key_of
from impex.exceptions import ConfigurationError, RowError
from impex.services.descriptors import (
    ERRORS_COLUMN,
    boolean_words,
    descriptor_check,
    key_alias_field,
    model_field_of,
)

_INT = re.compile(r"[+-]?[0-9]+\Z")
_DEC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_TRUE = {"y", "yes", "true", "1", "t"}
_FALSE = {"n", "no", "false", "0", "f"}
_BOOLEANS = {
    **{v: True for v in ("Y", "y", "true", "True", "TRUE", "1")},
    **{v: False for v in ("N", "n", "false", "False", "FALSE", "0")},
}
INT32 = (-(2**31), 2**31 - 1)
# SPEC section 12: a cell may hold no control character but tab, line feed and carriage return. PostgreSQL
# cannot store NUL at all and XML 1.0 cannot carry any of them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL_NAMES = (
    "NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM SUB ESC FS GS RS US"
).split()
# Control Pictures (U+2400-U+241F) show each control character as a visible symbol of its own.
_VISIBLE = {code: 0x2400 + code for code in range(0x20) if code not in (0x09, 0x0A, 0x0D)}


@dataclass
class Column:
    """One compiled column: where it goes and how a cell becomes a value."""

    name: str
    field_name: str  # model field (for "product.title": "title" of the parent)
    kind: str  # ColumnType
    required: bool
    is_key: bool
    convert: object  # callable(str) -> value, raises RowError
    model_field: models.Field
    parent: str = ""  # "product" for columns that fill the parent product of a variant
    ref_model: type[models.Model] | None = None
    ref_key: str = ""
    default: object = None  # value for an empty optional cell
    choices: tuple[str, ...] = ()

    @property
    def attname(self) -> str:
        return self.model_field.attname


@dataclass
class CompiledDescriptor:
    """A descriptor ready to read rows: its columns by name, its entity and its key."""

    descriptor: object
    spec: EntitySpec
    model: type[models.Model]
    columns: dict[str, Column]
    key_columns: list[Column]
    ignored: frozenset[str] = frozenset()  # declared columns read past

    @property
    def required_names(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.required]

    def reads_past(self, name: str) -> bool:
        """Tell whether a column of a file is read past: declared as ignored, or a rejected-rows file's errors."""
        return name in self.ignored or (name == ERRORS_COLUMN and name not in self.columns)


def control_character_in(text: str) -> str | None:
    """Return the first control character that text may not hold, or None."""
    found = _CONTROL.search(text)
    return found.group() if found else None


def row_has_control_character(cells: Sequence[str]) -> bool:
    """Tell whether any cell of a row holds a control character that a cell may not hold."""
    text = "".join(cells)
    # Nearly every row is all printable (checked in C); only the others need the search.
    return not text.isprintable() and _CONTROL.search(text) is not None


def character_name(char: str) -> str:
    """Name a character for people: 'U+0000 (NUL)' for a control character, 'U+FFFE' for another."""
    code = ord(char)
    return f"U+{code:04X} ({_CONTROL_NAMES[code]})" if code < 0x20 else f"U+{code:04X}"


def control_character_error(raw: str, *, column: str) -> RowError | None:
    """Return the row error of a cell holding a control character, or None if it holds none."""
    char = control_character_in(raw)
    if char is None:
        return None
    return RowError(
        f"the cell holds the control character {character_name(char)}; "
        "only tab, line feed and carriage return are allowed",
        column=column,
        value=visible_text(raw),
    )


def visible_text(text: str) -> str:
    """Return text with its forbidden control characters shown as symbols, to store and show it safely."""
    return text.translate(_VISIBLE)


def within_utc_years(value: datetime) -> bool:
    """Tell whether an aware date-time stays within the years 1-9999 once read in UTC."""
    if 1 < value.year < 9999:
        return True
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def compile_descriptor(descriptor, *, tz: str = "UTC") -> CompiledDescriptor:
    """Compile a DataDescriptor (with its columns) into converters; raise ConfigurationError if it can't work."""
    declared = list(descriptor.columns.all())
    problems = descriptor_check(descriptor=descriptor, columns=declared)
    if problems:
        raise ConfigurationError(
            "; ".join(
                f"{descriptor.code}.{declared[p.column].name}: {p.message}" if p.column is not None else p.message
                for p in problems
            )
        )
    spec = entity_spec(descriptor.entity)
    model = spec.model
    zone = ZoneInfo(tz or "UTC")
    words = boolean_words(descriptor)
    columns: dict[str, Column] = {}
    key_size = sum(1 for c in declared if c.is_key and not c.ignored)
    for col in (c for c in declared if not c.ignored):
        parent, _, field_name = col.field.rpartition(".")
        column = Column(
            name=col.name,
            field_name=field_name,
            kind=col.type,
            required=col.required,
            is_key=col.is_key,
            convert=None,
            model_field=model_field_of(spec, col.field),
            parent=parent,
        )
        _finish_column(column, choices=col.choices, descriptor=descriptor, zone=zone, words=words, key_size=key_size)
        columns[col.name] = column
    key_columns = [c for c in columns.values() if c.is_key]
    filled = {c.field_name for c in columns.values() if not c.parent}
    target = key_alias_field(spec, {c.field_name for c in key_columns}, filled)
    if target is not None:
        # The key column (a customer's e-mail) is also the record's key field: a column of its own, reading the
        # same cell, fills it; the pipeline finds the cell by the column's name.
        (alias,) = key_columns
        alias.is_key = False
        key = Column(
            name=alias.name,
            field_name=target,
            kind=ColumnType.STRING,
            required=True,
            is_key=True,
            convert=None,
            model_field=model._meta.get_field(target),
        )
        _finish_column(key, choices="", descriptor=descriptor, zone=zone, words=words, key_size=1)
        key_columns = [key]
    key_columns.sort(key=lambda c: spec.key_fields.index(c.field_name))
    ignored = frozenset(c.name for c in declared if c.ignored)
    return CompiledDescriptor(
        descriptor=descriptor, spec=spec, model=model, columns=columns, key_columns=key_columns, ignored=ignored
    )


def _finish_column(column: Column, *, choices: str, descriptor, zone: ZoneInfo, words, key_size: int = 1) -> None:
    """Give a compiled column its reference target, choices, empty value and converter."""
    model_field = column.model_field
    if column.kind == ColumnType.REFERENCE:
        column.ref_model = model_field.related_model
        column.ref_key = natural_key_of(model_field.related_model)
    column.choices = tuple(c.strip() for c in choices.split(",") if c.strip())
    if not column.choices and model_field.choices and column.kind == ColumnType.CHOICE:
        column.choices = tuple(str(v) for v, _ in model_field.choices)
    column.default = _empty_value(model_field)
    column.convert = _converter(column, descriptor=descriptor, zone=zone, words=words, key_size=key_size)


def _empty_value(model_field: models.Field):
    """Return what an empty cell means for a field: null, its default or blank text."""
    if model_field.null:
        return None
    if model_field.has_default():
        return model_field.get_default()
    if isinstance(model_field, models.CharField | models.TextField):
        return ""
    return None


def _bounds(model_field: models.Field) -> tuple[int | None, int | None]:
    lo = hi = None
    for v in model_field.validators:
        if isinstance(v, MinValueValidator):
            lo = v.limit_value
        elif isinstance(v, MaxValueValidator):
            hi = v.limit_value
    return lo, hi


def _converter(
    column: Column, *, descriptor, zone: ZoneInfo, words: tuple[list[str], list[str]] | None, key_size: int = 1
):
    """Build the function that turns one cell into a value or raises RowError (key_size: how many columns the key
    has, for the message of a key cell left empty)."""
    name = column.name
    kind = column.kind
    required = column.required
    empty = column.default
    field = column.model_field

    # A key column's message names it as the user knows it (its header), and says why the value cannot be left out.
    the_key = "the key" if key_size == 1 else "part of the key"
    needed = f"{name} is {the_key}: a value is required" if column.is_key else "a value is required"

    def missing(raw):
        if required:
            raise RowError(needed, column=name, value=raw)
        if empty is None and not field.null and kind != ColumnType.REFERENCE:
            raise RowError(needed, column=name, value=raw)
        return empty

    control = _CONTROL.search

    def refuse_control_characters(raw):
        if error := control_character_error(raw, column=name):
            raise error

    if kind in (ColumnType.STRING, ColumnType.REFERENCE):
        max_length = getattr(field, "max_length", None) if kind == ColumnType.STRING else 100

        def convert(raw):
            if raw == "":
                return missing(raw)
            if control(raw):
                refuse_control_characters(raw)
            if max_length and len(raw) > max_length:
                raise RowError(f"longer than {max_length} characters", column=name, value=raw)
            return raw

    elif kind == ColumnType.CHOICE:
        allowed = frozenset(column.choices)
        listing = ", ".join(column.choices)

        def convert(raw):
            if raw == "":
                return missing(raw)
            if raw not in allowed:
                refuse_control_characters(raw)
                raise RowError(f"unknown choice '{raw}' (expected one of {listing})", column=name, value=raw)
            return raw

    elif kind == ColumnType.INTEGER:
        lo, hi = _bounds(field)
        lo = INT32[0] if lo is None else lo
        hi = INT32[1] if hi is None else hi

        def convert(raw):
            if raw == "":
                return missing(raw)
            if not _INT.match(raw):
                refuse_control_characters(raw)
                raise RowError(f"'{raw}' is not a whole number", column=name, value=raw)
            value = int(raw)
            if value < lo:
                raise RowError(f"{value} is below the minimum of {lo}", column=name, value=raw)
            if value > hi:
                raise RowError(f"{value} is above the maximum of {hi}", column=name, value=raw)
            return value

    elif kind == ColumnType.DECIMAL:
        max_digits = getattr(field, "max_digits", None) or 30
        places = getattr(field, "decimal_places", None)
        places = 10 if places is None else places
        whole = max_digits - places
        # A cell this pattern accepts fits the column as it is; only the others need the detailed checks.
        fits = re.compile(rf"[+-]?[0-9]{{1,{max(whole, 1)}}}(?:\.[0-9]{{0,{places}}})?\Z").match

        def convert(raw):
            if fits(raw):
                return Decimal(raw)
            if raw == "":
                return missing(raw)
            refuse_control_characters(raw)
            if not _DEC.match(raw):
                raise RowError(f"'{raw}' is not a decimal number (use a dot for decimals)", column=name, value=raw)
            try:
                value = Decimal(raw)
            except InvalidOperation as exc:
                raise RowError(f"'{raw}' is not a decimal number", column=name, value=raw) from exc
            sign, digits, exponent = value.as_tuple()
            frac = -exponent if exponent < 0 else 0
            if frac > places and value != value.quantize(Decimal(1).scaleb(-places)):
                raise RowError(f"'{raw}' has more than {places} decimal places", column=name, value=raw)
            int_digits = len(digits) - frac if len(digits) > frac else 0
            if int_digits > whole:
                raise RowError(f"'{raw}' is too large (at most {whole} digits before the dot)", column=name, value=raw)
            return value

    elif kind == ColumnType.BOOLEAN and words is not None:
        # The descriptor's own words replace the usual ones: a shop's "yes"/"no", matched in any case.
        meaning = {**{w.lower(): True for w in words[0]}, **{w.lower(): False for w in words[1]}}
        listed = [*words[0], *words[1]]
        accepted = " or ".join(listed) if len(listed) == 2 else f"one of {', '.join(listed)}"

        def convert(raw):
            if raw == "":
                return missing(raw)
            refuse_control_characters(raw)
            value = meaning.get(raw.strip().lower())
            if value is None:
                raise RowError(f"'{raw}' is not a boolean (use {accepted})", column=name, value=raw)
            return value

    elif kind == ColumnType.BOOLEAN:

        def convert(raw):
            value = _BOOLEANS.get(raw)
            if value is not None:
                return value
            if raw == "":
                return missing(raw)
            # strip() takes U+001C-U+001F for white space: refuse them before it removes them.
            refuse_control_characters(raw)
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise RowError(f"'{raw}' is not a boolean (use Y/N, true/false or 1/0)", column=name, value=raw)

    elif kind == ColumnType.DATE:
        fmt = descriptor.date_format

        def convert(raw):
            if raw == "":
                return missing(raw)
            if control(raw):
                # strptime() reads U+001C-U+001F as the white space of a format.
                refuse_control_characters(raw)
            try:
                if fmt:
                    return datetime.strptime(raw, fmt).date()
                if not _DATE.match(raw):
                    raise ValueError
                return date.fromisoformat(raw)
            except ValueError as exc:
                raise RowError(
                    f"'{raw}' is not a date ({'format ' + fmt if fmt else 'YYYY-MM-DD'})", column=name, value=raw
                ) from exc

    elif kind == ColumnType.DATETIME:
        fmt = descriptor.datetime_format
        zone_name = zone.key

        def convert(raw):
            if raw == "":
                return missing(raw)
            if control(raw):
                # fromisoformat() takes "2026-11-01T09:30:00\x00" for a date-time.
                refuse_control_characters(raw)
            try:
                if fmt:
                    value = datetime.strptime(raw, fmt)
                elif _DATE.match(raw):
                    value = datetime.combine(date.fromisoformat(raw), time())
                else:
                    if len(raw) < 16 or raw[4] != "-" or raw[10] not in "T ":
                        raise ValueError
                    value = datetime.fromisoformat(raw)
            except ValueError as exc:
                raise RowError(
                    f"'{raw}' is not a date-time (ISO 8601, e.g. 2026-11-01T09:30:00+01:00)", column=name, value=raw
                ) from exc
            read_in = ""
            if value.tzinfo is None:
                value = value.replace(tzinfo=zone)
                read_in = f" (read in {zone_name})"
            if not within_utc_years(value):
                raise RowError(f"'{raw}'{read_in} is outside the years 1-9999 once read in UTC", column=name, value=raw)
            return value

    else:
        raise ConfigurationError(f"{descriptor.code}.{name}: unknown column type '{kind}'")
    return convert


def value_styles(descriptor) -> dict[str, str]:
    """Return how a descriptor writes values: the keyword arguments of format_value."""
    words = boolean_words(descriptor)
    yes, no = (words[0][0], words[1][0]) if words else descriptor.boolean_style.split("/")
    return {
        "true_word": yes,
        "false_word": no,
        "date_format": descriptor.date_format,
        "datetime_format": descriptor.datetime_format,
    }


def format_value(
    value,
    *,
    kind: str,
    true_word: str = "true",
    false_word: str = "false",
    date_format: str = "",
    datetime_format: str = "",
):
    """Format one value for export the way the descriptor reads it back."""
    if value is None:
        return ""
    if kind == ColumnType.BOOLEAN:
        return true_word if value else false_word
    if kind == ColumnType.DECIMAL:
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    if kind == ColumnType.DATE:
        return value.strftime(date_format) if date_format else value.isoformat()
    if kind == ColumnType.DATETIME:
        return value.strftime(datetime_format) if datetime_format else value.isoformat()
    return str(value)
