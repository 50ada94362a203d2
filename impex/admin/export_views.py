"""The admin's "Export" pages: an export group's file, or an entity's records with one of its descriptors."""

import re
from datetime import UTC, datetime
from itertools import chain

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import FieldError, PermissionDenied
from django.db.models import Max
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import content_disposition_header

from impex.choices import FileFormat, GroupDirection
from impex.entities import entity_choices, entity_spec
from impex.exceptions import ImpexError
from impex.models import DataDescriptor
from impex.selectors.pages import entity_descriptors
from impex.services.exports import CONTENT_TYPES, export_download, export_name, export_records

EXPORT_PERMISSION = "impex.export_data"


ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
ISO_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?")
ISO_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?")
# 12/07/2026, 7.12.2026: a day and a month in an order that depends on where the writer lives.
LOCAL_DATE = re.compile(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}")


class SinceWidget(forms.MultiWidget):
    """The browser's own date picker (`since`, sent as YYYY-MM-DD whatever the user's locale shows) and an optional
    time (`since_time`, HH:MM)."""

    def __init__(self):
        super().__init__(
            {
                "": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
                "time": forms.TimeInput(attrs={"type": "time", "step": 60, "aria-label": "time"}, format="%H:%M"),
            }
        )

    def decompress(self, value):
        return [value, None] if isinstance(value, str) else [None, None]

    def value_from_datadict(self, data, files, name):
        return [data.get(name, ""), data.get(f"{name}_time", "")]


class IsoSinceField(forms.Field):
    """A date, or a date and a time, in ISO 8601 only (YYYY-MM-DD, YYYY-MM-DDTHH:MM), read in the hub's time zone:
    12/07/2026 is refused rather than guessed."""

    widget = SinceWidget

    def __init__(self, **kwargs):
        super().__init__(required=False, label="Only records changed since", **kwargs)

    def to_python(self, value) -> datetime | None:
        day, at = value if isinstance(value, list | tuple) else (value, "")
        day, at = (day or "").strip(), (at or "").strip()
        if not day:
            if at:
                raise forms.ValidationError(f"A time ({at}) needs a date: pick the day too.", code="no_date")
            return None
        moment = timezone.make_aware(_iso_moment(day, at), timezone.get_current_timezone())
        try:
            moment.astimezone(UTC)  # as the database compares it: 0001-01-01 in Berlin is before year 1 in UTC
        except OverflowError:
            raise forms.ValidationError(
                f"{day}{' ' + at if at else ''} is outside the years 1 to 9999 once read in UTC: pick a later or "
                "earlier day.",
                code="out_of_range",
            ) from None
        return moment


def _iso_moment(day: str, at: str) -> datetime:
    """Read an ISO date (and the time, if given) into a naive datetime; say plainly what is wrong otherwise."""
    full = ISO_DATETIME.fullmatch(day)
    if full and at:
        raise forms.ValidationError(f"{day} holds a time already: leave the time empty.", code="two_times")
    parts = full or ISO_DATE.fullmatch(day)
    if parts is None:
        if LOCAL_DATE.fullmatch(day):
            raise forms.ValidationError(
                f"{day} is not an ISO date: it could be read day first or month first. Write it as YYYY-MM-DD "
                "(7 December 2026 is 2026-12-07), or pick it in the calendar.",
                code="not_iso",
            )
        raise forms.ValidationError(
            f"{day} is not a date: write it as YYYY-MM-DD (e.g. 2026-12-07) or YYYY-MM-DDTHH:MM, or pick it in "
            "the calendar.",
            code="not_iso",
        )
    numbers = [int(n) for n in parts.groups() if n is not None]
    if at:
        clock = ISO_TIME.fullmatch(at)
        if clock is None:
            raise forms.ValidationError(f"{at} is not a time: write it as HH:MM, e.g. 14:05.", code="not_iso")
        numbers += [int(n) for n in clock.groups() if n is not None]
    try:
        return datetime(*numbers)
    except ValueError as exc:
        raise forms.ValidationError(f"{day}{' ' + at if at else ''} is not a real date or time: {exc}.") from exc


class ExportForm(forms.Form):
    """What to export: the descriptor (on an entity's page), the format, and all records or those changed since."""

    descriptor = forms.ModelChoiceField(
        queryset=DataDescriptor.objects.none(),
        empty_label=None,
        required=False,
        help_text="The layout of the file: its columns and value formats.",
    )
    format = forms.ChoiceField(required=False)
    since = IsoSinceField()

    def __init__(self, *args, descriptors=None, descriptor: DataDescriptor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["since"].help_text = (
            f"Pick a day, and a time if you like, in {timezone.get_current_timezone_name()} (the hub's time zone). "
            "Typed, a date is YYYY-MM-DD, e.g. 2026-12-07. Leave it empty to export every record."
        )
        if descriptors is None:
            # An export group's file has its one descriptor's layout: nothing to choose.
            del self.fields["descriptor"]
            own = f"the descriptor's: {descriptor.get_format_display()}"
        else:
            self.fields["descriptor"].queryset = descriptors
            self.fields["descriptor"].label_from_instance = _descriptor_label
            self.fields["descriptor"].initial = descriptor
            own = "the descriptor's own"
        self.fields["format"].choices = [("", f"As {own}"), *FileFormat.choices]
        self.fields["format"].help_text = "CSV, tab-separated (TSV) or XML; the columns are the same in each."


def _descriptor_label(descriptor: DataDescriptor) -> str:
    """Name a descriptor in the choice: its code, name and format."""
    name = f": {descriptor.name}" if descriptor.name else ""
    return f"{descriptor.code}{name} ({descriptor.get_format_display()})"


def _download(request, *, descriptor: DataDescriptor, form: ExportForm, name: str, records=None):
    """Stream the export as an attachment; or, with nothing to write or a descriptor that cannot export, return None
    with the reason on the page (a message, or an error of the form)."""
    fmt = form.cleaned_data["format"] or descriptor.format
    since = form.cleaned_data["since"]
    if since is not None and not export_records(descriptor=descriptor, since=since, records=records).exists():
        # A file of a header alone looks like a failed export: say why there is nothing instead.
        messages.warning(request, _nothing_since(descriptor=descriptor, since=since, records=records))
        return None
    chunks = export_download(descriptor=descriptor, fmt=fmt, since=since, records=records)
    # The first piece runs the query and writes the header: a descriptor that cannot export (a column naming
    # no field, a column name that cannot be an XML element) is told on the form instead of cutting a download.
    try:
        first = next(chunks)
    except (ImpexError, FieldError, ValueError) as exc:
        form.add_error(None, f"{descriptor.code} cannot export: {exc}")
        return None
    response = StreamingHttpResponse(
        chain([first], chunks), content_type=f"{CONTENT_TYPES[fmt]}; charset={descriptor.encoding or 'utf-8'}"
    )
    response["Content-Disposition"] = content_disposition_header(True, export_name(code=name, fmt=fmt))
    return response


def _nothing_since(*, descriptor: DataDescriptor, since: datetime, records) -> str:
    """Say that no record changed since a moment, and when the latest change was."""
    plural = entity_spec(descriptor.entity).model._meta.verbose_name_plural
    latest = export_records(descriptor=descriptor, records=records).aggregate(at=Max("updated_at"))["at"]
    when = date_format(timezone.localtime(since), "DATETIME_FORMAT")
    subject = f"None of the {records.count()} selected {plural}" if records is not None else f"No {plural}"
    if latest is None:
        last = f"there are no {plural} to export at all."
    else:
        last = f"the latest change was at {date_format(timezone.localtime(latest), 'DATETIME_FORMAT')}."
    return (
        f"{subject} changed since {when} ({timezone.get_current_timezone_name()}), so there is no file to download: "
        f"{last}"
    )


class DescriptorExportMixin:
    """An entity's "Export": its records as one of its descriptors writes them (impex.export_data and view)."""

    actions = ["export_selected"]

    def export_entity(self) -> str | None:
        """Return the name of the entity this admin lists, or None if descriptors cannot write it."""
        return next((name for name, _ in entity_choices() if entity_spec(name).model is self.model), None)

    def export_descriptors(self):
        """Return the descriptors that write this admin's entity, the built-in one first."""
        return entity_descriptors(entity=self.export_entity())

    def has_descriptor_export_permission(self, request) -> bool:
        """Tell whether the user may download this entity's records: impex.export_data and the view permission."""
        return (
            self.export_entity() is not None
            and request.user.has_perm(EXPORT_PERMISSION)
            and self.has_view_permission(request)
        )

    def sheet_export_url(self, request) -> str | None:
        """Return the URL of the entity's other export (a sheet) with the list's filters, if the user may use it."""
        return None

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        own = [
            path(
                "descriptor-export/",
                self.admin_site.admin_view(self.descriptor_export_view),
                name="{}_{}_descriptor_export".format(*info),
            )
        ]
        return own + super().get_urls()

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.export_entity() is None:
            actions.pop("export_selected", None)
        return actions

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        if self.has_descriptor_export_permission(request):
            extra_context["descriptor_export_url"] = reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_descriptor_export"
            )
        return super().changelist_view(request, extra_context)

    def descriptor_export_view(self, request):
        """Export every record of the entity, or those changed since a date."""
        return self.export_page(request, records=None)

    @admin.action(description="Export selected %(verbose_name_plural)s", permissions=["descriptor_export"])
    def export_selected(self, request, queryset):
        """Export the chosen records: the same page, posted back through the action with the selection."""
        return self.export_page(request, records=queryset)

    def export_page(self, request, *, records):
        """Show the export form; once posted, download the file."""
        if not self.has_descriptor_export_permission(request):
            raise PermissionDenied
        descriptors = self.export_descriptors()
        default = descriptors.first()
        if default is None:
            # The entity can have descriptors, but an admin has deleted every one of them.
            self.message_user(request, f"No descriptor writes {self.opts.verbose_name_plural}.", messages.ERROR)
            return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
        posted = request.method == "POST" and "do_export" in request.POST
        form = ExportForm(request.POST if posted else None, descriptors=descriptors, descriptor=default)
        if posted and form.is_valid():
            descriptor = form.cleaned_data["descriptor"] or default
            response = _download(request, descriptor=descriptor, form=form, name=descriptor.code, records=records)
            if response is not None:
                return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Export {self.opts.verbose_name_plural}",
            "form": form,
            "errors": helpers.AdminErrorList(form, []),
            "selected": None if records is None else records.count(),
            "sheet_url": self.sheet_export_url(request) if records is None else None,
            "selection": {
                "action": request.POST.get("action", ""),
                "select_across": request.POST.get("select_across", "0"),
                "ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            },
        }
        return TemplateResponse(request, "admin/impex/export.html", context)


class GroupExportMixin:
    """An export group's "Export": its descriptor's file, downloaded (impex.export_data and the group's view)."""

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_export",
            )
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        group = self.get_object(request, unquote(object_id))
        if (
            group is not None
            and group.direction == GroupDirection.EXPORT
            and self.has_group_export_permission(request, group)
        ):
            extra_context["export_url"] = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_export", args=[group.pk]
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def has_group_export_permission(self, request, obj=None) -> bool:
        """Tell whether the user may download an export group's file: impex.export_data and the view permission."""
        return request.user.has_perm(EXPORT_PERMISSION) and self.has_view_permission(request, obj)

    @admin.action(description="Export the selected export group", permissions=["group_export"])
    def export_group(self, request, queryset):
        """Open the export page of the one export group chosen."""
        groups = list(queryset.filter(direction=GroupDirection.EXPORT)[:2])
        if len(groups) != 1 or queryset.count() != 1:
            self.message_user(
                request, "Choose one export group to export (import groups do not export).", messages.ERROR
            )
            return None
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_export", args=[groups[0].pk])
        )

    def export_view(self, request, object_id):
        """Show the export form of an export group; once posted, download its file."""
        group = self.get_object(request, unquote(object_id))
        if group is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_group_export_permission(request, group):
            raise PermissionDenied
        change_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[group.pk])
        if group.direction != GroupDirection.EXPORT:
            self.message_user(request, f"Only export groups export: {group.code} is an import group.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        descriptors = list(group.descriptors.all()[:2])
        if len(descriptors) != 1:
            self.message_user(
                request, f"Export group {group.code} needs exactly one descriptor to export.", messages.ERROR
            )
            return HttpResponseRedirect(change_url)
        (descriptor,) = descriptors
        posted = request.method == "POST"
        form = ExportForm(request.POST if posted else None, descriptor=descriptor)
        if posted and form.is_valid():
            response = _download(request, descriptor=descriptor, form=form, name=group.code)
            if response is not None:
                return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Export {group.name}",
            "group": group,
            "group_url": change_url,
            "descriptor": descriptor,
            "columns": [column.name for column in descriptor.columns.all()],
            "form": form,
            "errors": helpers.AdminErrorList(form, []),
        }
        return TemplateResponse(request, "admin/impex/export.html", context)
