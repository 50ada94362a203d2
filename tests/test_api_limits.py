"""The HTTP API's limits (SPEC 10 and 13): body sizes (IMPEX_API_MAX_BODY), JSON it cannot use, who may read the
schema, and the request rate per token (IMPEX_API_RATE)."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import connection

from impex.services.tokens import api_token_issue
from impex.tests.helpers import process_env
from orders.models import FeedEvent
from syncapp.models import RecordEvent, SyncError
from tests.admin_helpers import staff_user
from tests.fixtures import free_port, server_process
from tests.raw_http import send

pytestmark = pytest.mark.django_db

FEED = "/api/feeds/shipments/"
CUSTOMERS = "/api/events/customers/"
SYNC_LOG = "/api/sync-logs/customer/"
EXTRACT = "/api/extract/customers/"
MB = 1024**2

# Every endpoint that reads a body, with a body it accepts (202 or 200).
BODY_ENDPOINTS = [
    ("POST", FEED),
    ("PUT", SYNC_LOG),
    ("PATCH", SYNC_LOG),
    ("POST", CUSTOMERS),
    ("POST", "/api/events/products/"),
]


def nested(depth: int) -> str:
    return '{"events": ' + "[" * depth + "]" * depth + "}"


# -- sizes ----------------------------------------------------------------------------------------------------------


def test_a_body_bigger_than_django_s_2_5_mb_default_is_read(api):
    errors = [{"external_id": f"X{i}", "message": "m" * 9_000} for i in range(400)]
    body = json.dumps({"errors": errors})
    assert 3 * MB < len(body) < settings.IMPEX_API_MAX_BODY

    response = api.put(SYNC_LOG, raw=body)

    assert response.status_code == 200, response.content[:300]
    assert SyncError.objects.count() == 400


def test_a_body_over_the_limit_is_a_json_413_naming_the_limit(api):
    assert settings.IMPEX_API_MAX_BODY == 10 * MB  # SPEC 10's default
    body = json.dumps({"customer_id": "C-1", "email": "x" * (10 * MB)})

    response = api.post(CUSTOMERS, raw=body)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": f"the body is {len(body)} bytes, larger than IMPEX_API_MAX_BODY (10 MB)",
    }
    assert not RecordEvent.objects.exists()


def test_the_limit_is_a_setting(api, settings):
    settings.IMPEX_API_MAX_BODY = 2 * 1024
    small = json.dumps({"errors": [{"external_id": "X1", "message": "m" * 1_900}]})
    big = json.dumps({"errors": [{"external_id": "X1", "message": "m" * 2_100}]})

    assert api.put(SYNC_LOG, raw=small).status_code == 200
    refused = api.put(SYNC_LOG, raw=big)
    assert refused.status_code == 413
    assert refused.json()["detail"].endswith("larger than IMPEX_API_MAX_BODY (2 KB)")


@pytest.mark.django_db(transaction=True)
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(live_server, kore_connection):
    token = api_token_issue(connection=kore_connection, by="test")

    # 300 MB declared, 2 MB sent: the answer comes without the server waiting for (or reading) the rest.
    answer = send(
        live_server.url + FEED,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        head=b'{"events": [',
        filler=2 * MB,
        declared=300 * MB,
    )

    assert answer.status == 413
    assert json.loads(answer.body) == {
        "detail": "the body is 300 MB, larger than IMPEX_API_MAX_BODY (10 MB)",
    }


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_refused_with_411_not_read_as_empty(live_server, kore_connection):
    token = api_token_issue(connection=kore_connection, by="test")
    body = json.dumps({"events": [{"event_id": "E1", "shipment_id": "S1", "order_id": "O1", "shipped_at": "2026"}]})

    answer = send(
        live_server.url + FEED,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        head=body.encode(),
        chunked=True,
    )

    assert answer.status == 411
    assert json.loads(answer.body) == {
        "detail": "send the body with a Content-Length header: a chunked body is not read"
    }
    assert not FeedEvent.objects.exists()


# -- JSON the API cannot use ------------------------------------------------------------------------------------------

BAD_BODIES = {
    "nested far too deep": (nested(100_000), "the JSON nests deeper than 32 levels"),
    "nested deeper than 32": (nested(33), 'the JSON nests deeper than 32 levels (at the body["events"]'),
    "a lone surrogate in a value": (
        '{"events": [{"event_id": "E\\ud800"}], "errors": [{"external_id": "\\udfff"}], "customer_id": "\\ud800"}',
        "holds a lone UTF-16 surrogate (\\ud",
    ),
    "a lone surrogate in a key": ('{"\\ud800": "x", "events": []}', "a key of the body holds a lone UTF-16 surrogate"),
    "a lone surrogate as the body": (
        '"\\udbff"',
        "the body holds a lone UTF-16 surrogate (\\udbff), which is not text",
    ),
    "bytes that are not UTF-8": (b'{"customer_id": "\xed\xa0\x80"}', "the body is not utf-8 text"),
    "not JSON": ('{"events": [', "JSON parse error - "),
    "NaN": ('{"events": NaN}', "JSON parse error - Out of range float values are not JSON compliant"),
    "a number out of range": (
        '{"customer_id": 1e400, "events": []}',
        "JSON parse error - the number 1e400 is out of range",
    ),
}


@pytest.mark.parametrize("method, url", BODY_ENDPOINTS)
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_json_the_api_cannot_use_is_a_400_saying_why(api, method, url, case):
    body, message = BAD_BODIES[case]

    response = api.call(method, url, raw=body)

    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert message in response.json()["detail"]
    assert not RecordEvent.objects.exists() and not FeedEvent.objects.exists() and not SyncError.objects.exists()


def test_a_surrogate_pair_is_one_character_and_goes_in(api):
    response = api.put(SYNC_LOG, raw='{"errors": [{"external_id": "X1", "message": "\\ud83d\\ude00 sent"}]}')

    assert response.status_code == 200
    assert SyncError.objects.get().message == "\U0001f600 sent"


# -- the schema -----------------------------------------------------------------------------------------------------


def test_anonymous_users_do_not_get_the_schema(client):
    response = client.get("/api/schema/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="impex-hub"'
    assert "openapi" not in response.content.decode()


def test_staff_read_the_schema_in_their_session_and_others_logged_in_do_not(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("shopper", password="x"))
    assert client.get("/api/schema/").status_code == 403

    client.force_login(staff_user(django_user_model, "viewer"))
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert FEED in response.json()["paths"]


def test_a_connection_s_token_reads_the_schema(api):
    response = api.get("/api/schema/", format="json")

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


# -- the request rate -----------------------------------------------------------------------------------------------


def test_a_token_past_its_rate_gets_429_with_retry_after_and_another_token_does_not(api, settings, kore_connection):
    settings.IMPEX_API_RATE = "3/min"
    assert [api.get(EXTRACT).status_code for _ in range(3)] == [200, 200, 200]

    refused = api.get(EXTRACT)
    also_refused = api.post(CUSTOMERS, {"customer_id": "C-1"})

    assert refused.status_code == also_refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Request was throttled.")
    assert not RecordEvent.objects.exists()
    # Per token, not per address: the same client with another token of the same connection goes on.
    other = api_token_issue(connection=kore_connection, by="test")
    assert api.get(EXTRACT, token=other).status_code == 200


def test_retry_after_is_sent_after_the_rate_was_lowered(api, settings):
    settings.IMPEX_API_RATE = "5/min"
    assert [api.get(EXTRACT).status_code for _ in range(4)] == [200] * 4

    settings.IMPEX_API_RATE = "2/min"
    refused = api.get(EXTRACT)

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60


@pytest.fixture
def second_web_server(transactional_db):
    """`manage.py runserver` in a process of its own on this test's database, as a second web machine would be."""
    port = free_port()
    with server_process(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        port,
        name="runserver",
        timeout=60,
        cwd=settings.BASE_DIR,
        env=process_env(IMPEX_API_RATE="4/min"),
    ):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="two web servers share the database here: PostgreSQL only (CI runs it)",
)
@pytest.mark.usefixtures("builtin_installed")
def test_two_web_servers_count_a_token_together_and_exactly(live_server, second_web_server, kore_connection, settings):
    settings.IMPEX_API_RATE = "4/min"
    token = api_token_issue(connection=kore_connection, by="test")

    # 30 requests at once, half to each server (two processes): the rate is 4 whichever server counts.
    def call(url):
        return send(url + EXTRACT, method="GET", headers={"Authorization": f"Bearer {token}"}).status

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(call, [live_server.url, second_web_server] * 15))

    assert sorted(statuses) == [200] * 4 + [429] * 26
