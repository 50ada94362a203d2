"""SPEC 13: django-q2's own pages (schedules, tasks, the queue) are for superusers only, whatever others hold.

A schedule's func is any importable name, which the cluster runs: with django-q2's add or change permission on
schedules a staff user could make the cluster run `os.system` (issue 16, H1).
"""

import uuid

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Task
from django_q.tasks import async_task

from impex.models import Connection
from impex.services.schedules import SCAN_TASK, SYSTEM_SCHEDULES, schedules_sync
from tests.admin_helpers import admin_url, staff_user

pytestmark = pytest.mark.django_db

DJANGO_Q_MODELS = [m for m in admin.site._registry if m._meta.app_label == "django_q"]
HUB_SCHEDULE = next(iter(SYSTEM_SCHEDULES))
TASK = "impex.tasks.webhooks_deliver"


@pytest.fixture
def rows():
    """A row of each of django-q2's pages: the hub's schedules, a task done, a task failed, a task queued."""
    schedules_sync()
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=uuid.uuid4().hex, name=f"task-{success}", func=TASK, started=now, stopped=now, success=success
        )
    async_task(TASK, task_name="queued")
    assert OrmQ.objects.count() == 1


def django_q_urls():
    """Every URL of django-q2's admin pages, with the pk of a real row where one is needed, and its app page."""
    urls = [reverse("admin:app_list", args=["django_q"])]
    for model in DJANGO_Q_MODELS:
        pk = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
        assert pk is not None, f"no {model._meta.label} row to open"
        for pattern in admin.site._registry[model].get_urls():
            if pattern.name:
                urls.append(reverse(f"admin:{pattern.name}", kwargs={k: pk for k in pattern.pattern.converters}))
    return urls


@pytest.fixture
def q_staff(client, django_user_model):
    """A staff user (not a superuser) holding every permission django-q2 has, logged in."""
    user = staff_user(django_user_model, "q-staff")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="django_q"))
    client.force_login(user)
    return client


def test_django_q2s_pages_are_all_registered():
    assert sorted(m._meta.model_name for m in DJANGO_Q_MODELS) == ["failure", "ormq", "schedule", "success"]


def test_staff_with_every_django_q2_permission_opens_none_of_its_pages(q_staff, rows):
    urls = django_q_urls()

    answers = {url: q_staff.get(url).status_code for url in urls}

    assert len(urls) > 15
    assert answers == dict.fromkeys(urls, 403)


def test_staff_with_every_django_q2_permission_do_not_see_its_pages_listed(q_staff, rows):
    page = q_staff.get(reverse("admin:index"))

    assert page.status_code == 200
    assert "django_q" not in [app["app_label"] for app in page.context["app_list"]]
    assert "/admin/django_q/" not in page.text


def test_staff_with_every_django_q2_permission_cannot_make_a_schedule_run_a_command(q_staff, rows):
    before = list(Schedule.objects.order_by("pk").values())
    command = {"name": "x", "func": "os.system", "args": "'touch /tmp/owned'", "schedule_type": "O", "repeats": "-1"}
    hub = Schedule.objects.get(name=HUB_SCHEDULE)

    added = q_staff.post(admin_url(Schedule, "add"), {**command, "next_run_0": "2026-01-01", "next_run_1": "00:00"})
    changed = q_staff.post(admin_url(Schedule, "change", hub.pk), {**command, "name": hub.name})
    deleted = q_staff.post(admin_url(Schedule, "delete", hub.pk), {"post": "yes"})

    assert (added.status_code, changed.status_code, deleted.status_code) == (403, 403, 403)
    assert list(Schedule.objects.order_by("pk").values()) == before
    assert Schedule.objects.get(name=HUB_SCHEDULE).func == SYSTEM_SCHEDULES[HUB_SCHEDULE][0]


def test_staff_with_every_django_q2_permission_cannot_resubmit_a_task(q_staff, rows):
    failed = Task.objects.get(success=False)

    response = q_staff.post(
        admin_url(Failure, "changelist"),
        {"action": "resubmit_task", "_selected_action": [failed.pk], "index": "0"},
    )

    assert response.status_code == 403
    assert OrmQ.objects.count() == 1
    assert Task.objects.filter(pk=failed.pk).exists()


def test_anonymous_users_are_sent_to_the_login_page(client, rows):
    for url in django_q_urls():
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login")), url


def test_superusers_open_django_q2s_pages(admin_client, rows):
    pages = [reverse("admin:app_list", args=["django_q"]), admin_url(Schedule, "add")]
    for model in DJANGO_Q_MODELS:
        pk = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
        pages += [admin_url(model, "changelist"), admin_url(model, "change", pk)]

    answers = {url: admin_client.get(url).status_code for url in pages}

    assert answers == dict.fromkeys(pages, 200)
    index = admin_client.get(reverse("admin:index"))
    assert "django_q" in [app["app_label"] for app in index.context["app_list"]]


def test_the_hubs_sync_now_needs_only_its_own_permission(
    client, django_user_model, kore_connection, django_capture_on_commit_callbacks
):
    # The hub queues its tasks itself: an operator with run_import and no django-q2 page starts a scan.
    client.force_login(staff_user(django_user_model, "operator", "impex.view_connection", "impex.run_import"))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(admin_url(Connection, "sync_now", kore_connection.pk))
    queue = client.get(admin_url(OrmQ, "changelist"))

    assert response.status_code == 302
    assert [(q.task["func"], q.task["args"]) for q in OrmQ.objects.all()] == [
        (SCAN_TASK, (kore_connection.pk, "operator"))
    ]
    assert queue.status_code == 403
