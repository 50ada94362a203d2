"""The order pages of the admin (issue 8, SPEC 7 and 13): held orders approved and rejected, failed exports retried,
the timeline, exporters and the flags transitions set; who may do what, checked on the server."""

import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from impex.models import DataDescriptor
from impex.services.queue import queue_claim, queue_finish
from orders.choices import FlagStatus, OrderState
from orders.models import Exporter, Order, OrderEvent, OrderExportRun, OrderFlag, TransitionFlag
from orders.services import FLAGS, flag_set, order_transition
from orders.tests.helpers import import_catalogue, import_orders, line_row, order_row
from tests.admin_helpers import admin_url, post_data, staff_user, table_snapshot

APPROVER = ("orders.view_order", "orders.approve_order")
# A webhook URL the hub takes without a name lookup: a public address (impex.outbound).
PUBLIC_URL = "https://93.184.216.34/in"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def messages_of(response) -> list[str]:
    """The messages this request added (those of earlier, unfollowed redirects are still in the cookie)."""
    return [m.message for m in get_messages(response.wsgi_request)._queued_messages]


def action_choices(response) -> list[str]:
    form = response.context["action_form"]
    return [name for name, _ in form.fields["action"].choices if name] if form else []


def listed(response) -> list[str]:
    return sorted(order.order_id for order in response.context["cl"].result_list)


def text_of(html: str) -> str:
    """The page's text: tags dropped, spaces squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _claimed(found: OrderFlag) -> OrderFlag:
    """Claim the delivery for worker-1, as an export pass does."""
    assert queue_claim(FLAGS, OrderFlag.objects.filter(pk=found.pk), worker="worker-1", size=1) == [found.pk]
    return found


def hold(order: Order, flag: str = "approval") -> Order:
    """Hold the order as the approval gate does: the hold transition, its flag taken and held."""
    order = order_transition(order=order, transition="hold", by="task: orders_export")
    found = _claimed(OrderFlag.objects.get(order=order, flag=flag))
    queue_finish(FLAGS, [found.pk], worker="worker-1", status=FlagStatus.HELD, count_attempt=False, attempts=1)
    return order


def fail(order: Order, flag: str, error: str = "HTTP 500: Internal Server Error") -> OrderFlag:
    """Put a failed flag on the order, as the export pass leaves one whose tries are used up."""
    found = _claimed(flag_set(order=order, flag=flag, by="test"))
    queue_finish(
        FLAGS,
        [found.pk],
        worker="worker-1",
        status=FlagStatus.FAILED,
        count_attempt=False,
        attempts=3,
        last_error=error,
    )
    found.refresh_from_db()
    return found


@pytest.fixture
def chain(db):
    """An approval gate on the flag approval that sends approved orders on to erp, written as a file."""
    Exporter.objects.create(code="gate", kind="approval", flag="approval", next_flag="erp", min_total="100")
    Exporter.objects.create(
        code="erp-file", kind="file", flag="erp", descriptor=DataDescriptor.objects.get(code="KS_ORDERS")
    )


@pytest.fixture
def shop(tmp_path, kore_connection, chain):
    """Orders O-1, O-2, O-3 imported with their lines (so confirmed, carrying approval); O-1 is held."""
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O-1", total="250"), order_row("O-2"), order_row("O-3", "CU2")],
        [line_row("O-1", 1), line_row("O-2", 1), line_row("O-3", 1, "SKU2")],
    )
    hold(Order.objects.get(order_id="O-1"))
    return {o.order_id: o for o in Order.objects.all()}


@pytest.fixture
def approver(client, django_user_model):
    client.force_login(staff_user(django_user_model, "ann", *APPROVER))
    return client


@pytest.fixture
def clerk(client, django_user_model):
    """Staff who may see orders (and change them, e.g. retry exports) but not approve them."""
    client.force_login(staff_user(django_user_model, "bob", "orders.view_order", "orders.change_order"))
    return client


def state_of(order_id: str) -> str:
    return Order.objects.get(order_id=order_id).state


def run_action(client, action: str, *orders: Order, query: str = "?approval=all", **extra):
    """Post an action of the orders list for the orders, as its action bar does."""
    data = {"action": action, "_selected_action": [o.pk for o in orders], "index": "0", **extra}
    return client.post(admin_url(Order, "changelist") + query, data)


def confirm_action(client, action: str, *orders: Order, reason: str, query: str = "?approval=all"):
    """Post the confirmation page of an action (its reason or note), as its form does."""
    data = {"action": action, "_selected_action": [o.pk for o in orders], "post": "yes", "reason": reason}
    return client.post(admin_url(Order, "changelist") + query, data)


# The list


def test_an_approver_sees_the_orders_awaiting_approval_by_default(approver, shop):
    url = admin_url(Order, "changelist")

    default = approver.get(url)
    every = approver.get(url, {"approval": "all"})
    confirmed = approver.get(url, {"state__exact": "confirmed"})

    assert listed(default) == ["O-1"]
    assert action_choices(default) == ["approve_held", "reject_held"]
    assert '<a href="?approval=awaiting">Awaiting approval</a>' in default.text
    assert re.search(r'<li class="selected">\s*<a href="\?approval=awaiting">Awaiting approval</a>', default.text)
    assert listed(every) == ["O-1", "O-2", "O-3"]
    assert re.search(r'<li class="selected">\s*<a href="\?approval=all">All</a>', every.text)
    # A filter of its own shows what it asks for, not what is left of the default list.
    assert listed(confirmed) == ["O-2", "O-3"]


def test_the_list_shows_each_orders_flags(approver, shop):
    fail(shop["O-2"], "webhook", "HTTP 500: the receiver fell over")

    response = approver.get(admin_url(Order, "changelist"), {"approval": "all"})

    text = text_of(response.text)
    assert "approval (held)" in text
    assert "approval (pending)" in text
    assert "webhook (failed: HTTP 500: the receiver fell over)" in text


def test_the_exports_filter(approver, shop):
    fail(shop["O-2"], "webhook")
    order_transition(order=shop["O-3"], transition="cancel", by="test")
    url = admin_url(Order, "changelist")

    failed = approver.get(url, {"exports": "failed"})
    pending = approver.get(url, {"exports": "pending"})
    held = approver.get(url, {"exports": "held"})
    none = approver.get(url, {"exports": "none"})
    erp_failed = approver.get(url, {"exports": "failed", "flag": "approval"})

    assert listed(failed) == ["O-2"]
    assert listed(pending) == ["O-2"]
    assert listed(held) == ["O-1"]
    assert listed(none) == ["O-3"]
    assert listed(erp_failed) == []


def test_others_see_every_order_by_default_and_no_approval_actions(clerk, shop):
    response = clerk.get(admin_url(Order, "changelist"))

    assert listed(response) == ["O-1", "O-2", "O-3"]
    assert action_choices(response) == ["retry_failed_exports", "retry_waiting_now"]


def test_the_list_runs_as_many_queries_for_thirty_orders_as_for_three(
    approver, tmp_path, kore_connection, chain, django_assert_max_num_queries
):
    import_catalogue(tmp_path)

    def add(first, count):
        ids = [f"O-{n:03d}" for n in range(first, first + count)]
        import_orders(tmp_path, [order_row(i) for i in ids], [line_row(i, 1) for i in ids])
        for n, order_id in enumerate(ids):
            order = Order.objects.get(order_id=order_id)
            if n % 3 == 0:
                hold(order)
            elif n % 3 == 1:
                fail(order, "webhook")

    urls = [admin_url(Order, "changelist"), admin_url(Order, "changelist") + "?approval=all"]
    add(0, 3)
    few = {}
    for url in urls:
        approver.get(url)
        with CaptureQueriesContext(connection) as queries:
            assert approver.get(url).status_code == 200
        few[url] = len(queries)

    add(3, 27)

    for url in urls:
        with django_assert_max_num_queries(few[url]):
            response = approver.get(url)
        assert len(response.context["cl"].result_list) >= (10 if "all" not in url else 30)


# Approving and rejecting: orders.approve_order, on the server


def test_staff_without_approve_order_see_no_buttons_and_are_refused(clerk, shop):
    held = shop["O-1"]
    before = table_snapshot()

    page = clerk.get(admin_url(Order, "change", held.pk))
    refused = {
        "approve action": run_action(clerk, "approve_held", held),
        "reject action": run_action(clerk, "reject_held", held),
        "approve confirmed": confirm_action(clerk, "approve_held", held, reason=""),
        "reject confirmed": confirm_action(clerk, "reject_held", held, reason="too big"),
        "approve view": clerk.post(admin_url(Order, "approve", held.pk), {"reason": "ok"}),
        "reject view": clerk.post(admin_url(Order, "reject", held.pk), {"reason": "too big"}),
        "approve page": clerk.get(admin_url(Order, "approve", held.pk)),
        "reject page": clerk.get(admin_url(Order, "reject", held.pk)),
    }

    assert page.status_code == 200
    assert "Waiting for approval" in page.text
    assert 'id="approve-form"' not in page.text and 'id="reject-form"' not in page.text
    assert admin_url(Order, "approve", held.pk) not in page.text
    assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 403)
    assert table_snapshot() == before
    assert state_of("O-1") == OrderState.ON_HOLD


def test_an_approver_sees_the_buttons_on_a_held_order_only(approver, shop):
    held = approver.get(admin_url(Order, "change", shop["O-1"].pk))
    confirmed = approver.get(admin_url(Order, "change", shop["O-2"].pk))

    assert 'id="approve-form"' in held.text
    assert f'action="{admin_url(Order, "approve", shop["O-1"].pk)}"' in held.text
    # Reject is no one-click form on the order's page: it leads to the page that confirms it (and asks the reason).
    assert (
        f'<a href="{admin_url(Order, "reject", shop["O-1"].pk)}" class="button order-reject" id="reject-button">'
        in (held.text)
    )
    assert f'action="{admin_url(Order, "reject", shop["O-1"].pk)}"' not in held.text
    assert 'name="reason"' in held.text
    assert 'id="approve-form"' not in confirmed.text and "Waiting for approval" not in confirmed.text
    assert 'id="reject-button"' not in confirmed.text


def test_approving_a_held_order_confirms_it_and_sets_the_next_flag(approver, shop, django_user_model):
    held = shop["O-1"]

    response = approver.post(admin_url(Order, "approve", held.pk), {"reason": "known customer"})

    assert response.status_code == 302
    assert response.url == admin_url(Order, "change", held.pk)
    assert "Approved O-1: it goes on along its chain." in messages_of(response)
    held.refresh_from_db()
    assert held.state == OrderState.CONFIRMED
    assert list(held.flags.values_list("flag", "status")) == [("erp", FlagStatus.PENDING)]
    event = held.events.get(transition="approve")
    assert (event.from_state, event.to_state, event.user.username, event.message) == (
        "on_hold",
        "confirmed",
        "ann",
        "known customer",
    )
    run = held.export_runs.get(exporter_code="gate")
    assert (run.status, run.flag, run.message) == ("done", "approval", "approved by ann: known customer")
    page = text_of(approver.get(admin_url(Order, "change", held.pk)).text)
    assert "Approve: On hold → Confirmed" in page
    assert "Flag set erp approved by ann" in page


def test_rejecting_needs_a_reason_and_asks_for_it_again(approver, shop):
    held = shop["O-1"]
    before = table_snapshot()

    from_page = approver.post(admin_url(Order, "reject", held.pk), {"reason": "   "})
    from_list = confirm_action(approver, "reject_held", held, reason="")

    for response in (from_page, from_list):
        assert response.status_code == 200
        assert response.templates[0].name == "admin/orders/order/decide.html"
        assert response.context["form"].errors["reason"] == [
            "Give the reason for rejecting: it is kept on the order's timeline."
        ]
        assert 'name="reason"' in response.text
    assert table_snapshot() == before


def test_rejecting_from_the_list_cancels_and_records_who_when_and_why(approver, shop):
    held = shop["O-1"]

    page = run_action(approver, "reject_held", held)
    done = confirm_action(approver, "reject_held", held, reason="customer on the blacklist")

    assert page.status_code == 200
    assert "O-1" in text_of(page.text) and "Reason" in page.text
    assert done.status_code == 302
    assert "Rejected O-1: cancelled." in messages_of(done)
    held.refresh_from_db()
    assert held.state == OrderState.CANCELLED
    assert not held.flags.exists()
    event = held.events.get(transition="reject")
    assert (event.user.username, event.message, event.to_state) == ("ann", "customer on the blacklist", "cancelled")
    timeline = text_of(approver.get(admin_url(Order, "change", held.pk)).text)
    assert f"{timezone.localtime(event.at):%Y-%m-%d %H:%M}" in timeline
    assert "ann Reject: On hold → Cancelled customer on the blacklist" in timeline
    assert "customer on the blacklist" in timeline


def test_the_actions_skip_orders_that_are_not_held_and_say_why(approver, shop):
    page = run_action(approver, "reject_held", shop["O-1"], shop["O-2"])
    done = run_action(approver, "approve_held", shop["O-1"], shop["O-2"])  # approving asks nothing: done at once
    nothing = run_action(approver, "reject_held", shop["O-2"], shop["O-3"])

    assert page.status_code == 200  # rejecting asks the reason first
    assert "Skipped, as they are not on hold: O-2 (Confirmed)." in text_of(page.text)
    assert done.status_code == 302
    assert messages_of(done) == [
        "Approved O-1: it goes on along its chain.",
        "Skipped O-2 (Confirmed): only orders on hold can be approved, and this one is not.",
    ]
    assert nothing.status_code == 302
    assert messages_of(nothing) == [
        "Skipped O-2 (Confirmed), O-3 (Confirmed): only orders on hold can be rejected, and these are not.",
        "No order was rejected: none of those chosen is on hold.",
    ]
    assert (state_of("O-1"), state_of("O-2"), state_of("O-3")) == ("confirmed", "confirmed", "confirmed")


def test_the_default_list_does_not_drop_chosen_orders_without_a_word(approver, shop):
    # Posted to the default list (awaiting approval), which does not show O-2.
    done = confirm_action(approver, "approve_held", shop["O-1"], shop["O-2"], reason="", query="")

    assert "Skipped O-2 (Confirmed): only orders on hold can be approved, and this one is not." in messages_of(done)
    assert state_of("O-1") == OrderState.CONFIRMED


def test_a_get_changes_nothing(approver, shop):
    held = shop["O-1"]
    before = table_snapshot()

    approve = approver.get(admin_url(Order, "approve", held.pk), {"reason": "ok"})
    reject = approver.get(admin_url(Order, "reject", held.pk), {"reason": "no"})
    retry = approver.get(admin_url(Order, "retry_flag", held.pk, held.flags.get().pk))

    assert (approve.status_code, reject.status_code) == (200, 200)
    assert retry.status_code == 403  # the approver may not retry
    assert table_snapshot() == before


def test_a_decision_on_an_order_no_longer_held_is_refused(approver, shop):
    order = shop["O-2"]
    before = table_snapshot()

    response = approver.post(admin_url(Order, "approve", order.pk), {"reason": ""})

    assert response.status_code == 302
    assert messages_of(response) == [
        "Nothing was approved: order O-2 can't approve: it is confirmed (approve is allowed from on_hold)."
    ]
    assert table_snapshot() == before


@pytest.mark.parametrize("how", ["view", "action"])
def test_decisions_refuse_a_post_without_the_csrf_token(django_user_model, shop, how):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user(django_user_model, "ann", *APPROVER))
    held = shop["O-1"]
    before = table_snapshot()

    if how == "view":
        refused = client.post(admin_url(Order, "reject", held.pk), {"reason": "too big"})
    else:
        refused = confirm_action(client, "reject_held", held, reason="too big")

    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert table_snapshot() == before
    page = client.get(admin_url(Order, "change", held.pk))
    token = str(page.context["csrf_token"])
    accepted = client.post(admin_url(Order, "reject", held.pk), {"reason": "too big", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert state_of("O-1") == OrderState.CANCELLED


# Retrying failed exports: orders.change_order


def test_retrying_failed_exports_from_the_list(clerk, shop):
    failed = fail(shop["O-2"], "webhook")

    response = run_action(clerk, "retry_failed_exports", shop["O-2"], shop["O-3"])

    assert response.status_code == 302
    assert messages_of(response) == [
        "Tried again: O-2: webhook. The export pass takes them up in a moment; the orders' timelines tell how it went.",
        "No failed export to retry on O-3.",
    ]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (FlagStatus.PENDING, 0)
    event = OrderEvent.objects.get(order=shop["O-2"], kind="retry")
    assert (event.flag, event.user.username) == ("webhook", "bob")
    assert "HTTP 500" in event.message


def test_retrying_a_failed_flag_from_the_orders_page(clerk, shop):
    failed = fail(shop["O-2"], "webhook")
    url = admin_url(Order, "retry_flag", shop["O-2"].pk, failed.pk)

    page = clerk.get(admin_url(Order, "change", shop["O-2"].pk))
    response = clerk.post(url)

    assert f'action="{url}"' in page.text
    assert 'value="Retry webhook"' in page.text
    assert response.status_code == 302
    assert messages_of(response) == ["webhook is tried again: the export pass takes it up in a moment."]
    failed.refresh_from_db()
    assert failed.status == FlagStatus.PENDING
    again = clerk.post(url)
    assert messages_of(again) == ["webhook is pending, not failed: nothing to retry."]


def test_retrying_needs_change_order(approver, shop):
    failed = fail(shop["O-2"], "webhook")
    before = table_snapshot()

    page = approver.get(admin_url(Order, "change", shop["O-2"].pk))
    view = approver.post(admin_url(Order, "retry_flag", shop["O-2"].pk, failed.pk))
    action = run_action(approver, "retry_failed_exports", shop["O-2"])

    assert "Retry webhook" not in page.text
    assert (view.status_code, action.status_code) == (403, 403)
    assert table_snapshot() == before


# The timeline


def test_the_timeline_merges_transitions_flags_and_runs_in_time_order(approver, shop):
    order = shop["O-2"]
    exporter = Exporter.objects.create(code="hook", kind="webhook", flag="webhook", url="https://example.com/in")
    fail(order, "webhook", "HTTP 502: bad gateway")
    OrderExportRun.objects.create(
        order=order,
        exporter=exporter,
        exporter_code="hook",
        flag="webhook",
        attempt=3,
        status="failed",
        http_status=502,
        message="HTTP 502: bad gateway",
        worker="worker-1",
    )
    order_transition(order=order, transition="cancel", by="task: test", reason="ordered twice")

    page = approver.get(admin_url(Order, "change", order.pk))

    rows = [text_of(row).strip() for row in re.findall(r'<tr class="timeline-.*?</tr>', page.text, re.S)]
    assert [row.split(" ", 3)[2] for row in rows] == ["Transition", "Flag", "Flag", "run", "Transition", "Note"]
    assert "Transition import Confirm: New → Confirmed its lines are in" in rows[0]
    assert "approval import" in rows[1]
    assert "webhook test" in rows[2]
    assert "run Failed webhook worker-1 exporter hook, try 3, HTTP 502 HTTP 502: bad gateway" in rows[3]
    assert "Cancel: Confirmed → Cancelled" in rows[4] and "task: test" in rows[4] and "ordered twice" in rows[4]
    assert "flags dropped: approval, webhook" in rows[5]
    flags = page.text.split('id="order-flags"')[1].split('id="order-timeline"')[0]
    assert "No flag" in flags


def test_the_page_shows_the_flags_now(approver, shop):
    fail(shop["O-2"], "webhook", "HTTP 500: oops")

    page = approver.get(admin_url(Order, "change", shop["O-2"].pk))

    flags = text_of(page.text.split('id="order-flags"')[1].split('id="order-timeline"')[0])
    assert "approval gate Pending 0" in flags
    assert "webhook none enabled yet Failed (retries used up) 3" in flags
    assert "HTTP 500: oops" in flags


# Exporters and the flags transitions set


@pytest.fixture
def superuser_client(admin_client, chain):
    return admin_client


def exporter_data(**values) -> dict:
    """The add form of an exporter, filled as a user would."""
    data = {"code": "hook", "name": "Hook", "kind": "webhook", "flag": "webhook", "enabled": "on"}
    data.update({"max_attempts": "10", "timeout_seconds": "10", "destination": "", "url": "", "secret": ""})
    data.update(values)
    return {key: value for key, value in data.items() if value is not None}


def form_errors(response) -> dict:
    assert response.status_code == 200, "the form was accepted"
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


def test_exporter_form_checks_each_kind(superuser_client):
    url = admin_url(Exporter, "add")
    ks_orders = DataDescriptor.objects.get(code="KS_ORDERS")

    no_url = form_errors(superuser_client.post(url, exporter_data()))
    bad_place = form_errors(
        superuser_client.post(
            url, exporter_data(kind="file", flag="files", descriptor=ks_orders.pk, destination="smb://host/out")
        )
    )
    # erp-file hands erp on to wms: another exporter of erp may leave its next flag empty, not name another one.
    Exporter.objects.filter(code="erp-file").update(next_flag="wms")
    next_differs = form_errors(superuser_client.post(url, exporter_data(url=PUBLIC_URL, flag="erp", next_flag="crm")))
    gate_flag = form_errors(superuser_client.post(url, exporter_data(url=PUBLIC_URL, flag="approval", next_flag="erp")))
    own_next = form_errors(superuser_client.post(url, exporter_data(url=PUBLIC_URL, next_flag="webhook")))

    assert no_url == {"url": ["A webhook exporter needs an http:// or https:// URL."]}
    assert list(bad_place) == ["destination"] and "Unknown scheme 'smb://'" in bad_place["destination"][0]
    assert next_differs == {
        "next_flag": [
            "The exporter erp-file of the flag erp hands orders on to wms: the exporters of one flag hand on to one "
            "next flag (set it on one of them, or the same on each)."
        ]
    }
    assert gate_flag == {
        "flag": [
            "The approval gate gate acts on the flag approval, and a gate must be the only exporter of its flag: give "
            "this exporter the gate's next flag instead."
        ]
    }
    assert own_next == {"next_flag": ["An exporter cannot hand an order on to its own flag."]}
    assert not Exporter.objects.filter(code="hook").exists()


def test_a_chain_that_loops_is_refused(superuser_client):
    Exporter.objects.filter(code="erp-file").update(next_flag="webhook")

    errors = form_errors(
        superuser_client.post(
            admin_url(Exporter, "add"), exporter_data(url=PUBLIC_URL, flag="webhook", next_flag="approval")
        )
    )

    assert errors == {
        "next_flag": [
            "The chain webhook -> approval -> erp -> webhook would go round for ever: end it with no next flag."
        ]
    }


def test_a_disabled_exporter_may_share_a_flag(superuser_client):
    response = superuser_client.post(
        admin_url(Exporter, "add"), exporter_data(url=PUBLIC_URL, flag="erp", enabled=None)
    )

    assert response.status_code == 302
    assert Exporter.objects.filter(flag="erp").count() == 2


def test_the_webhook_secret_is_never_shown_and_kept_when_left_empty(superuser_client):
    created = superuser_client.post(admin_url(Exporter, "add"), exporter_data(url=PUBLIC_URL, secret="s3cr3t-value"))
    hook = Exporter.objects.get(code="hook")
    url = admin_url(Exporter, "change", hook.pk)

    page = superuser_client.get(url)
    data = {**post_data(page.context["adminform"].form), "name": "Renamed", "_save": "Save"}
    kept = superuser_client.post(url, data)
    hook.refresh_from_db()
    secret_after_keep = hook.secret
    changed = superuser_client.post(url, {**data, "secret": "new-one"})
    hook.refresh_from_db()
    secret_after_change = hook.secret
    cleared = superuser_client.post(url, {**data, "clear_secret": "on"})
    hook.refresh_from_db()

    assert created.status_code == 302
    assert "s3cr3t-value" not in page.text
    assert 'type="password"' in page.text
    assert "A secret is set: leave this empty to keep the current secret." in page.text
    assert (kept.status_code, changed.status_code, cleared.status_code) == (302, 302, 302)
    assert (secret_after_keep, secret_after_change, hook.secret) == ("s3cr3t-value", "new-one", "")
    assert hook.name == "Renamed"


def test_the_exporters_list_counts_orders_on_each_flag(superuser_client, shop):
    fail(shop["O-2"], "erp")

    response = superuser_client.get(admin_url(Exporter, "changelist"))

    counts = {e.code: (e.pending, e.failed, e.held) for e in response.context["cl"].result_list}
    assert counts == {"erp-file": (0, 1, 0), "gate": (2, 0, 1)}
    assert "?flag=approval&amp;exports=held" in response.text
    failed = superuser_client.get(admin_url(Order, "changelist"), {"flag": "erp", "exports": "failed"})
    assert listed(failed) == ["O-2"]


def test_exporters_need_djangos_model_permissions(client, django_user_model, chain):
    client.force_login(staff_user(django_user_model, "viewer", "orders.view_exporter"))
    gate = Exporter.objects.get(code="gate")
    before = table_snapshot()

    page = client.get(admin_url(Exporter, "change", gate.pk))
    add = client.post(admin_url(Exporter, "add"), exporter_data(url=PUBLIC_URL))
    change = client.post(admin_url(Exporter, "change", gate.pk), exporter_data(code="gate", url=PUBLIC_URL))
    delete = client.post(admin_url(Exporter, "delete", gate.pk), {"post": "yes"})

    assert page.status_code == 200 and 'name="_save"' not in page.text
    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert table_snapshot() == before


def test_the_transition_flags_page_says_what_confirm_sets(superuser_client):
    url = admin_url(TransitionFlag, "changelist")

    without = superuser_client.get(url)
    TransitionFlag.objects.create(transition="confirm", flag="erp")
    TransitionFlag.objects.create(transition="cancel", flag="notify")
    with_rules = superuser_client.get(url)
    add = superuser_client.get(admin_url(TransitionFlag, "add"))

    assert "No rule for confirm: confirm sets the first flag of every chain, now approval." in without.text
    assert "confirm sets erp (its rules below)." in with_rules.text
    assert "no enabled exporter: the flag waits" in with_rules.text
    assert "With no rule for confirm, confirm sets the first flag of every chain" in add.text
