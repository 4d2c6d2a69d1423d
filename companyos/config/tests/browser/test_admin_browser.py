"""A real browser drives the staff console: headless Chromium through Playwright.

Uses Debian's ``chromium`` (``apt-get install chromium``), never a browser
downloaded by ``playwright install``. The admin runs on pytest-django's
live server (threaded WSGI). The task changelist's screenshot is saved to
``artifacts/`` for a person to look at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.db import connections
from django.utils import timezone

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from companyos.config.tests.admin.cases import CASES, parents
from companyos.config.tests.programs import require_program
from core.tests.factories import AdminUserFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts"
PASSWORD = "browser-test-Pa55word!"


@contextmanager
def chromium(monkeypatch) -> Iterator[Browser]:
    """Debian's headless Chromium through Playwright's sync API, for one test.

    Playwright runs an event loop in this thread while the browser is open.
    Django then refuses ORM calls unless allowed (the test's own calls stay
    synchronous and safe), and keeps this thread's connections per context
    instead of per thread: the ones opened meanwhile are closed here, or the
    pool's connection they hold stays checked out after the test.
    """
    require_program(CHROMIUM, "chromium")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()


@pytest.fixture
def page(live_server, settings, monkeypatch):
    # Plain HTTP on the live server (static files: the root conftest).
    settings.SECURE_SSL_REDIRECT = settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    with chromium(monkeypatch) as browser:
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(15_000)
        yield context.new_page()


@pytest.mark.django_db(transaction=True)
def test_staff_member_runs_the_console_in_a_browser(page, live_server):
    staff = AdminUserFactory(email="browser@example.com", password=PASSWORD)
    rows = parents()
    for case in CASES:
        case.make(rows, 1)
    started = timezone.now() - dt.timedelta(minutes=5)
    task = AgentTaskFactory(
        organization=rows.organization, agent=rows.agent, title="Review the billing migration",
        status=AgentTask.Status.AWAITING_APPROVAL, requires_approval=True, started_at=started,
    )  # fmt: skip

    # Every page runs under the Content-Security-Policy; Chromium reports what it blocks on the console.
    blocked = []
    page.on("console", lambda message: "Content Security Policy" in message.text and blocked.append(message.text))

    # Log in.
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", staff.email)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    assert page.locator("#site-name").inner_text() == "CompanyOS console"
    assert page.locator(".app-core .cos-domain-description").text_content() == "People and organizations"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-index.png"), full_page=True)

    # Every changelist opens.
    for model in admin.site._registry:
        meta = model._meta
        response = page.goto(f"{live_server.url}/admin/{meta.app_label}/{meta.model_name}/")
        assert response.status == 200, meta.label
        assert page.locator("#changelist").count() == 1, meta.label

    # Search, then filter, the task list.
    tasks_url = f"{live_server.url}/admin/agents/agenttask/"
    page.goto(tasks_url)
    page.fill("#searchbar", "billing migration")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=billing+migration**")
    assert page.locator("#result_list tbody tr").count() == 1
    page.goto(tasks_url)
    page.locator("#changelist-filter a", has_text="Awaiting approval").first.click()
    page.wait_for_url("**status__exact=awaiting_approval**")
    assert page.locator("#result_list tbody tr").count() == 1

    # Open the task.
    page.locator("#result_list a", has_text="Review the billing migration").click()
    page.wait_for_url(f"**/{task.pk}/change/**")
    assert page.locator("#id_title").input_value() == "Review the billing migration"

    # Approve it with the action and see the success message.
    page.goto(tasks_url)
    page.check(f"input.action-select[value='{task.pk}']")
    page.select_option("select[name=action]", "approve")
    page.click("button[name=index]")
    success = page.locator(".messagelist .success")
    success.wait_for()
    assert success.inner_text() == "Approved 1 agent task."
    task.refresh_from_db()
    assert (task.status, task.approved_by_id) == (AgentTask.Status.COMPLETED, staff.pk)

    screenshot = ARTIFACTS / "admin-agent-task-changelist.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    # The task's history page shows the approval: who, from where, the diff.
    page.goto(f"{tasks_url}{task.pk}/history/")
    history = page.locator("#change-history").inner_text()
    assert "browser@example.com" in history and "awaiting_approval" in history and "completed" in history
    page.screenshot(path=str(ARTIFACTS / "admin-task-history.png"), full_page=True)

    # The analytics dashboard (its styles a file, its charts SVG), then nothing was blocked anywhere.
    assert page.goto(f"{live_server.url}/admin/analytics/dashboard/").status == 200
    page.screenshot(path=str(ARTIFACTS / "admin-analytics-dashboard.png"), full_page=True)
    assert blocked == []
