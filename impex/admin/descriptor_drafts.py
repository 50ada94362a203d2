"""'New descriptor from a sample file': the sample read (step 1), its columns mapped to fields and saved (step 2)."""

import json

from django import forms
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from impex.choices import ColumnType, FileFormat
from impex.entities import entity_choices
from impex.exceptions import DescriptorInvalid, SampleUnreadable
from impex.services.descriptor_drafts import (
    BOOLEAN_CHOICES,
    BOOLEAN_WORDS,
    DELIMITERS,
    FILE_PATTERN_HELP,
    SAMPLE_HEAD_BYTES,
    ColumnDraft,
    boolean_words_guess,
    column_drafts,
    descriptor_create,
    entity_field_choices,
    field_column_types,
    pattern_from_name,
    sample_table,
)

IGNORE_CHOICE = ("", "(ignore this column)")
ENCODINGS = [
    ("utf-8", "UTF-8 (with or without a byte-order mark)"),
    ("cp1252", "Windows-1252 (Western European)"),
    ("latin-1", "ISO-8859-1 (Latin-1)"),
    ("utf-16", "UTF-16"),
]


def column_field_choices(*, entity: str, export_only: bool = False, current: str = "") -> list:
    """The choices of a column's field: "ignore", then the entity's fields (and the column's own, if another)."""
    choices = [IGNORE_CHOICE, *entity_field_choices(entity=entity, export_only=export_only)]
    values = {value for _label, group in choices if isinstance(group, list) for value, _ in group}
    values |= {value for value, label in choices if not isinstance(label, list)}
    if current and current not in values:  # e.g. product.title, a field of the record a column names
        choices.append((current, current))
    return choices


class ColumnFieldChoice(forms.ChoiceField):
    """A column's field, offered as a choice; any name is taken, for the descriptor's check to say what is wrong
    with it (the fields the entity has), as on the engine's side."""

    def valid_value(self, value):
        return True


class SampleForm(forms.Form):
    """Step 1: the entity, the format and a sample (a file, or its header line pasted)."""

    entity = forms.ChoiceField(choices=entity_choices, help_text="What each row of the file is.")
    format = forms.ChoiceField(
        choices=[(FileFormat.CSV, "CSV (delimited text)"), (FileFormat.TSV, "TSV (tab-delimited)")],
        initial=FileFormat.CSV,
    )
    delimiter = forms.ChoiceField(
        choices=[("", "Find it in the sample"), *((char, f"{name} ({char!r})") for char, name in DELIMITERS.items())],
        required=False,
        help_text="CSV: the character between cells; left to be found, it is the one that cuts each line of the "
        "sample into the same number of cells.",
    )
    encoding = forms.ChoiceField(choices=ENCODINGS, initial="utf-8")
    file = forms.FileField(
        label="Sample file",
        required=False,
        help_text="The file itself, or its first lines; only its header and first rows are read, nothing is kept.",
    )
    header = forms.CharField(
        label="Or paste its header line",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 100, "spellcheck": "false"}),
        help_text="The header line as in the file, then a few rows if you like (they show beside each column).",
    )

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        upload, pasted = data.get("file"), data.get("header", "").strip("\r\n")
        if not upload and not pasted.strip():
            raise forms.ValidationError("Upload a sample file or paste its header line.")
        if upload and pasted.strip():
            raise forms.ValidationError("Upload a sample file or paste its header line, not both.")
        try:
            self.table = sample_table(
                data=upload.read(SAMPLE_HEAD_BYTES) if upload else pasted,
                format=data["format"],
                encoding=data["encoding"],
                delimiter=data.get("delimiter", ""),
            )
        except SampleUnreadable as exc:
            raise forms.ValidationError(str(exc)) from None
        self.file_name = upload.name if upload else ""
        return data


class DraftForm(forms.Form):
    """Step 2: the descriptor's own settings (the sample's layout carried from step 1)."""

    code = forms.CharField(max_length=100, help_text="e.g. SHOP_CUSTOMERS; unique.")
    name = forms.CharField(max_length=200, required=False)
    file_pattern = forms.CharField(
        max_length=200,
        help_text=FILE_PATTERN_HELP,
        widget=forms.TextInput(attrs={"placeholder": "customers_export*.csv", "size": 40}),
    )
    precedence = forms.IntegerField(min_value=0, initial=100, help_text="Lower is imported first.")
    booleans = forms.ChoiceField(
        label="Booleans written as",
        choices=BOOLEAN_CHOICES,
        help_text="The words of the yes/no columns (read in any case; the first written on export).",
    )
    date_format = forms.CharField(max_length=40, required=False, help_text="strftime format; empty: YYYY-MM-DD.")
    datetime_format = forms.CharField(max_length=40, required=False, help_text="strftime format; empty: ISO 8601.")
    entity = forms.ChoiceField(choices=entity_choices, widget=forms.HiddenInput)
    format = forms.ChoiceField(choices=FileFormat.choices, widget=forms.HiddenInput)
    delimiter = forms.ChoiceField(choices=[(char, char) for char in DELIMITERS], widget=forms.HiddenInput)
    encoding = forms.ChoiceField(choices=ENCODINGS, widget=forms.HiddenInput)

    def descriptor_values(self) -> dict:
        """The new descriptor's fields."""
        data = self.cleaned_data
        words = BOOLEAN_WORDS[data["booleans"]]
        own_words = data["booleans"] == "yes/no"  # not a boolean style: the descriptor's own words
        return {
            "code": data["code"],
            "name": data["name"],
            "entity": data["entity"],
            "format": data["format"],
            "delimiter": "\\t" if data["format"] == FileFormat.TSV else data["delimiter"],
            "encoding": data["encoding"],
            "has_header": True,
            "file_pattern": data["file_pattern"],
            "precedence": data["precedence"],
            "date_format": data["date_format"],
            "datetime_format": data["datetime_format"],
            "boolean_style": "true/false" if own_words else data["booleans"],
            "true_words": words[0] if own_words else "",
            "false_words": words[1] if own_words else "",
        }


class ColumnDraftForm(forms.Form):
    """One column of the sample: its header (as in the file), the field it fills, its type and flags."""

    name = forms.CharField(max_length=100, strip=False, widget=forms.HiddenInput)
    samples = forms.CharField(required=False, widget=forms.HiddenInput)
    field = ColumnFieldChoice(required=False)
    type = forms.ChoiceField(choices=ColumnType.choices)
    is_key = forms.BooleanField(required=False, label="Is key")
    required = forms.BooleanField(required=False)
    choices = forms.CharField(
        required=False, max_length=500, label="Allowed values", widget=forms.TextInput(attrs={"size": 12})
    )

    def __init__(self, *args, entity: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["field"].choices = column_field_choices(entity=entity)

    def sample_values(self) -> list[str]:
        """The sample's values of this column, shown beside it (carried as JSON in a hidden field)."""
        try:
            values = json.loads(self["samples"].value() or "[]")
        except ValueError:
            return []
        return [str(v) for v in values][:5] if isinstance(values, list) else []

    def column_values(self) -> dict:
        data = self.cleaned_data
        return {key: data[key] for key in ("name", "field", "type", "is_key", "required", "choices")}


ColumnDraftFormSet = forms.formset_factory(ColumnDraftForm, extra=0, max_num=500, validate_max=True)


def draft_forms(*, step1: SampleForm) -> tuple[DraftForm, object]:
    """Step 2's forms, filled in from the sample read in step 1: guessed fields, types, key and boolean words."""
    table, entity = step1.table, step1.cleaned_data["entity"]
    drafts: list[ColumnDraft] = column_drafts(entity=entity, table=table)
    draft = DraftForm(
        initial={
            "entity": entity,
            "format": table.format,
            "delimiter": table.delimiter,
            "encoding": step1.cleaned_data["encoding"],
            "file_pattern": pattern_from_name(step1.file_name) if step1.file_name else "",
            "booleans": boolean_words_guess([v for d in drafts if d.type == ColumnType.BOOLEAN for v in d.samples]),
            "precedence": 100,
        }
    )
    columns = ColumnDraftFormSet(
        prefix="columns",
        initial=[
            {
                "name": d.name,
                "samples": json.dumps(d.samples),
                "field": d.field,
                "type": d.type,
                "is_key": d.is_key,
                "required": d.required,
            }
            for d in drafts
        ],
        form_kwargs={"entity": entity},
    )
    return draft, columns


def errors_show(*, exc: DescriptorInvalid, draft: DraftForm, columns) -> None:
    """Put a refused descriptor's problems on the fields of step 2 they belong to (the others above the form)."""
    for attr, found in exc.errors.items():
        for message in found:
            draft.add_error(attr if attr in draft.fields else None, message)
    for form, found in zip(columns.forms, exc.column_errors, strict=False):
        for attr, problems in found.items():
            for message in problems:
                form.add_error(attr if attr in form.fields and attr != NON_FIELD_ERRORS else None, message)


class DescriptorDraftMixin:
    """Adds 'New descriptor from a sample file' to the descriptor admin (needs impex.add_datadescriptor)."""

    def get_urls(self):
        own = path(
            "from-sample/",
            self.admin_site.admin_view(self.from_sample_view),
            name="impex_datadescriptor_from_sample",
        )
        return [own, *super().get_urls()]

    def from_sample_view(self, request):
        """Step 1 (GET, or POST step=read) reads the sample; step 2 (POST step=save) creates the descriptor."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        step = request.POST.get("step") if request.method == "POST" else ""
        if step == "save":
            draft = DraftForm(request.POST)
            entity = request.POST.get("entity", "")
            columns = ColumnDraftFormSet(request.POST, prefix="columns", form_kwargs={"entity": entity})
            if draft.is_valid() and columns.is_valid():
                try:
                    descriptor = descriptor_create(
                        values=draft.descriptor_values(), columns=[form.column_values() for form in columns.forms]
                    )
                except DescriptorInvalid as exc:
                    errors_show(exc=exc, draft=draft, columns=columns)
                else:
                    self.log_addition(request, descriptor, [{"added": {}}])
                    ignored = sum(1 for form in columns.forms if not form.cleaned_data["field"])
                    self.message_user(
                        request,
                        f"{descriptor.code} was created with {len(columns.forms)} columns ({ignored} ignored). "
                        "Put it in an import group to import files whose names match its pattern.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:impex_datadescriptor_change", args=[descriptor.pk]))
            return self.from_sample_render(request, step=2, draft=draft, columns=columns)
        sample = SampleForm(request.POST or None, request.FILES or None, initial={"entity": request.GET.get("entity")})
        if step == "read" and sample.is_valid():
            draft, columns = draft_forms(step1=sample)
            return self.from_sample_render(request, step=2, draft=draft, columns=columns)
        return self.from_sample_render(request, step=1, sample=sample)

    def from_sample_render(self, request, *, step: int, **forms_):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "New descriptor from a sample file",
            "step": step,
            "has_view_permission": self.has_view_permission(request),
            **forms_,
        }
        if step == 2:
            draft = forms_["draft"]
            context["entity_label"] = dict(entity_choices()).get(draft["entity"].value(), draft["entity"].value())
            context["delimiter_label"] = DELIMITERS.get(draft["delimiter"].value(), "")
            context["field_types"] = field_column_types(entity=draft["entity"].value() or "")
        return TemplateResponse(request, "admin/impex/datadescriptor/from_sample.html", context)
