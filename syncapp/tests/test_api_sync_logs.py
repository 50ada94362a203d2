"""Sync logs over HTTP (SPEC sections 8 and 10): PUT, PATCH, GET and DELETE /api/sync-logs/{entity}/."""

import pytest

from impex.models import Connection
from impex.services.tokens import api_token_issue
from syncapp.models import SyncError, SyncLog

URL = "/api/sync-logs/customer/"


def errors_of(response) -> dict:
    return {e["external_id"]: e["message"] for e in response.json()["errors"]}


def test_put_starts_a_full_log_with_its_errors(api):
    response = api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]})

    assert response.status_code == 200
    body = response.json()
    assert body["entity"] == "customer"
    assert body["last_full_sync"] is None
    assert body["last_partial_sync"] is None
    assert [(e["external_id"], e["message"]) for e in body["errors"]] == [("C-1", "bad email")]
    assert body["errors"][0]["first_seen"] == body["errors"][0]["last_seen"]


def test_put_clears_the_errors_of_the_previous_log(api):
    api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]})
    api.patch(URL, {"errors": [{"external_id": "C-2", "message": "no name"}]})

    response = api.put(URL, {"errors": [{"external_id": "C-3", "message": "bad group"}]})

    assert errors_of(response) == {"C-3": "bad group"}
    assert SyncError.objects.count() == 1


def test_put_may_say_the_full_sync_is_done(api):
    response = api.put(URL, {"errors": [], "last_full_sync": "2026-12-01T10:00:00Z"})

    assert response.json()["last_full_sync"] == "2026-12-01T10:00:00Z"
    assert response.json()["errors"] == []


def test_put_refuses_ids_to_resolve(api):
    response = api.put(URL, {"resolved": ["C-1"]})

    assert response.status_code == 400
    assert "resolved" in response.json()


def test_patch_adds_errors_and_keeps_the_rest(api):
    api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]})

    response = api.patch(URL, {"errors": [{"external_id": "C-2", "message": "no name"}]})

    assert response.status_code == 200
    assert errors_of(response) == {"C-1": "bad email", "C-2": "no name"}
    assert response.json()["last_partial_sync"] is not None
    assert response.json()["last_full_sync"] is None


def test_patch_resolves_the_listed_ids_only(api):
    api.put(URL, {"errors": [{"external_id": x, "message": "bad"} for x in ("C-1", "C-2", "C-3")]})

    response = api.patch(URL, {"resolved": ["C-1", "C-3", "C-404"]})

    assert errors_of(response) == {"C-2": "bad"}


def test_one_open_error_per_external_id_keeps_first_seen(api):
    first = api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]}).json()["errors"][0]

    response = api.patch(URL, {"errors": [{"external_id": "C-1", "message": "still bad"}]})

    (error,) = response.json()["errors"]
    assert error["message"] == "still bad"
    assert error["first_seen"] == first["first_seen"]
    assert error["last_seen"] >= first["last_seen"]
    assert SyncError.objects.filter(external_id="C-1").count() == 1


def test_patch_may_set_last_full_sync(api):
    api.put(URL, {"errors": []})

    response = api.patch(URL, {"last_full_sync": "2026-12-02T08:30:00+01:00"})

    assert response.json()["last_full_sync"] == "2026-12-02T07:30:00Z"


def test_patch_on_no_log_starts_one(api):
    response = api.patch(URL, {"errors": [{"external_id": "C-9", "message": "x"}]})

    assert response.status_code == 200
    assert errors_of(response) == {"C-9": "x"}


def test_get_reads_the_log_and_404_without_one(api):
    assert api.get(URL).status_code == 404
    api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]})

    response = api.get(URL)

    assert response.status_code == 200
    assert set(response.json()) == {"entity", "last_full_sync", "last_partial_sync", "errors"}
    assert set(response.json()["errors"][0]) == {"external_id", "message", "first_seen", "last_seen"}


def test_delete_drops_the_log_and_its_errors(api):
    api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]})

    assert api.delete(URL).status_code == 204
    assert api.get(URL).status_code == 404
    assert not SyncError.objects.exists()
    assert api.delete(URL).status_code == 404


def test_logs_are_per_connection(api, client, bspk_connection):
    api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]})
    other = api_token_issue(connection=bspk_connection, by="test")

    assert api.get(URL, token=other).status_code == 404
    api.put(URL, {"errors": []}, token=other)
    assert errors_of(api.get(URL)) == {"C-1": "bad email"}


def test_deleting_the_connection_deletes_its_logs(api, kore_connection):
    api.put(URL, {"errors": [{"external_id": "C-1", "message": "bad email"}]})

    Connection.objects.filter(pk=kore_connection.pk).delete()

    assert not SyncLog.objects.exists()
    assert not SyncError.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"errors": [{"external_id": "C-1"}]}, "errors"),
        ({"errors": [{"message": "x"}]}, "errors"),
        ({"errors": [{"external_id": "", "message": "x"}]}, "errors"),
        ({"errors": "C-1"}, "errors"),
        ({"errors": [{"external_id": "C-1", "message": "a"}, {"external_id": "C-1", "message": "b"}]}, "errors"),
        ({"resolved": "C-1"}, "resolved"),
        ({"errors": [{"external_id": "C-1", "message": "a"}], "resolved": ["C-1"]}, "resolved"),
        ({"last_full_sync": "yesterday"}, "last_full_sync"),
        ({"errors": [{"external_id": "x" * 201, "message": "a"}]}, "errors"),
    ],
)
def test_a_body_that_does_not_validate_is_400_with_the_field_and_changes_nothing(api, body, field):
    api.put(URL, {"errors": [{"external_id": "C-0", "message": "kept"}]})

    response = api.patch(URL, body)

    assert response.status_code == 400
    assert field in response.json()
    assert errors_of(api.get(URL)) == {"C-0": "kept"}
    assert api.get(URL).json()["last_partial_sync"] is None


def test_not_json_is_400(api):
    response = api.patch(URL, raw="{not json")

    assert response.status_code == 400


def test_an_unknown_entity_is_404(api):
    response = api.put("/api/sync-logs/spaceship/", {"errors": []})

    assert response.status_code == 404
    assert "customer" in response.json()["detail"]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_no_or_a_wrong_token_is_401_and_changes_nothing(api, method, token):
    api.put(URL, {"errors": [{"external_id": "C-0", "message": "kept"}]})

    response = api.call(method, URL, {"errors": []}, token=token or "")
    if not token:
        response = api.client.generic(method, URL, '{"errors": []}', content_type="application/json")

    assert response.status_code == 401
    assert errors_of(api.get(URL)) == {"C-0": "kept"}


def test_the_path_without_its_slash_works_too(api):
    response = api.put(URL.rstrip("/"), {"errors": [{"external_id": "C-1", "message": "bad"}]})

    assert response.status_code == 200
    assert errors_of(api.get(URL)) == {"C-1": "bad"}
