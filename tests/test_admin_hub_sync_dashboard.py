"""The hub-wide sync dashboard (SPEC section 8): every connection's entities with their last syncs and open errors,
rows synced per day across the hub in a chart with a y-axis and every date, in a fixed number of queries; linked
from the home page and the sync log list; for staff with the sync logs' view permission."""

import re
from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syncapp.models import SyncLog
from tests.admin_helpers import admin_url, staff_user
from tests.sync_helpers import customers_synced, shop_with_updates

URL = "/admin/syncapp/synclog/dashboard/"


@pytest.fixture
def synced(tmp_path, kore_connection):
    """kore-erp's customers: 3 synced today, 1 refused (no e-mail)."""
    return customers_synced(tmp_path, kore_connection)


def add_connection(code: str, *, days_ago: int = 2, errors: int = 1):
    """A shop with 3 single-record updates days ago and open errors."""
    return shop_with_updates(code, days_ago=[days_ago] * 3, errors=errors)


def test_the_dashboard_lists_every_connections_entities_and_charts_the_hub(admin_client, synced):
    add_connection("shop-eu", days_ago=2, errors=2)

    response = admin_client.get(URL)

    assert response.status_code == 200
    page = response.text
    rows = re.findall(r'<tr class="hub-sync-log[^"]*" data-connection="([^"]+)" data-entity="([^"]+)"', page)
    assert rows == [("kore-erp", "customer"), ("shop-eu", "product_variant")]
    assert re.search(r'id="hub-open-error-count"><a href="[^"]+">3</a>', page)
    assert re.search(r'id="hub-rows-synced">6<', page)  # 3 customers today, 3 single-record updates 2 days ago
    days = response.context["days"]
    assert len(days) == 30 and days[-1].day == timezone.localdate()
    assert (days[-1].rows, days[-1].errors) == (3, 1)
    assert days[-3].rows == 3
    assert response.context["totals"] == {"rows": 6, "errors": 1}
    kore, shop = response.context["logs"]
    assert (kore["activity"].rows, kore["activity"].errors, kore["log"].open_error_count) == (3, 1, 1)
    assert (shop["activity"].rows, shop["log"].open_error_count) == (3, 2)
    assert f'href="{admin_url(SyncLog, "change", synced.pk)}">Dashboard</a>' in page


def test_the_chart_fills_its_box_has_a_y_axis_and_every_date_the_last_included(admin_client, synced):
    response = admin_client.get(URL, {"days": 7})

    start = response.text.index('<svg class="sync-chart"')
    chart = response.text[start : response.text.index("</svg>", start)]
    assert 'width="' not in chart.split(">", 1)[0]  # sized by CSS: the box's full width
    assert chart.count('class="chart-day"') == 7
    today = timezone.localdate()
    labels = re.findall(r'<text class="day"[^>]*>(\d+)</text>', chart)
    assert labels == [str((today - timedelta(days=6 - n)).day) for n in range(7)]
    ticks = [int(t) for t in re.findall(r'<text class="tick"[^>]*>(\d+)</text>', chart)]
    assert ticks[0] == 0 and ticks[-1] >= 3 and len(ticks) >= 2
    assert "rows per day" in chart
    x_of_last = float(re.findall(r'<text class="day" x="([\d.]+)"', chart)[-1])
    assert x_of_last < response.context["chart"]["width"] - 10


@pytest.mark.parametrize("days", ["0", "abc", "365"])
def test_an_unknown_number_of_days_shows_30(admin_client, days):
    assert len(admin_client.get(URL, {"days": days}).context["days"]) == 30


def test_the_query_count_does_not_grow_with_connections_and_logs(admin_client, synced):
    admin_client.get(URL)
    with CaptureQueriesContext(db) as few:
        assert admin_client.get(URL).status_code == 200
    for n in range(4):
        add_connection(f"shop-{n}", days_ago=n, errors=n + 1)
    with CaptureQueriesContext(db) as many:
        response = admin_client.get(URL)

    assert len(response.context["logs"]) == 5
    assert len(many.captured_queries) == len(few.captured_queries) <= 8


def test_the_home_page_and_the_log_list_link_to_it(admin_client, synced):
    dashboard = reverse("admin:syncapp_synclog_dashboard")

    assert f'href="{dashboard}" id="hub-sync-dashboard-link"' in admin_client.get("/admin/").text
    assert f'href="{dashboard}" id="hub-sync-dashboard-link"' in admin_client.get(admin_url(SyncLog, "changelist")).text
    assert f'href="{dashboard}"' in admin_client.get(admin_url(SyncLog, "change", synced.pk)).text


def test_staff_need_the_view_permission_and_cannot_post(client, django_user_model, synced):
    client.force_login(staff_user(django_user_model, "nobody", "impex.view_importjob"))
    assert client.get(URL).status_code == 403
    assert 'id="hub-sync-dashboard-link"' not in client.get("/admin/").text

    client.force_login(staff_user(django_user_model, "viewer", "syncapp.view_synclog"))
    assert client.get(URL).status_code == 200
    assert client.post(URL, {}).status_code == 403
    assert SyncLog.objects.filter(pk=synced.pk).exists()
