"""Forms of the hub's own admin pages: uploading files to import."""

from django import forms
from django.template.defaultfilters import filesizeformat

from impex.choices import GroupDirection
from impex.models import Connection, DataGroup
from impex.services.uploads import UploadRefused, upload_check, upload_expectations, upload_limit


class UploadForm(forms.Form):
    """A file or a zip of files for an import group, imported now or dry-run."""

    group = forms.ModelChoiceField(
        queryset=DataGroup.objects.filter(direction=GroupDirection.IMPORT)
        .select_related("connection")
        .order_by("code"),
        help_text="Each file is matched to a descriptor of this group by its name, and imported in order.",
    )
    connection = forms.ModelChoiceField(
        queryset=Connection.objects.order_by("code"),
        required=False,
        empty_label="Found from the file names",
        help_text="The system that sent the files. Left empty, the company or integration id in the names says it.",
    )
    file = forms.FileField(
        label="File or zip",
        help_text="A zip of several files, or one CSV, TSV or XML file; up to {limit}.",
    )
    dry_run = forms.BooleanField(
        required=False,
        label="Dry run",
        help_text="Show what would happen (counts, changes, what would be retired) and write nothing.",
    )

    def __init__(self, *args, stopped: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        if stopped:
            # The upload handler stopped the file at the limit: say so where "this field is required" would be.
            self.fields["file"].error_messages["required"] = stopped
        limit = upload_limit()
        self.fields["file"].help_text = self.fields["file"].help_text.format(limit=filesizeformat(limit))
        self.fields["file"].widget.attrs["data-max-bytes"] = str(limit)
        self.fields["group"].label_from_instance = lambda g: f"{g.code} ({g.name})" if g.name != g.code else g.code

    def clean(self):
        data = super().clean()
        group, connection, upload = data.get("group"), data.get("connection"), data.get("file")
        if group is not None and connection is not None and group.connection_id not in (None, connection.pk):
            self.add_error(
                "connection",
                f"The group {group.code} belongs to the connection {group.connection}: choose it, or leave it empty.",
            )
            return data  # the names would be checked against a connection the upload cannot have
        if upload is not None:
            try:
                upload_check(upload=upload, group=group, connection=connection)
            except UploadRefused as exc:
                self.add_error("file", exc.problems)
        return data

    def expectations(self) -> dict:
        """The names each import group expects, per connection, for the page to show beside the group."""
        return upload_expectations()
