"""Playwright with Debian's Chromium (no browser download), failing on console errors and CSP.

Skipped only when Chromium is missing and REQUIRE_BROWSER is unset; CI sets REQUIRE_BROWSER=1,
so a missing browser fails the run instead of silently skipping it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# around it are synchronous and safe, so Django's async guard is relaxed for browser tests.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Records CSP violations in the page; init scripts are injected by the browser, not the page,
# so they are not themselves subject to the page's Content-Security-Policy.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "expect_console(text): a browser console error the test causes on purpose")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    browser_items = [item for item in items if "tests/browser/" in str(item.fspath)]
    for item in browser_items:
        item.add_marker(pytest.mark.browser)
    if browser_items and not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise pytest.UsageError(f"REQUIRE_BROWSER=1 but Chromium is missing at {CHROMIUM}")
        for item in browser_items:
            item.add_marker(
                pytest.mark.skip(reason=f"Chromium not found at {CHROMIUM} (set REQUIRE_BROWSER=1 to fail)")
            )


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen by one page."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []

    def all(self, page) -> list[str]:
        csp: list[str] = page.evaluate("window.__cspViolations || []")
        return self.console_errors + self.page_errors + [f"CSP violation: {v}" for v in csp]


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(CSP_RECORDER)
    page = context.new_page()
    problems = PageProblems()

    def on_console(message) -> None:
        if message.type == "error":
            problems.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.page_errors.append(str(error)))
    page.set_default_timeout(15_000)
    yield page
    found = problems.all(page) if not page.is_closed() else problems.console_errors + problems.page_errors
    # @pytest.mark.expect_console("…"): a console line the test causes on purpose (a 404 page it opens)
    expected = [marker.args[0] for marker in request.node.iter_markers("expect_console")]
    found = [problem for problem in found if not any(text in problem for text in expected)]
    context.close()
    assert not found, f"{request.node.name}: the browser reported problems: {found}"


@pytest.fixture
def screenshot(page, request: pytest.FixtureRequest):
    """Save a full-page screenshot under test-artifacts/screenshots/<test>-<name>.png."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = folder / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def login(page, live_server):
    """Log in through the real form, as a person would."""

    def do(username: str, password: str) -> None:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state("networkidle")

    return do


@pytest.fixture
def worker_pool():
    """Two worker threads run dispatched host runs, as a thread-pool Celery worker would."""
    from django.db import connection

    from jobs import runner, services

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fake-worker")

    def run_in_thread(host_run_id: int) -> None:
        try:
            runner.run_host(host_run_id)
        finally:
            connection.close()

    services.set_enqueue(lambda host_run_id: pool.submit(run_in_thread, host_run_id) and None)
    yield pool
    pool.shutdown(wait=True)
    services.set_enqueue(None)
