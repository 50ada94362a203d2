"""Serving for real (issue 21): `make serve` migrates, collects the static files and runs gunicorn (config/gunicorn.py)
with the cluster, DEBUG off; WhiteNoise serves the static files with a far-future cache and gzip copies; compose.yaml
passes every setting on.

The server runs the deployment's settings (config.settings, not the suite's) on this test's database, in a session of
its own, as a terminal would run it; Ctrl-C (SIGINT to its group) stops every process it started.
"""

import gzip
import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from impex.models import Connection
from impex.services.tokens import api_token_issue
from impex.tests.helpers import process_env
from syncapp.models import RecordEvent
from tests.fixtures import free_port
from tests.test_inbox_scan_e2e import shared_db  # noqa: F401 (a fixture used here)
from tests.test_make_run import command_line, process_tree, start_make, survivors

ROOT = Path(settings.BASE_DIR)
VENV = Path(sys.prefix)
START_WITHIN = 120  # seconds: migrate (nothing to do on the test's database), collectstatic, then gunicorn
STOP_WITHIN = 45  # seconds: gunicorn's graceful stop, then the cluster's

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the process table from /proc (Linux)")


def serve_env(**extra) -> dict:
    """The environment of `make serve` on this test's database: the deployment's settings, DEBUG unset."""
    env = process_env(DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED=1, **extra)
    env.pop("DEBUG", None)
    return env


def fetch(url: str, **headers) -> tuple[int, dict, bytes]:
    """GET a URL; return its status, headers (lower-case names) and body, an error status included."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@dataclass
class Served:
    url: str
    make: subprocess.Popen
    log: Path
    started: dict[int, int]
    static_root: Path

    def describe(self, pids=()) -> str:
        return "\n".join(f"{pid}: {command_line(pid)}" for pid in pids) + "\n" + self.log.read_text()


@pytest.fixture
def make_serve(shared_db, tmp_path):  # noqa: F811 (shared_db is the imported fixture)
    """`make serve` on a free port (one gunicorn worker of two threads, a cluster of one worker), once it serves."""
    port = free_port()
    log = tmp_path / "make-serve.log"
    static_root = tmp_path / "static"
    env = serve_env(STATIC_ROOT=static_root, GUNICORN_WORKERS=1, GUNICORN_THREADS=2, Q_WORKERS=1)
    make = start_make("serve", env=env, port=port, log=log)
    served = Served(f"http://127.0.0.1:{port}", make, log, {}, static_root)
    try:
        deadline = time.monotonic() + START_WITHIN
        while fetch_or_none(served.url + "/admin/login/") != 200:
            if make.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make serve did not serve within {START_WITHIN} s:\n{log.read_text()}")
            time.sleep(0.2)
        served.started = process_tree(make.pid)
        yield served
    finally:
        for pid in {*survivors(served.started), *(process_tree(make.pid) if make.poll() is None else ())}:
            os.kill(pid, signal.SIGKILL)
        make.wait(timeout=10)


def fetch_or_none(url: str) -> int | None:
    try:
        return fetch(url)[0]
    except OSError:
        return None


def test_make_serve_serves_pages_static_files_and_the_api_with_debug_off_and_ctrl_c_stops_it(make_serve):
    status, headers, body = fetch(make_serve.url + "/admin/login/")
    page = body.decode()
    assert status == 200 and "Log in" in page
    assert (make_serve.static_root / "staticfiles.json").is_file()  # collectstatic ran, with the manifest
    assert "Starting gunicorn" in make_serve.log.read_text()

    # The page names each stylesheet by its content's hash: cached for a year, and gzipped for who takes gzip.
    for name in ("admin/css/base", "hub/admin"):
        url = re.search(rf'href="(/static/{name}\.[0-9a-f]{{12}}\.css)"', page)
        assert url, f"{name}.css is not named by its hash on the login page"
        status, headers, body = fetch(make_serve.url + url.group(1), **{"Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["content-type"].startswith("text/css")
        assert "immutable" in headers["cache-control"]
        assert int(re.search(r"max-age=(\d+)", headers["cache-control"]).group(1)) >= 365 * 24 * 3600
        assert headers["content-encoding"] == "gzip"
        assert b"{" in gzip.decompress(body)
        plain = fetch(make_serve.url + url.group(1))
        assert plain[0] == 200 and "content-encoding" not in plain[1] and plain[2] == gzip.decompress(body)

    status, headers, body = fetch(make_serve.url + "/favicon.ico")
    assert status == 200 and headers["content-type"] == "image/x-icon" and body

    connection = Connection.objects.create(code="serve-erp", name="ERP", convention="kore", integration_id="SRV1")
    token = api_token_issue(connection=connection, by="test")
    request = urllib.request.Request(
        make_serve.url + "/api/events/customers/",
        data=json.dumps({"customer_id": "C-SERVE-1", "email": "serve@example.com"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        event = json.loads(response.read())["event"]
    assert RecordEvent.objects.filter(pk=event, connection=connection).exists()

    os.killpg(make_serve.make.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_WITHIN
    while survivors(make_serve.started) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = survivors(make_serve.started)
    assert left == [], f"still running {STOP_WITHIN} s after Ctrl-C:\n{make_serve.describe(left)}"
    text = make_serve.log.read_text()
    assert "and gunicorn at " in text and "(Ctrl-C stops both)" in text
    assert "Q Cluster" in text and "has stopped." in text


def test_make_serve_says_how_to_set_a_secret_key_and_starts_nothing_without_one(tmp_path):
    env = serve_env(STATIC_ROOT=tmp_path / "static")
    env.pop("SECRET_KEY")

    done = subprocess.run(
        ["make", "-C", str(ROOT), "serve", f"VENV={VENV}", "-o", f"{VENV}/.installed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert "needs SECRET_KEY" in done.stdout and "export SECRET_KEY=" in done.stdout
    assert "secrets.token_urlsafe(50)" in done.stdout
    assert not (tmp_path / "static").exists()


def test_make_serve_migrates_collects_then_runs_the_cluster_and_gunicorn_and_make_help_lists_it():
    make = ["make", "-C", str(ROOT), f"VENV={VENV}", "-o", f"{VENV}/.installed"]

    dry = subprocess.run([*make, "-n", "serve"], capture_output=True, text=True, check=True).stdout
    help_text = subprocess.run([*make, "help"], capture_output=True, text=True, check=True).stdout

    steps = [dry.index(step) for step in ("migrate --noinput", "collectstatic --noinput", "manage.py qcluster")]
    assert steps == sorted(steps)
    assert "gunicorn -c config/gunicorn.py config.wsgi" in dry
    assert "make serve" in help_text and "SECRET_KEY" in help_text


@pytest.mark.parametrize(
    ("env", "bind"),
    [
        ({}, "127.0.0.1:8000"),
        ({"ADDR": "9001"}, "127.0.0.1:9001"),
        ({"ADDR": "0.0.0.0:9002"}, "0.0.0.0:9002"),
        ({"PORT": "9003"}, "0.0.0.0:9003"),
    ],
)
def test_the_gunicorn_config_binds_to_addr_or_port_and_reads_its_workers_from_the_environment(monkeypatch, env, bind):
    for name in ("ADDR", "PORT", "GUNICORN_WORKERS", "WEB_CONCURRENCY", "GUNICORN_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    config = runpy.run_path(str(ROOT / "config" / "gunicorn.py"))

    assert config["bind"] == bind
    assert config["worker_class"] == "gthread"
    assert config["workers"] >= 2 and config["threads"] == 4
    assert config["max_requests"] > 0 and config["max_requests_jitter"] > 0
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "8")
    config = runpy.run_path(str(ROOT / "config" / "gunicorn.py"))
    assert (config["workers"], config["threads"]) == (3, 8)


def test_compose_passes_every_setting_on_and_runs_the_web_server_two_clusters_and_the_set_up_once():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    read = set(
        re.findall(
            r'(?:env_\w+|os\.environ\.get|os\.environ\[)\(?"([A-Z_0-9]+)"',
            (ROOT / "config" / "settings.py").read_text(),
        )
    )

    for name in ("web", "cluster", "setup"):
        missing = read - set(services[name]["environment"]) - {"DEBUG"}
        assert not missing, f"compose.yaml's {name} does not pass on {sorted(missing)}"
        assert "DEBUG" not in services[name]["environment"]
    # gunicorn's own settings (README "Production") reach the web server too; ADDR would override its PORT.
    gunicorn_py = (ROOT / "config" / "gunicorn.py").read_text()
    gunicorn = set(re.findall(r'(?:_int|os\.environ\.get)\("([A-Z_0-9]+)"', gunicorn_py))
    missing = gunicorn - set(services["web"]["environment"]) - {"ADDR"}
    assert not missing, f"compose.yaml's web does not pass on {sorted(missing)}"
    assert services["web"]["command"] == ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["cluster"]["command"] == ["python", "manage.py", "qcluster"]
    assert services["cluster"]["deploy"]["replicas"] == 2
    assert services["cluster"]["environment"]["Q_REDIS_URL"].startswith("redis://redis:")
    assert "migrate" in services["setup"]["command"][-1] and "collectstatic" in services["setup"]["command"][-1]
    for name in ("web", "cluster"):
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert {"db", "redis"} <= set(services) and all("healthcheck" in services[s] for s in ("db", "redis", "web"))
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile and "\nUSER hub\n" in dockerfile


def test_compose_publishes_the_web_server_on_loopback_only_unless_told():
    # The README puts a TLS proxy in front and sets IMPEX_PROXY_COUNT: a port open on every interface would let a
    # client skip the proxy, over plain HTTP, and choose its own address by X-Forwarded-For (login throttling,
    # IMPEX_METRICS_ALLOWED_IPS).
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())

    (published,) = compose["services"]["web"]["ports"]

    assert published.startswith("${HUB_BIND:-127.0.0.1}:"), published
