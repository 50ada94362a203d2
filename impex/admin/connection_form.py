"""The connection's form in the admin: its fields, and the import groups whose files come from it."""

from django import forms
from django.db.models import Prefetch

from impex.choices import GroupDirection
from impex.models import Connection, DataDescriptor, DataGroup
from impex.services.connections import connection_groups_set


class ConnectionForm(forms.ModelForm):
    """A connection's fields, Connection.clean()'s rules, and its import groups (a patterns connection needs one)."""

    groups = forms.ModelMultipleChoiceField(
        queryset=DataGroup.objects.filter(direction=GroupDirection.IMPORT)
        .select_related("connection")
        .prefetch_related(Prefetch("descriptors", queryset=DataDescriptor.objects.order_by("code")))
        .order_by("code"),
        required=False,
        label="Import groups",
        widget=forms.CheckboxSelectMultiple(attrs={"class": "radiolist"}),  # the admin lays its labels out in full
        help_text="The groups whose files come from this connection: an upload to one of them imports for it. "
        "Patterns: the file pattern of each of their descriptors says which file names the connection imports "
        "and with which descriptor (shown beside each group); its inbox scans need at least one, while an upload "
        "or impex_import may name the group instead.",
    )

    class Meta:
        model = Connection
        # Every field a person edits: the admin's fieldsets choose which the page shows.
        fields = [f.name for f in Connection._meta.concrete_fields if f.editable and not f.primary_key]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "groups" in self.fields:
            if self.instance.pk is not None:
                self.fields["groups"].initial = list(self.instance.import_groups())
            self.fields["groups"].label_from_instance = self.group_label
        if "convention" in self.fields:
            self.fields["convention"].help_text = (
                "How its file names are read. Patterns: a third-party export's own names (customers_export_1.csv), "
                "matched by the file patterns of its import groups' descriptors; no company, timestamp or sequence; "
                "files go in as they arrive, then by precedence."
            )

    def group_label(self, group: DataGroup) -> str:
        """Name a group with the file patterns of its descriptors, and the other connection it belongs to."""
        patterns = [f"{d.file_pattern} ({d.code})" for d in group.descriptors.all() if d.file_pattern]
        label = f"{group.code}: {', '.join(patterns) if patterns else 'no file patterns'}"
        if group.connection_id not in (None, self.instance.pk):
            label += f" (belongs to {group.connection})"
        return label

    def clean(self):
        data = super().clean()
        if "groups" not in self.fields or data.get("groups") is None:
            return data
        probe = Connection(pk=self.instance.pk, convention=data.get("convention", self.instance.convention))
        for message in probe.groups_errors(list(data["groups"])):
            self.add_error("groups", message)
        return data

    def _save_m2m(self):
        super()._save_m2m()
        if "groups" in self.fields:
            connection_groups_set(connection=self.instance, groups=list(self.cleaned_data["groups"]))
