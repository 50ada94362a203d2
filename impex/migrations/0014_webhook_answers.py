"""Keep receivers' answers apart from the messages everyone sees (issue 16, M1).

An attempt's answer stays in its response field (shown only to who may change the subscription); the copy its
message and its delivery's last error carried ("POST URL: 500: <answer>") goes.
"""

import re

from django.db import migrations, models

BATCH = 1000
# What the delivery pass wrote after an attempt's message: the next try, or the tries used up.
ENDS = r" \(try \d+ of \d+; next in | \(\d+ tries used up\)|$"
ANSWER = re.compile(r"(POST \S+: \d{3}): (.*?)(?=%s)" % ENDS, re.DOTALL)
REDIRECT = re.compile(r"(POST \S+: 3\d\d) redirect to .*? \(not followed", re.DOTALL)


def without_answer(text: str) -> str:
    """Return the text without the answer it quotes."""
    text = REDIRECT.sub(r"\1, a redirect (not followed", text)
    match = ANSWER.search(text)
    if match is None:
        return text
    return text[: match.start()] + match.group(1) + text[match.end() :]


def _rewrite(model, field: str) -> None:
    changed = []
    rows = model.objects.filter(**{f"{field}__contains": "POST "}).only("pk", field).iterator(chunk_size=BATCH)
    for row in rows:
        text = without_answer(getattr(row, field))
        if text == getattr(row, field):
            continue
        setattr(row, field, text)
        changed.append(row)
        if len(changed) >= BATCH:
            model.objects.bulk_update(changed, [field])
            changed = []
    if changed:
        model.objects.bulk_update(changed, [field])


def drop_answers(apps, schema_editor):
    _rewrite(apps.get_model("impex", "WebhookAttempt"), "message")
    _rewrite(apps.get_model("impex", "WebhookDelivery"), "last_error")


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0013_api_rate_cache_table'),
    ]

    operations = [
        migrations.AlterField(
            model_name='webhookattempt',
            name='response',
            field=models.TextField(blank=True, default='', help_text="The start of the receiver's answer (for who may change the subscription)."),
        ),
        migrations.RunPython(drop_answers, migrations.RunPython.noop),
    ]
