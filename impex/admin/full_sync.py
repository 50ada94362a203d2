"""'Trigger a data sync' in the admin, on a connection's page and on an export group's: a confirmation, then the
full sync (impex.services.full_sync); impex.export_data, as 'Run export now', since it runs exports."""

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format

from impex.admin.export_views import EXPORT_PERMISSION
from impex.entities import entity_verbose_name
from impex.exceptions import ImpexError
from impex.models import Connection
from impex.services.full_sync import full_sync_trigger

FULL_SYNC_PERMISSION = EXPORT_PERMISSION


def full_sync_page(model_admin, request, *, connection: Connection, exports: dict[str, list[str]], obj, object_url):
    """GET: say what a full sync of each entity with scheduled exports does and ask to confirm; POST (post=yes):
    start the chosen entity's, then go back to object_url. exports: the export group codes by entity."""
    chosen = request.POST.get("entity") or request.GET.get("entity") or ""
    if chosen not in exports and len(exports) == 1:
        chosen = next(iter(exports))
    if request.method == "POST" and request.POST.get("post") == "yes":
        if chosen in exports:
            _start(model_admin, request, connection=connection, entity=chosen, obj=obj)
            return HttpResponseRedirect(object_url)
        model_admin.message_user(request, "Choose the data to sync: nothing was started.", messages.ERROR)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"Trigger a data sync of {connection.code}?",
        "connection": connection,
        "object": obj,
        "object_url": object_url,
        "entities": [
            {"name": name, "verbose_name": entity_verbose_name(name), "exports": codes, "checked": name == chosen}
            for name, codes in exports.items()
        ],
        "single": len(exports) == 1,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/impex/full_sync.html", context)


def _start(model_admin, request, *, connection: Connection, entity: str, obj) -> None:
    try:
        started = full_sync_trigger(connection=connection, entity=entity, by=request.user.get_username())
    except ImpexError as exc:
        model_admin.message_user(request, f"{exc}", messages.ERROR)
        return
    full_sync = started.full_sync
    name = f"full sync #{full_sync.pk} of {entity} for {connection.code}"
    if started.joined:
        since = date_format(timezone.localtime(full_sync.created_at), "DATETIME_FORMAT")
        again = f" {', '.join(started.retried)}, whose run of it failed, run again now." if started.retried else ""
        model_admin.message_user(
            request,
            f"The {name}, started {since} by {full_sync.created_by or 'the hub'}, is still under way: it goes on, "
            f"and nothing was started twice.{again}",
            messages.WARNING,
        )
        return
    model_admin.log_change(request, obj, f"Trigger a data sync: {name} started.")
    model_admin.message_user(
        request,
        f"The {name} has started: its sync log starts over, and {', '.join(started.exports)} each write every "
        "record to their destination once a worker takes them. The log's last full sync is set when the last of "
        "them has written its file.",
        messages.SUCCESS,
    )
