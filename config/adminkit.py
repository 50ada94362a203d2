"""Admin pieces shared by every app: read-only records and inlines, counted deletes, links, permission checks and
refusals that name the permission missing, write-only secrets and the fields that only impex.change_locations sets."""

from collections import Counter

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import router
from django.db.models.deletion import Collector
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html

INLINE_ROW_LIMIT = 200


def changelist_link(model, text, **filters):
    """Link to the admin changelist of model (a model class or an "app_label.model_name" label), filtered."""
    label = model if isinstance(model, str) else model._meta.label_lower
    app_label, model_name = label.split(".")
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, query, text)


def format_duration(delta):
    """Render a timedelta as H:MM:SS (with tenths under a minute)."""
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def permission_check(perm: str):
    """Return a ModelAdmin method that tells whether the request's user holds perm ("app_label.codename")."""

    # Bound as has_<name>_permission, it is what `@admin.action(permissions=["<name>"])` checks on
    # every request, so an action is neither offered nor run without the permission.
    def has_permission(self, request):
        return request.user.has_perm(perm)

    return has_permission


def permission_groups(perm: str) -> tuple[str, list[str]]:
    """Return the name of a permission ("app_label.codename") and the names of the groups that give it."""
    app_label, _, codename = perm.partition(".")
    found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    if found is None:
        return perm, []
    return found.name, list(Group.objects.filter(permissions=found).order_by("name").values_list("name", flat=True))


def permission_missing_text(perm: str, *, to: str = "") -> str:
    """Say which permission a user lacks (to do what) and how to get it: the groups that give it, if any."""
    name, groups = permission_groups(perm)
    need = f"You need the permission '{name}' ({perm})" + (f" to {to}" if to else "")
    if not groups:
        return f"{need}; ask an administrator to give it to you."
    if len(groups) == 1:
        return f"{need}; ask an administrator to add you to the '{groups[0]}' group, which gives it."
    listed = ", ".join(f"'{group}'" for group in groups)
    return f"{need}; ask an administrator to add you to one of the groups that give it: {listed}."


class PermissionMissing(PermissionDenied):
    """A refusal for want of one permission: the 403 page says which, and which groups give it."""

    def __init__(self, perm: str, *, to: str = ""):
        self.permission = perm
        super().__init__(permission_missing_text(perm, to=to))


# SPEC 13: the folders, URLs and hosts the hub reads from, writes to or calls are set with this permission only.
LOCATIONS_PERMISSION = "impex.change_locations"


class LocationFieldsAdminMixin:
    """Show the model's LOCATION_FIELDS read-only, on add and change, to users without impex.change_locations.

    A read-only field is left out of the form, so a crafted POST carrying it changes nothing. location_keys are the
    fields a default location is derived from (an export group's connection: an empty destination is its outbox),
    read-only the same way; location_keys_on_change only once the record exists (a connection's code names its
    default folders, IMPEX_ROOT/<code>/...).
    """

    location_keys: tuple[str, ...] = ()
    location_keys_on_change: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        if request.user.has_perm(LOCATIONS_PERMISSION):
            return readonly
        places = self.model.LOCATION_FIELDS + self.location_keys
        if obj is not None:
            places += self.location_keys_on_change
        return readonly + tuple(name for name in places if name not in readonly)


def https_formfield(db_field, **kwargs):
    """Make a model field's form field, a URL without a scheme read as https (Django 6's default)."""
    if db_field.name == "url":
        kwargs["assume_scheme"] = "https"
    return db_field.formfield(**kwargs)


class WriteOnlySecretForm(forms.ModelForm):
    """A model form whose `secret` is write-only: never sent to the browser, kept when left empty, cleared on request.

    Errors on a field the user sees read-only (not in the form) are said at the top, with the permission it takes.
    """

    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_secret = forms.BooleanField(required=False, label="Remove the secret")
    secret_help = "The key of the X-Signature HMAC-SHA256 of each body."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["secret"] = ""
        if "secret" in self.fields:
            if not self.instance.pk:
                state = "Left empty, bodies are sent unsigned."
            elif self.instance.secret:
                state = "A secret is set: leave this empty to keep the current secret."
            else:
                state = "No secret is set: bodies are sent unsigned unless you type one."
            self.fields["secret"].help_text = f"{self.secret_help} {state}"
        if "clear_secret" in self.fields:
            self.fields["clear_secret"].help_text = "Tick to send unsigned from now on (a new secret above wins)."

    def clean(self):
        data = super().clean()
        if "secret" in self.fields and not data.get("secret"):
            data["secret"] = "" if data.get("clear_secret") else self.instance.secret
        return data

    def add_problem(self, field: str, message: str) -> None:
        """Add a problem to its field, or at the top when the user sees that field read-only (not in the form)."""
        if field in self.fields:
            self.add_error(field, message)
            return
        if field in getattr(self._meta.model, "LOCATION_FIELDS", ()):
            label = self._meta.model._meta.get_field(field).verbose_name
            message = (
                f"{message[0].upper()}{message[1:].rstrip('.')}. The {label} is read-only for you: setting it takes "
                f"the permission {LOCATIONS_PERMISSION}."
            )
        self.add_error(None, message)


class WriteOnlySecretAdminMixin:
    """Pages that only show a record (no change permission) say whether its secret is set, never what it is."""

    @admin.display(description="secret")
    def secret_state(self, obj):
        return "set" if obj.secret else "not set"

    def get_fieldsets(self, request, obj=None):
        return self.secret_hidden(request, obj, super().get_fieldsets(request, obj))

    def secret_hidden(self, request, obj, fieldsets):
        """Return the fieldsets as the user may see them: the secret as set / not set where the user may not change
        the record, and no "remove" box on a new one."""
        if obj is not None and self.has_change_permission(request, obj):
            return fieldsets
        as_state = obj is not None
        return [
            (name, {**options, "fields": _without_secret(options["fields"], as_state=as_state)})
            for name, options in fieldsets
        ]


def _without_secret(fields, *, as_state: bool) -> tuple:
    """Fields (or a line of fields) without clear_secret, and with secret as secret_state if as_state."""
    shown = []
    for field in fields:
        if isinstance(field, (list, tuple)):
            shown.append(_without_secret(field, as_state=as_state))
        elif field == "secret" and as_state:
            shown.append("secret_state")
        elif field != "clear_secret":
            shown.append(field)
    return tuple(shown)


class FirstRowsInlineFormSet(BaseInlineFormSet):
    """An inline formset that shows only the first rows, so a file with a million errors still renders."""

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset()[:INLINE_ROW_LIMIT]
        return self._queryset


class ReadOnlyInline(admin.TabularInline):
    """An inline that shows records and never changes them."""

    extra = 0
    can_delete = False
    show_change_link = True

    @property
    def classes(self):
        # Django's tabular inline writes each row's text (str of the record) above it, for its change link: without
        # the link it says the row twice (a job's log showed every line twice). static/hub/admin.css hides it.
        return None if self.show_change_link else ["hub-rows-only"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # Read-only rows show their foreign keys as text: fetch them with the rows, not with a query per row.
        related = [f.name for f in self.model._meta.fields if f.many_to_one and f.name in (self.fields or ())]
        return super().get_queryset(request).select_related(*related)


class CountedChangeList(ChangeList):
    """A changelist that counts an unfiltered list as all of it, so that it offers no "(Show all)" of itself."""

    def get_results(self, request):
        super().get_results(request)
        # With show_full_result_count off (big tables are not counted twice), Django leaves the full count
        # unknown and offers "N results (Show all)" even when nothing narrows the list.
        if self.full_result_count is None and not self.query and not self.get_filters_params():
            self.full_result_count = self.result_count


class CountedChangeListMixin:
    """Use CountedChangeList for the model's list."""

    def get_changelist(self, request, **kwargs):
        return CountedChangeList


class SyncedRecordAdminMixin(CountedChangeListMixin):
    """A record the imports keep in sync: viewed here, never added, changed or deleted by hand, superusers included.

    A hand edit would be overwritten by the next import without a word, as the reference systems are the source of
    truth. django-import-export's sheet import asks for the change permission itself, so it is not affected.
    """

    change_form_template = "admin/synced_change_form.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CountedDeleteMixin:
    """Confirm a delete with counts per model instead of listing every row (a job may carry a million errors)."""

    def get_deleted_objects(self, objs, request):
        collector = Collector(using=router.db_for_write(self.model))
        collector.collect(list(objs))
        counts = Counter()
        for model, instances in collector.data.items():
            counts[model] += len(instances)
        for queryset in collector.fast_deletes:
            counts[queryset.model] += queryset.count()
        counts = {model: count for model, count in counts.items() if count}
        perms_needed = {
            str(model._meta.verbose_name)
            for model in counts
            if model in self.admin_site._registry
            and not request.user.has_perm(f"{model._meta.app_label}.{get_permission_codename('delete', model._meta)}")
        }
        names = {
            model: str(model._meta.verbose_name if count == 1 else model._meta.verbose_name_plural)
            for model, count in counts.items()
        }
        summary = [f"{count} {names[model]}" for model, count in counts.items()]
        return summary, {names[model]: count for model, count in counts.items()}, perms_needed, []


class AuditRecordAdmin(CountedChangeListMixin, CountedDeleteMixin, admin.ModelAdmin):
    """An audit record: viewed, never added or edited here; only superusers may delete it."""

    list_per_page = 100

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
