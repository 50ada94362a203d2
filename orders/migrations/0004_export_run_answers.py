"""Keep receivers' answers apart from the messages everyone sees (issue 16, M1).

Runs get a response field, shown only to who may change exporters; the answers earlier runs, flags and timeline
rows carried in their messages ("POST URL: 500: <answer>") move there or go.
"""

import re

from django.db import migrations, models

BATCH = 1000
# What the chain and flag_retry wrote after an answer: a run's outcome, or the ")" closing a retry's last error.
RUN_ENDS = r"; try \d+ of \d+, next at |; gave up after \d+ tries|; not retried: "
ANSWER = r"(POST \S+: \d{3}): (.*?)(?=%s)"
REDIRECT = re.compile(r"(POST \S+: 3\d\d) redirect to .*? \(not followed", re.DOTALL)


def _pattern(ends: str):
    return re.compile(ANSWER % ends, re.DOTALL)


def without_answer(text: str, pattern) -> tuple[str, str]:
    """Return the text without the answer it quotes, and that answer."""
    text = REDIRECT.sub(r"\1, a redirect (not followed", text)
    match = pattern.search(text)
    if match is None:
        return text, ""
    return text[: match.start()] + match.group(1) + text[match.end() :], match.group(2)


def _rewrite(queryset, field: str, pattern, answer_field: str = "") -> None:
    changed = []
    fields = [field] + ([answer_field] if answer_field else [])
    for row in queryset.filter(**{f"{field}__contains": "POST "}).only("pk", *fields).iterator(chunk_size=BATCH):
        text, answer = without_answer(getattr(row, field), pattern)
        if text == getattr(row, field):
            continue
        setattr(row, field, text)
        if answer_field and not getattr(row, answer_field):
            setattr(row, answer_field, answer)
        changed.append(row)
        if len(changed) >= BATCH:
            queryset.model.objects.bulk_update(changed, fields)
            changed = []
    if changed:
        queryset.model.objects.bulk_update(changed, fields)


def move_answers(apps, schema_editor):
    runs = _pattern(RUN_ENDS + "|$")
    _rewrite(apps.get_model("orders", "OrderExportRun").objects.all(), "message", runs, "response")
    _rewrite(apps.get_model("orders", "OrderFlag").objects.all(), "last_error", _pattern("$"))
    events = apps.get_model("orders", "OrderEvent").objects
    _rewrite(events.filter(kind="export_failed"), "message", runs)
    _rewrite(events.filter(kind="retry"), "message", _pattern(r"\)$"))


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0003_extract_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='orderexportrun',
            name='response',
            field=models.TextField(blank=True, default='', help_text="webhook: the start of the receiver's answer (for who may change exporters)."),
        ),
        migrations.RunPython(move_answers, migrations.RunPython.noop),
    ]
