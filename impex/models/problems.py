"""Problems: failures that stop work until a person acts (SPEC 8)."""

from django.db import models
from django.utils import timezone

from impex.choices import ProblemKind
from impex.models.connections import Connection


class Problem(models.Model):
    """A failure that stops work until a person acts: open until the thing next succeeds or someone resolves it.

    Raised and resolved only by impex.services.problems; the key names the failing thing ("job:12", "scan:POS"),
    and at most one problem per key is open, so raising it again updates that one (and mails nobody again).
    """

    connection = models.ForeignKey(
        Connection,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="problems",
        help_text="Empty: a hub-wide problem (mailed to ADMINS).",
    )
    kind = models.CharField(max_length=20, choices=ProblemKind.choices, db_index=True)
    key = models.CharField(max_length=300, help_text="The failing thing, e.g. job:12 or exporter:ERP:order:O-1.")
    message = models.TextField(help_text="What failed and why.")
    url = models.CharField(max_length=500, blank=True, default="", help_text="The admin page where a person acts.")
    since = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen = models.DateTimeField(default=timezone.now)
    count = models.PositiveIntegerField(default=1, help_text="How many times it was raised while open.")
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="", help_text='"auto", or the user.')
    mailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-since", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(resolved_at__isnull=True), name="problem_one_open_per_key"
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.key}"
