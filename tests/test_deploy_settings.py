"""Production settings from the environment (issue 16): SECRET_KEY required whenever DEBUG is off (R3), and HTTPS
settings with which `manage.py check --deploy` is clean (L5). Each check runs `manage.py` as a deployment would, in
a process of its own with exactly the environment given.
"""

import json
import os
import secrets
import stat
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse

# README "Production": what an operator sets behind a TLS-terminating proxy.
PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "hub.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://hub.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}
# Left out of a process's environment unless a test gives them: what this machine or the test suite may have set
# (the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE while their browser runs, which check --deploy warns about).
UNSET = {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", *PRODUCTION}
SHOW = "from django.conf import settings as s; import json; print(json.dumps({n: getattr(s, n) for n in %r}))"


def manage(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    """Run manage.py with the deployment's settings module, a var dir of the test's own and only the given settings."""
    clean = {k: v for k, v in os.environ.items() if k not in UNSET}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, "IMPEX_VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def shown(tmp_path, names, **env) -> dict:
    """Return the named settings as a process with this environment sees them."""
    done = manage(tmp_path, "shell", "-c", SHOW % (list(names),), **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# R3: SECRET_KEY


def test_with_debug_off_and_no_secret_key_the_hub_refuses_to_start_and_says_what_to_set(tmp_path):
    done = manage(tmp_path, "check")

    assert done.returncode == 1
    assert done.stderr.startswith("impex-hub cannot start: SECRET_KEY is not set.")
    assert "Traceback" not in done.stderr
    assert "set the environment variable SECRET_KEY" in done.stderr
    assert "the same on every machine of this deployment" in done.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def test_with_a_secret_key_the_hub_starts_and_uses_it(tmp_path):
    key = secrets.token_urlsafe(50)

    done = manage(tmp_path, "check", SECRET_KEY=key)

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
    assert shown(tmp_path, ["SECRET_KEY"], SECRET_KEY=key) == {"SECRET_KEY": key}
    assert not (tmp_path / "var" / "secret_key").exists()


def test_a_development_run_without_a_secret_key_keeps_one_for_the_machine(tmp_path):
    first = shown(tmp_path, ["SECRET_KEY"], DEBUG="1")
    again = shown(tmp_path, ["SECRET_KEY"], DEBUG="1")

    key_file = tmp_path / "var" / "secret_key"
    assert first == again == {"SECRET_KEY": key_file.read_text()}
    assert len(first["SECRET_KEY"]) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


# L5: HTTPS settings


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_check_deploy_names_what_is_missing_without_them(tmp_path):
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=PRODUCTION["SECRET_KEY"])

    assert done.returncode == 1
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"(security.{warning})" in done.stderr


def test_the_https_settings_are_off_unless_set_and_read_from_the_environment(tmp_path):
    names = [
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_PROXY_SSL_HEADER",
    ]

    local = shown(tmp_path, names, DEBUG="1")
    production = shown(tmp_path, names, **PRODUCTION)

    assert local == {**dict.fromkeys(names, False), "SECURE_HSTS_SECONDS": 0, "SECURE_PROXY_SSL_HEADER": None}
    assert production == {
        **dict.fromkeys(names, True),
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


@pytest.mark.parametrize("value", ["X-Forwarded-Proto,https", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_PROTO,"])
def test_a_malformed_proxy_ssl_header_is_refused_at_start_up(tmp_path, value):
    done = manage(tmp_path, "check", SECRET_KEY=PRODUCTION["SECRET_KEY"], SECURE_PROXY_SSL_HEADER=value)

    assert done.returncode == 1
    assert 'SECURE_PROXY_SSL_HEADER must be "HEADER,value"' in done.stderr


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_retention_under_one_day_is_refused_at_start_up_not_by_each_daily_purge(tmp_path, value):
    done = manage(tmp_path, "check", SECRET_KEY=PRODUCTION["SECRET_KEY"], IMPEX_RETENTION_DAYS=value)

    assert done.returncode == 1
    assert f"IMPEX_RETENTION_DAYS must be 1 or more (days kept), not {value}" in done.stderr


@pytest.mark.django_db
def test_behind_the_proxy_http_is_redirected_and_https_is_served_with_hsts_and_secure_cookies(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    login = reverse("admin:login")

    plain = client.get(login)
    secure = client.get(login, HTTP_X_FORWARDED_PROTO="https")

    assert plain.status_code == 301 and plain.url == f"https://testserver{login}"
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert secure.cookies["csrftoken"]["secure"] is True
