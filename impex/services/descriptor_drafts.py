"""A descriptor drafted from a sample file: its header read, each column's field guessed by name, then created."""

import codecs
import csv
import dataclasses
import difflib
import io
import re
from dataclasses import dataclass
from itertools import islice
from pathlib import PurePosixPath

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from impex.choices import BooleanStyle, FileFormat
from impex.entities import entity_choices, entity_spec
from impex.exceptions import DescriptorInvalid, SampleUnreadable
from impex.models import DataDescriptor, DescriptorColumn
from impex.services.descriptors import descriptor_check, entity_fields, fitting_types, model_field_of

# What the pages say of a descriptor's file pattern (the engine matches it with fnmatch.fnmatchcase).
FILE_PATTERN_HELP = (
    "The file names this descriptor claims, as a glob: * stands for any run of characters, ? for one, and case "
    "matters (e.g. customers_export*.csv). A file whose name matches, uploaded or imported to an import group that "
    "holds this descriptor (or sent by a connection of the patterns convention with such a group), is imported "
    "with this descriptor. A BSPK or Kore descriptor also refuses a file whose name does not match it."
)
# How much of a sample is read: enough for the header and a few rows, whatever the file's size.
SAMPLE_HEAD_BYTES = 64 * 1024
SAMPLE_ROWS_KEPT = 5
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# The boolean words a draft offers: the boolean styles, and yes/no as the descriptor's own words.
BOOLEAN_WORDS = {
    "yes/no": ("yes", "no"),
    BooleanStyle.YN.value: ("Y", "N"),
    BooleanStyle.TRUE_FALSE.value: ("true", "false"),
    BooleanStyle.ONE_ZERO.value: ("1", "0"),
}
BOOLEAN_CHOICES = [("yes/no", "yes / no"), *BooleanStyle.choices]
# Header words other systems use for a field, normalised (lower case, letters and digits only).
SYNONYMS = {
    "email": ("email", "mail", "emailaddress", "mailaddress"),
    "first_name": ("firstname", "givenname", "forename"),
    "last_name": ("lastname", "surname", "familyname"),
    "company_name": ("company", "companyname", "organisation", "organization", "business"),
    "postal_code": ("zip", "zipcode", "postcode", "postalcode"),
    "phone": ("phone", "telephone", "phonenumber", "tel"),
    "active": ("active", "enabled", "isactive"),
    "quantity": ("qty", "quantity", "stock", "onhand"),
    "title": ("title", "productname"),
}


@dataclass
class SampleTable:
    """The head of a sample: its header, its first rows, and how its cells are delimited."""

    header: list[str]
    rows: list[list[str]]
    format: str
    delimiter: str


@dataclass
class ColumnDraft:
    """One column of a drafted descriptor: its header, the field guessed for it, and the sample's values."""

    name: str
    field: str = ""
    type: str = "string"
    is_key: bool = False
    required: bool = False
    samples: list[str] = dataclasses.field(default_factory=list)


def normalised(text: str) -> str:
    """Return a header or field name as compared: lower case, letters and digits only ("E-mail" -> "email")."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def sample_table(*, data: bytes | str, format: str, encoding: str, delimiter: str = "") -> SampleTable:
    """Read the header and first rows of a sample (a file's bytes or pasted text); find its delimiter if not given."""
    if isinstance(data, bytes):
        text = _decoded(data[:SAMPLE_HEAD_BYTES], encoding=encoding)
    else:
        text = data.removeprefix("\ufeff")
    if not text.strip():
        raise SampleUnreadable("The sample is empty: upload a file with a header line, or paste its header line.")
    if format == FileFormat.TSV:
        delimiter = "\t"
    elif not delimiter:
        delimiter = delimiter_sniff(text)
    try:
        lines = [row for row in islice(csv.reader(io.StringIO(text), delimiter=delimiter), 200) if any(row)]
    except csv.Error as exc:
        raise SampleUnreadable(f"The sample cannot be read as {DELIMITERS[delimiter]}-delimited text: {exc}.") from None
    if not lines:
        raise SampleUnreadable("The sample has no header line.")
    header, rows = lines[0], lines[1 : SAMPLE_ROWS_KEPT + 1]
    header_check(header)
    if delimiter == "\t":
        format = FileFormat.TSV
    return SampleTable(header=header, rows=rows, format=format, delimiter=delimiter)


def header_check(header: list[str]) -> None:
    """Refuse a header a descriptor cannot describe (each column is named, once, in at most 100 characters), saying
    which column, before step 2 shows columns whose names cannot be changed there."""
    longest = DescriptorColumn._meta.get_field("name").max_length
    seen: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        if not name.strip():
            raise SampleUnreadable(
                f"Column {number} of the sample's header has no name (a delimiter at the end of the line, or two in "
                "a row?): a descriptor names each column. Remove the empty column from the sample, or name it."
            )
        if len(name) > longest:
            raise SampleUnreadable(
                f"Column {number} of the sample's header is {len(name)} characters long: a column's name may have "
                f"at most {longest}."
            )
        if name in seen:
            raise SampleUnreadable(
                f"Columns {seen[name]} and {number} of the sample's header are both called '{name}': a file's header "
                "names each column once."
            )
        seen[name] = number


def _decoded(head: bytes, *, encoding: str) -> str:
    """Decode the head of a file; a character cut at its end is left out, a UTF-8 byte-order mark dropped."""
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    try:
        return codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise SampleUnreadable(
            f"The sample is not {encoding.removesuffix('-sig')} text (byte {exc.start + 1} cannot be read): "
            "choose the encoding it was saved in."
        ) from None


def delimiter_sniff(text: str) -> str:
    """Return the delimiter that cuts the sample's lines into the most columns, the same number on each line.

    csv.Sniffer guesses from character frequencies and is misled by a delimiter inside quoted cells
    ("vip, newsletter" in a semicolon file); reading the lines with each candidate is not.
    """
    best, best_score = ",", (False, 0)
    for candidate in DELIMITERS:
        try:
            widths = [len(row) for row in islice(csv.reader(io.StringIO(text), delimiter=candidate), 20) if row]
        except csv.Error:
            continue
        if not widths:
            continue
        score = (len(set(widths)) == 1 and widths[0] > 1, widths[0])
        if score > best_score:
            best, best_score = candidate, score
    return best


def column_drafts(*, entity: str, table: SampleTable) -> list[ColumnDraft]:
    """Draft a column per header cell, in order: its field guessed by name, its type the field's, the key chosen."""
    spec = entity_spec(entity)
    known = _field_names(spec)
    fields: list[str] = ["" for _ in table.header]
    taken: set[str] = set()
    for index, name in enumerate(table.header):  # exact names and synonyms first, then close spellings
        found = known.get(normalised(name))
        if found and found not in taken:
            fields[index] = found
            taken.add(found)
    for index, name in enumerate(table.header):
        if fields[index] or not normalised(name):
            continue
        free = [key for key, found in known.items() if found not in taken]
        close = difflib.get_close_matches(normalised(name), free, n=1, cutoff=0.85)
        if close:
            fields[index] = known[close[0]]
            taken.add(fields[index])
    keys = _key_fields(spec, set(taken))
    types = field_column_types(entity=entity)
    drafts = []
    for index, name in enumerate(table.header):
        chosen = fields[index]
        drafts.append(
            ColumnDraft(
                name=name,
                field=chosen,
                type=types.get(chosen, "string"),
                is_key=chosen in keys,
                required=chosen in keys,
                samples=[row[index] for row in table.rows if index < len(row)],
            )
        )
    return drafts


def _field_names(spec) -> dict[str, str]:
    """Map each normalised name a header may give a field (its name, verbose name, synonyms) to the field."""
    known: dict[str, str] = {}
    for name in entity_fields(spec):
        model_field = model_field_of(spec, name)
        words = [name, str(model_field.verbose_name), *SYNONYMS.get(name, ())]
        if model_field.many_to_one:  # a reference names its record by external id: "Parent ID"
            words += [f"{name}id", f"{name}code"]
        for word in words:
            known.setdefault(normalised(word), name)
    return known


def _key_fields(spec, filled: set[str]) -> set[str]:
    """Return the fields to key by: the entity's key fields if the sample has them all, else a key alias it has."""
    if set(spec.key_fields) <= filled:
        return set(spec.key_fields)
    for alias, target in spec.key_aliases.items():
        if alias in filled and target not in filled and len(spec.key_fields) == 1:
            return {alias}
    return set()


def boolean_words_guess(values: list[str]) -> str:
    """Return the boolean words (a BOOLEAN_WORDS key) the sample's values are written in; yes/no if none fits."""
    seen = {value.strip().lower() for value in values if value.strip()}
    for choice, words in BOOLEAN_WORDS.items():
        if seen and seen <= {word.lower() for word in words}:
            return choice
    return "yes/no"


def pattern_from_name(name: str) -> str:
    """Return a glob for the files named like a sample: its numbers (a run, a date) and their separator as *.

    customers_export_1.csv -> customers_export*.csv; glob characters of the name itself are escaped.
    """
    name = PurePosixPath(name.replace("\\", "/")).name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, dot, extension = name, "", ""
    parts = [_glob_escape(part) for part in re.split(r"[-_. ]?\d+", stem)]
    glob = re.sub(r"\*{2,}", "*", "*".join(parts))
    return glob + dot + _glob_escape(extension)


def _glob_escape(text: str) -> str:
    return re.sub(r"[\[*?]", lambda match: f"[{match.group()}]", text)


def entity_field_choices(*, entity: str, export_only: bool = False) -> list:
    """Return the fields a column may fill as choices: the entity's, or every entity's grouped if none is given."""
    try:
        spec = entity_spec(entity)
    except KeyError:
        specs = [entity_spec(name) for name, _label in entity_choices()]
        return [(spec.verbose_name, [(f, f) for f in entity_fields(spec, export_only=export_only)]) for spec in specs]
    return [(f, f) for f in entity_fields(spec, export_only=export_only)]


def field_column_types(*, entity: str) -> dict[str, str]:
    """Return the column type each field of an entity is filled with by default (the first that fits it)."""
    try:
        spec = entity_spec(entity)
    except KeyError:
        return {}
    types = {name: fitting_types(model_field_of(spec, name)) for name in entity_fields(spec)}
    return {name: fitting[0] for name, fitting in types.items() if fitting}


def descriptor_create(*, values: dict, columns: list[dict]) -> DataDescriptor:
    """Create a descriptor and its columns (in order; no field: ignored) in one transaction, if they keep the rules.

    The rules are the model's (DataDescriptor.full_clean) and the engine's (descriptor_check); DescriptorInvalid
    lists every problem found, by descriptor field and by column.
    """
    descriptor = DataDescriptor(**values)
    rows = [
        DescriptorColumn(descriptor=descriptor, position=position, ignored=not column.get("field"), **column)
        for position, column in enumerate(columns, start=1)
    ]
    errors: dict[str, list[str]] = {}
    column_errors: list[dict[str, list[str]]] = [{} for _ in rows]
    try:
        descriptor.full_clean()
    except ValidationError as exc:
        errors = dict(exc.message_dict)
    for row, found in zip(rows, column_errors, strict=True):
        try:
            row.full_clean(exclude=["descriptor"], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            found.update(exc.message_dict)
    for problem in descriptor_check(descriptor=descriptor, columns=rows):
        where = column_errors[problem.column] if problem.column is not None else errors
        where.setdefault(problem.attr or NON_FIELD_ERRORS, []).append(problem.message)
    if errors or any(column_errors):
        raise DescriptorInvalid(errors, column_errors)
    try:
        with transaction.atomic():
            descriptor.save()
            DescriptorColumn.objects.bulk_create(rows)
    except IntegrityError:  # another admin saved the same code meanwhile
        raise DescriptorInvalid({"code": ["A data descriptor with this code already exists."]}, column_errors) from None
    return descriptor
