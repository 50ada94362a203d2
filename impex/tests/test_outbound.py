"""Outbound calls go only to public addresses unless the host is listed (SPEC 13): checked by name and on connect."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from impex.outbound import OutboundRefused, connect, host_refusal, url_refusal
from impex.services.signed_post import PostFailed, signed_post


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.5", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "address"),
        ("100.64.0.1", "not a public address"),
        ("224.0.0.1", "address"),
    ],
)
def test_addresses_that_are_not_public_are_refused_with_the_setting_named(nothing_listed, host, why):
    message = host_refusal(host, 443)
    assert why in message
    assert "IMPEX_ALLOWED_HOSTS_OUTBOUND" in message


def test_a_public_address_is_allowed(nothing_listed):
    assert host_refusal("93.184.216.34", 443) == ""
    assert host_refusal("2606:4700:4700::1111", 443) == ""


def test_a_listed_host_name_or_network_is_allowed(settings):
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = ["localhost", "10.0.0.0/8"]
    assert host_refusal("localhost", 80) == ""
    assert host_refusal("10.20.30.40", 80) == ""
    assert "private" in host_refusal("192.168.1.1", 80)
    # Listing a name does not list the addresses it points to under another name.
    assert "loopback" in host_refusal("127.0.0.1", 80)


def test_a_host_that_does_not_resolve_is_refused(nothing_listed):
    assert "cannot be resolved" in host_refusal("no-such-host.invalid", 443)


def test_urls_need_http_or_https_and_a_host(nothing_listed):
    assert "http:// or https://" in url_refusal("file:///etc/passwd")
    assert "http:// or https://" in url_refusal("gopher://example.com/")
    assert "no host" in url_refusal("http:///path")
    assert "loopback" in url_refusal("http://127.0.0.1:8000/hook")
    assert "loopback" in url_refusal("http://[::1]:8000/hook")


def test_connect_refuses_before_any_packet_is_sent(nothing_listed):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        with pytest.raises(OutboundRefused, match="loopback"):
            connect("127.0.0.1", server.getsockname()[1], timeout=2)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing reached the listening socket


class _Receiver(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        type(self).hits += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.hits = 0
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def test_a_signed_post_to_loopback_is_refused_unless_listed(settings, receiver):
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []
    with pytest.raises(PostFailed) as refused:
        signed_post(url=receiver, body=b"{}", secret="s", event_id="e1", timeout=5, user_agent="t")
    assert "loopback" in refused.value.message
    assert refused.value.retry is False
    assert _Receiver.hits == 0

    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = ["127.0.0.1"]
    answer = signed_post(url=receiver, body=b"{}", secret="s", event_id="e2", timeout=5, user_agent="t")
    assert answer.status == 200
    assert _Receiver.hits == 1


def test_a_name_is_checked_when_connecting_not_only_when_saved(settings, receiver, monkeypatch):
    """A name that pointed at a public address when saved and at loopback when called (DNS rebinding) is refused."""
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example":
            return real(next(answers), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = receiver.replace("127.0.0.1", "rebind.example")
    assert url_refusal(url) == ""  # when saved
    with pytest.raises(PostFailed, match="loopback"):
        signed_post(url=url, body=b"{}", secret="s", event_id="e3", timeout=5, user_agent="t")
    assert _Receiver.hits == 0


def test_a_name_that_does_not_resolve_when_sending_is_tried_again_later(nothing_listed):
    """A DNS outage is not a refusal: the POST fails as a network error, which is retried."""
    with pytest.raises(PostFailed) as failed:
        signed_post(
            url="http://no-such-host.invalid/hook", body=b"{}", secret="", event_id="e4", timeout=5, user_agent="t"
        )
    assert "cannot be resolved" in failed.value.message
    assert failed.value.retry is True
