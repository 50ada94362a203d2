"""Fixtures of the browser tests: Playwright (Python) driving Debian's chromium against pytest-django's live_server.

Playwright cannot download its own browsers here (`npx playwright install` fails), so the tests launch the
chromium that Debian packages. Environment variables:

- ``IMPEX_CHROMIUM``: name or path of the chromium executable, looked up with ``shutil.which`` (default
  ``chromium``). Point it at a name that does not exist to try the skip path, e.g.
  ``IMPEX_CHROMIUM=no-such-chromium pytest tests/browser -rs``.
- ``IMPEX_REQUIRE_BROWSER=1``: a missing chromium (or Playwright) fails the browser tests instead of skipping
  them. CI sets it, so that the browser tests cannot silently stop running.

To enable the browser tests on a Debian machine: ``apt-get install chromium``.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ENABLE_HINT = "install Debian's chromium: apt-get install chromium"
TIMEOUT_MS = 15_000

# Where shoot() writes its screenshots (IMPEX_SHOTS; a folder under the system's temporary folder by default).
SHOTS_DIR = Path(os.environ.get("IMPEX_SHOTS") or Path(tempfile.gettempdir()) / "impex-shots")

ADMIN_USERNAME = "browser-admin"
ADMIN_PASSWORD = "browser-pass-123"


def browser_required() -> bool:
    """Whether a missing browser must fail the tests (IMPEX_REQUIRE_BROWSER=1) rather than skip them."""
    return os.environ.get("IMPEX_REQUIRE_BROWSER", "").strip().lower() in {"1", "true", "yes", "on"}


def skip_or_fail(reason: str) -> None:
    """Skip the browser tests with a hint, or fail loudly when the environment requires the browser."""
    if browser_required():
        pytest.fail(f"IMPEX_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason}; to run the browser tests, {ENABLE_HINT}")


@pytest.fixture(scope="session")
def browser():
    """A headless Debian chromium driven by Playwright, shared by the session."""
    name = os.environ.get("IMPEX_CHROMIUM") or "chromium"
    executable = shutil.which(name)
    if executable is None:
        skip_or_fail(f"no '{name}' executable on PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the Python package playwright is not installed (pip install -r requirements-dev.txt)")

    from django.db import connections

    # Playwright's sync API keeps an asyncio event loop running in this thread for as long as it is started.
    # 1. Django then refuses ORM calls from the test thread (SynchronousOnlyOperation). The tests set up their
    #    data with the ORM, so allow it while Playwright runs (tests only); the previous value is restored after.
    # 2. With a loop running, Django's connection handler (an asgiref Local) stops using the thread's connections
    #    and hands out new ones from a context variable, unlike the connections pytest-django set the test database
    #    up with (when a test without the browser ran first). So the test thread keeps the very same connection
    #    objects while Playwright runs.
    thread_connections = {alias: connections[alias] for alias in connections}
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            for alias, connection in thread_connections.items():
                connections[alias] = connection
            chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    """A fresh browser page (own cookies) whose relative URLs go to the live server."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    # Remember failed responses (a missing stylesheet, a server error) so that tests can assert there were none.
    tab.failed_responses = []
    tab.on("response", lambda r: tab.failed_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield tab
    context.close()


@pytest.fixture(autouse=True)
def builtin_descriptors(browser, live_server):
    """The built-in descriptors and groups, as migration impex 0002 installs them.

    The live server needs a transactional database, which is flushed after each test (the migration's rows go
    with it); serialized_rollback cannot bring them back in a full run, where another transactional test's flush
    has re-created the content types first. So each browser test installs them again with the migration's code.
    """
    from django.apps import apps

    from impex.builtin import install_builtin

    install_builtin(apps)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply (the live server sees the same settings)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def superuser(browser, live_server):
    """A superuser created with the ORM (after the browser, so that a missing browser skips before any setup)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)


def log_in(page, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD) -> None:
    """Log in through the admin's real login form and wait for the admin index."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/admin/")


@pytest.fixture
def admin_page(page, superuser):
    """A browser page logged in to the admin as the superuser."""
    log_in(page)
    return page


def shoot(page, name: str) -> list[Path]:
    """Screenshot the whole page in light and in dark mode (as a user's system setting asks; 1400 px wide), into
    SHOTS_DIR as NAME-light.png and NAME-dark.png, and check that neither mode scrolls sideways."""
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            assert_no_sideways_scroll(page)
            path = SHOTS_DIR / f"{name}-{scheme}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
    finally:
        page.emulate_media(color_scheme="light")
    return paths


def assert_no_sideways_scroll(page) -> None:
    """The page fits the window's width: nothing sticks out to the right (a table or preview too wide)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page.url} is {overflow} px wider than the window"
