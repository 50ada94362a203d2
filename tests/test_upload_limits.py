"""Bodies nobody may send (SPEC 13): what someone not logged in posts is refused unread past a small limit, and an
upload is stopped at IMPEX_MAX_UPLOAD_BYTES while it streams in; nothing is spooled to disk on the way."""

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from impex.models import DataGroup, ImportJob
from impex.tests.helpers import bspk_name, special_order_row, table_text
from tests.admin_helpers import staff_user
from tests.raw_http import multipart, send

UPLOAD = reverse("admin:impex_importjob_upload")
MB = 1024**2
BOUNDARY = "impexboundary7MA4YWxkTrZu0gW"
# Any 32 letters are a CSRF secret a client may set itself: the cookie and the form field only have to agree.
CSRF = "a" * 32


@pytest.fixture
def spool(settings, tmp_path):
    """Where Django spools uploads to disk; any upload over 64 KB goes there, not into memory."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "spool")
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    (tmp_path / "spool").mkdir()
    return tmp_path / "spool"


@pytest.fixture
def importer(django_user_model, transactional_db, builtin_installed):
    return staff_user(django_user_model, "importer", "impex.view_importjob", "impex.run_import")


def special_orders(count: int) -> bytes:
    return table_text([special_order_row(f"SO-{i}") for i in range(count)], delimiter=",").encode()


def session_cookie(client, user) -> str:
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def post_upload(live_server, *, cookie: str, file_bytes: int, declared_file_bytes: int):
    """POST the upload form over a socket: the fields, then file_bytes of a file said to hold declared_file_bytes."""
    group = DataGroup.objects.get(code="bspk-special-orders")
    head, tail = multipart(
        {"csrfmiddlewaretoken": CSRF, "group": str(group.pk)},
        file_field="file",
        file_name="big.zip",
        boundary=BOUNDARY,
    )
    complete = file_bytes == declared_file_bytes
    return send(
        live_server.url + UPLOAD,
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Cookie": f"csrftoken={CSRF}; {cookie}".rstrip("; "),
        },
        head=head,
        filler=file_bytes,
        tail=tail if complete else b"",
        declared=len(head) + declared_file_bytes + len(tail),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_an_anonymous_300_mb_upload_is_refused_unread_and_nothing_is_spooled(live_server, spool):
    # 300 MB declared, 4 MB sent: the answer comes at once, before the CSRF check would read (and spool) the form.
    answer = post_upload(live_server, cookie="", file_bytes=4 * MB, declared_file_bytes=300 * MB)

    assert answer.status == 413
    assert answer.text.startswith("Request body too large: ")
    assert answer.text.endswith("64 KB allowed before logging in.")
    assert list(spool.iterdir()) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_an_anonymous_post_of_a_normal_size_still_reaches_the_login(live_server, django_user_model):
    django_user_model.objects.create_superuser("boss", password="a-long-password-1")
    login = reverse("admin:login")
    form = f"csrfmiddlewaretoken={CSRF}&username=boss&password=a-long-password-1&next=/admin/".encode()

    answer = send(
        live_server.url + login,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={CSRF}",
        },
        head=form,
        declared=len(form),
    )

    assert answer.status == 302
    assert answer.headers["Location"] == "/admin/"


def test_a_logged_in_upload_declared_over_the_limit_is_stopped_before_any_of_it_is_stored(
    live_server, client, importer, settings, spool
):
    settings.IMPEX_MAX_UPLOAD_BYTES = MB

    answer = post_upload(
        live_server, cookie=session_cookie(client, importer), file_bytes=4 * MB, declared_file_bytes=300 * MB
    )

    assert answer.status == 200
    assert "big.zip was stopped and nothing of it kept; an upload may be up to 1.0\xa0MB (IMPEX_MAX_UPLOAD_BYTES)" in (
        answer.text
    )
    assert list(spool.iterdir()) == []
    assert not ImportJob.objects.exists()


def test_a_logged_in_upload_is_stopped_at_the_limit_while_it_streams_in(live_server, client, importer, settings, spool):
    settings.IMPEX_MAX_UPLOAD_BYTES = MB

    # The length is honest (the file is 1.5 MB), but only 1.25 MB of it is sent: the page answers at the limit
    # without waiting for the rest, and what was spooled of it is gone.
    answer = post_upload(
        live_server,
        cookie=session_cookie(client, importer),
        file_bytes=MB + MB // 4,
        declared_file_bytes=MB + MB // 2,
    )

    assert answer.status == 200
    assert "big.zip was stopped and nothing of it kept; an upload may be up to 1.0\xa0MB" in answer.text
    assert list(spool.iterdir()) == []
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_a_normal_upload_is_spooled_stored_as_a_job_and_the_spool_is_emptied(
    client, django_user_model, spool, bspk_connection
):
    client.force_login(staff_user(django_user_model, "importer", "impex.view_importjob", "impex.run_import"))
    group = DataGroup.objects.get(code="bspk-special-orders")
    content = special_orders(2_000)
    assert len(content) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE  # spooled to disk on the way

    response = client.post(
        UPLOAD, {"group": group.pk, "file": SimpleUploadedFile(bspk_name("SPECIAL-ORDERS"), content)}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert ImportJob.objects.get().status == "queued"
    assert list(spool.iterdir()) == []


@pytest.mark.django_db
def test_an_upload_of_exactly_the_limit_goes_in(client, django_user_model, settings, spool, bspk_connection):
    client.force_login(staff_user(django_user_model, "importer", "impex.view_importjob", "impex.run_import"))
    content = special_orders(1)
    settings.IMPEX_MAX_UPLOAD_BYTES = len(content)
    group = DataGroup.objects.get(code="bspk-special-orders")

    response = client.post(
        UPLOAD, {"group": group.pk, "file": SimpleUploadedFile(bspk_name("SPECIAL-ORDERS"), content)}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert ImportJob.objects.count() == 1
