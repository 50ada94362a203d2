"""Descriptors with their columns (and "Try on a sample"), and the groups of them: import groups, and export
groups with their schedule, "Export" and "Run export now"."""

from types import SimpleNamespace

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import (
    Http404,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape

from config.adminkit import (
    LocationFieldsAdminMixin,
    permission_check,
)
from impex.admin.descriptor_drafts import ColumnFieldChoice, DescriptorDraftMixin, column_field_choices
from impex.admin.export_views import EXPORT_PERMISSION, GroupExportMixin
from impex.admin.full_sync import FULL_SYNC_PERMISSION, full_sync_page
from impex.admin.jobs import UploadLinkMixin
from impex.choices import (
    GroupDirection,
)
from impex.exceptions import ConfigurationError
from impex.models import (
    DataDescriptor,
    DataGroup,
    DescriptorColumn,
)
from impex.selectors.pages import group_export_runs, group_export_state, group_sent_files
from impex.services.descriptor_drafts import FILE_PATTERN_HELP
from impex.services.descriptors import descriptor_check
from impex.services.export_runs import export_destination, export_run_enqueue
from impex.services.full_sync import full_sync_exports
from impex.services.samples import SAMPLE_ROWS, descriptor_sample
from impex.services.schedules import schedules_sync_on_commit
from impex.storage import temporary_folder

EXPORT_RUNS_SHOWN = 10


DESCRIPTOR_WORD_FIELDS = ("true_words", "false_words")


class DescriptorColumnFormSet(BaseInlineFormSet):
    """Checks the columns together with the descriptor on save, by the rules the engine compiles them with."""

    def clean(self):
        forms_ = [
            form for form in self.forms if getattr(form, "cleaned_data", None) and not self._should_delete_form(form)
        ]
        if any(form.errors for form in self.forms):
            return  # each row's own errors first: a half-read row would only add confusing ones
        problems = descriptor_check(descriptor=self.instance, columns=[form.instance for form in forms_])
        general = []
        for problem in problems:
            if problem.column is not None:
                form = forms_[problem.column]
                # An ignored column is one whose field is "ignore this column": its problems are the field's.
                attr = "field" if problem.attr == "ignored" else problem.attr
                form.add_error(attr if attr in form.fields else None, problem.message)
            elif not problem.attr:
                general.append(problem.message)
            # A problem of the descriptor's own fields is shown on them by its form.
        if general:
            raise forms.ValidationError(general)


class DescriptorColumnForm(forms.ModelForm):
    """A column whose field is chosen among the entity's fields; "ignore this column" (no field) reads past it."""

    entity = ""  # the descriptor's entity (set per descriptor by the inline); none: every entity's fields
    export_only = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.data.get(self.add_prefix("field"), "") if self.is_bound else self.instance.field
        self.fields["field"] = ColumnFieldChoice(
            choices=column_field_choices(entity=self.entity, export_only=self.export_only, current=current),
            required=False,
            help_text="The field this column fills, or ignore it: the import reads past it.",
        )
        self.fields["field"].widget.attrs["style"] = "width: 15em"

    def clean(self):
        data = super().clean()
        self.instance.ignored = not data.get("field")
        return data


class DescriptorColumnInline(admin.TabularInline):
    model = DescriptorColumn
    form = DescriptorColumnForm
    formset = DescriptorColumnFormSet
    fields = ("position", "name", "field", "type", "required", "is_key", "choices")
    ordering = ("position", "id")
    extra = 0

    def get_formset(self, request, obj=None, **kwargs):
        # The fields offered are the entity's: the one posted (a descriptor saved as new may change it), or saved.
        entity = request.POST.get("entity") or (obj.entity if obj is not None else "")
        export_only = "export_only" in request.POST if request.method == "POST" else bool(obj and obj.export_only)
        kwargs["form"] = type(
            "DescriptorColumnForm", (DescriptorColumnForm,), {"entity": entity, "export_only": export_only}
        )
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        # Narrow boxes keep the eight columns of a row within a 1400 px window, beside the navigation sidebar.
        widths = {"position": "4em", "name": "12em", "field": "11em", "choices": "10em"}
        if db_field.name in widths:
            field.widget.attrs["style"] = f"width: {widths[db_field.name]}"
        return field


class DataDescriptorAdminForm(forms.ModelForm):
    """Keeps a built-in descriptor's code (file names carry it); "Save as new" may give the copy a new one."""

    def clean(self):
        data = super().clean()
        probe = SimpleNamespace(
            entity=data.get("entity", ""), **{name: data.get(name, "") for name in DESCRIPTOR_WORD_FIELDS}
        )
        for problem in descriptor_check(descriptor=probe, columns=[]):
            if problem.attr in DESCRIPTOR_WORD_FIELDS:
                self.add_error(problem.attr, problem.message)
        return data

    def clean_code(self):
        code = self.cleaned_data["code"]
        if self.instance.pk and self.instance.builtin and code != self.instance.code:
            raise forms.ValidationError(
                "File names carry this built-in descriptor's code, so it cannot change. "
                'To make a new layout, change the code and use "Save as new".'
            )
        return code


@admin.register(DataDescriptor)
class DataDescriptorAdmin(DescriptorDraftMixin, admin.ModelAdmin):
    form = DataDescriptorAdminForm
    list_display = ("code", "name", "entity", "convention", "format", "precedence", "column_count", "builtin")
    list_filter = ("entity", "format", "convention", "builtin")
    search_fields = ("code", "name")
    list_per_page = 100
    inlines = (DescriptorColumnInline,)
    readonly_fields = ("builtin", "created_at", "updated_at")
    # "Save as new" copies a descriptor with its columns: the way to a new layout without code.
    save_as = True
    fieldsets = (
        (None, {"fields": ("code", "name", "entity", "convention", "builtin", "export_only")}),
        (
            "File layout",
            {
                "fields": (
                    "format",
                    "delimiter",
                    "encoding",
                    "has_header",
                    "file_pattern",
                    "precedence",
                    "date_format",
                    "datetime_format",
                    "boolean_style",
                    "true_words",
                    "false_words",
                    "xml_root",
                    "xml_record",
                )
            },
        ),
        ("Rejecting a file", {"fields": ("max_error_count", "max_error_ratio")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    change_form_template = "admin/impex/datadescriptor/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(column_count=Count("columns"))

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "file_pattern":
            field.help_text = FILE_PATTERN_HELP
        return field

    @admin.display(description="columns", ordering="column_count")
    def column_count(self, obj):
        return obj.column_count

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.builtin:
            return False
        return super().has_delete_permission(request, obj)

    def get_urls(self):
        sample = path(
            "<path:object_id>/sample/",
            self.admin_site.admin_view(self.sample_view),
            name="impex_datadescriptor_sample",
        )
        return [sample, *super().get_urls()]

    def sample_view(self, request, object_id):
        """Try the saved descriptor on an uploaded file: its first rows as an import reads them; nothing is kept."""
        descriptor = self.get_object(request, unquote(object_id))
        if descriptor is None:
            raise Http404("No such descriptor.")
        # Reading a file writes nothing, but the page is a tool for whoever shapes the descriptor.
        if not self.has_change_permission(request, descriptor):
            raise PermissionDenied
        form = DescriptorSampleForm(request.POST or None, request.FILES or None)
        sample = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            with temporary_folder() as folder:
                local = folder / "sample"
                with open(local, "wb") as out:
                    for chunk in upload.chunks():
                        out.write(chunk)
                sample = descriptor_sample(
                    descriptor=descriptor,
                    path=local,
                    max_bytes=settings.IMPEX_SAMPLE_MAX_BYTES,
                    tz=timezone.get_current_timezone_name(),
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": descriptor,
            "title": f"Try {descriptor.code} on a sample",
            "form": form,
            "sample": sample,
            "sample_rows": SAMPLE_ROWS,
            "max_size": filesizeformat(settings.IMPEX_SAMPLE_MAX_BYTES),
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/impex/datadescriptor/sample.html", context)


class DescriptorSampleForm(forms.Form):
    """A sample file to try a descriptor on."""

    file = forms.FileField(label="Sample file", help_text="A CSV, TSV or XML file laid out as the descriptor says.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.IMPEX_SAMPLE_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; a sample may be up to {filesizeformat(limit)}. "
                "Try the first rows of the file."
            )
        return upload


class DataGroupAdminForm(forms.ModelForm):
    """Checks that an export group has exactly one descriptor, the layout of its output file."""

    def clean(self):
        data = super().clean()
        descriptors = data.get("descriptors")
        if data.get("direction") == GroupDirection.EXPORT and descriptors is not None and len(descriptors) != 1:
            self.add_error("descriptors", "An export group has exactly one descriptor: the layout of its file.")
        return data


@admin.register(DataGroup)
class DataGroupAdmin(UploadLinkMixin, LocationFieldsAdminMixin, GroupExportMixin, admin.ModelAdmin):
    form = DataGroupAdminForm
    # An export group without a destination writes to its connection's outbox: choosing the connection is choosing
    # where the file goes.
    location_keys = ("connection",)
    upload_parameter = "group"
    actions = ("export_group",)
    list_display = ("code", "name", "direction", "connection", "descriptor_count", "schedule_display")
    list_filter = ("direction", "schedule_enabled")
    search_fields = ("code", "name")
    list_select_related = ("connection",)
    list_per_page = 100
    filter_horizontal = ("descriptors",)
    readonly_fields = ("created_at", "updated_at", "watermark_display")
    change_form_template = "admin/impex/datagroup/change_form.html"
    has_export_data_permission = permission_check(EXPORT_PERMISSION)
    has_full_sync_permission = permission_check(FULL_SYNC_PERMISSION)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(descriptor_count=Count("descriptors"))

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": ("code", "name", "direction", "descriptors", "connection")})
        record = ("Record", {"fields": ("created_at", "updated_at")})
        if obj is not None and obj.direction != GroupDirection.EXPORT:
            return (main, record)
        schedule = (
            "Scheduled export (export groups)",
            {
                "fields": (
                    "schedule_enabled",
                    ("interval_minutes", "cron"),
                    "destination",
                    "file_name_pattern",
                    ("incremental", "write_empty"),
                    "watermark_display",
                ),
                "description": "Each run writes the group's file to the destination under the name below, in one "
                "step (never half a file). The watermark moves only when a run succeeds; downloads and "
                "impex_export never move it.",
            },
        )
        return (main, schedule, record)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None:
            # Help texts are HTML: "IMPEX_ROOT/outbox/<code>" would open a <code> element.
            field.help_text = escape(field.help_text)
        return field

    @admin.display(description="descriptors", ordering="descriptor_count")
    def descriptor_count(self, obj):
        return obj.descriptor_count

    @admin.display(description="schedule", ordering="schedule_enabled")
    def schedule_display(self, obj):
        if not obj.schedule_enabled:
            return "-"
        return f"cron {obj.cron}" if obj.cron else f"every {obj.interval_minutes} min"

    @admin.display(description="watermark")
    def watermark_display(self, obj):
        state = group_export_state(group=obj)
        pending = ""
        if state is not None and state.full_sync_id is not None:
            pending = f"; full sync #{state.full_sync_id} asked for every record: the next run writes them all"
        if state is None or state.watermark is None:
            return "none yet: the next run writes every record"
        local = date_format(timezone.localtime(state.watermark), "Y-m-d H:i:s")
        return f"{local} (for {state.watermark_destination}){pending}"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        schedules_sync_on_commit()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        schedules_sync_on_commit()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        schedules_sync_on_commit()

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/run-export/",
                self.admin_site.admin_view(self.run_export_view),
                name="impex_datagroup_run_export",
            ),
            path(
                "<path:object_id>/full-sync/",
                self.admin_site.admin_view(self.full_sync_view),
                name="impex_datagroup_full_sync",
            ),
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        group = self.get_object(request, unquote(object_id))
        extra_context = extra_context or {}
        if group is not None and group.direction == GroupDirection.EXPORT:
            extra_context["export_runs"] = group_export_runs(group=group, limit=EXPORT_RUNS_SHOWN)
            extra_context["sent_files"] = group_sent_files(group=group, limit=EXPORT_RUNS_SHOWN)
            extra_context["export_runs_shown"] = EXPORT_RUNS_SHOWN
            extra_context["show_export_runs"] = True
            if self.has_export_data_permission(request) and self.has_view_permission(request, group):
                extra_context["run_export_url"] = reverse("admin:impex_datagroup_run_export", args=[group.pk])
            if self.has_full_sync_permission(request) and group_full_sync_entity(group) is not None:
                extra_context["full_sync_url"] = reverse("admin:impex_datagroup_full_sync", args=[group.pk])
        return super().change_view(request, object_id, form_url, extra_context)

    def run_export_view(self, request, object_id):
        """Queue a run of the export group to its destination now (POST; impex.export_data)."""
        group = self.get_object(request, unquote(object_id))
        if group is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_export_data_permission(request) and self.has_view_permission(request, group)):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            export_run_enqueue(group=group, by=request.user.get_username())
        except ConfigurationError as exc:
            self.message_user(request, f"{group.code} cannot export: {exc}.", messages.ERROR)
        else:
            self.message_user(
                request,
                f"A run of {group.code} is queued: its file goes to {export_destination(group=group).location}. "
                "The run shows below once a worker starts it.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:impex_datagroup_change", args=[group.pk]))

    def full_sync_view(self, request, object_id):
        """'Trigger a data sync' of the group's entity for its connection: the confirmation (GET), the sync (POST)."""
        group = self.get_object(request, unquote(object_id))
        if group is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_full_sync_permission(request) and self.has_view_permission(request, group)):
            raise PermissionDenied
        group_url = reverse("admin:impex_datagroup_change", args=[group.pk])
        entity = group_full_sync_entity(group)
        if entity is None:
            self.message_user(
                request,
                f"{group.code} is no scheduled export of a connection: a data sync runs a connection's scheduled "
                "exports. Give it a connection and turn 'Export on schedule' on first.",
                messages.ERROR,
            )
            return HttpResponseRedirect(group_url)
        connection = group.connection
        exports = {entity: [g.code for g in full_sync_exports(connection=connection, entity=entity)]}
        return full_sync_page(self, request, connection=connection, exports=exports, obj=group, object_url=group_url)


def group_full_sync_entity(group: DataGroup) -> str | None:
    """Return the entity a data sync of an export group's connection would send again, None if it sends none."""
    if group.direction != GroupDirection.EXPORT or not group.schedule_enabled or group.connection_id is None:
        return None
    entities = list(group.descriptors.values_list("entity", flat=True)[:2])
    return entities[0] if len(entities) == 1 else None
