"""The live console in headless Chromium against a real ASGI server, changed by other processes.

A uvicorn process serves the admin and ``/ws/events/`` on the test database;
changes come from separate ``manage.py shell`` processes, as a worker or a
webhook would make them. Screenshots go to ``artifacts/``. The accessibility
audit injects axe-core (vendored under ``vendor/axe-core`` with its licence).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.core.management import call_command

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from analytics.rollups import rollups_refresh
from companyos.config.tests.browser.test_admin_browser import ARTIFACTS, PASSWORD, chromium
from companyos.foundation.tests.support import current_database_url, uvicorn_server
from core.models import Organization
from core.tests.factories import AdminUserFactory, OrganizationMemberFactory
from development.models import Deployment
from development.tests.factories import DeploymentFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def child_env() -> dict[str, str]:
    return {
        **{name: value for name, value in os.environ.items() if name != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": current_database_url(),
        "REDIS_KEY_PREFIX": django_settings.REDIS_KEY_PREFIX,
        "CHANNEL_LAYER": django_settings.CHANNEL_LAYER,
        "DJANGO_SETTINGS_MODULE": "companyos.config.settings",
        # Plain HTTP, static files served from the apps (no collectstatic).
        "DEBUG": "true",
    }


def in_another_process(code: str) -> float:
    """Run ``code`` in a separate Django process; returns the wall-clock time (ms) at which it began the change."""
    script = f"import time\nstarted = time.time() * 1000\n{code}\nprint(started)"
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=django_settings.BASE_DIR, env=child_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def console(monkeypatch):
    """A logged-in Chromium page on a uvicorn server; yields (page, base URL, console errors)."""
    staff = AdminUserFactory(email="live@example.com", password=PASSWORD)
    with uvicorn_server(env=child_env()) as port, chromium(monkeypatch) as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and errors.append(f"{page.url}: {message.text}"))
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        base = f"http://127.0.0.1:{port}"
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", staff.email)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")
        page.staff = staff
        yield page, base, errors


def wait_until(page, condition: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` (a JS expression) from here: Playwright's wait_for_function evaluates
    its predicate with eval() while polling, which the console's CSP rightly refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({condition})"):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {condition}"
        page.wait_for_timeout(20)


def watch(page, organization):
    OrganizationMemberFactory(organization=organization, user=page.staff)


def test_the_index_feed_shows_a_deployment_ready_saved_by_another_process_within_a_second(console):
    page, base, errors = console
    deployment = DeploymentFactory(state=Deployment.State.BUILDING)
    watch(page, deployment.organization)
    page.goto(f"{base}/admin/")
    wait_until(page, "document.getElementById('cos-feed-state').textContent === 'live'")
    page.evaluate("""() => new MutationObserver((changes, observer) => {
        const newest = document.querySelector('#cos-feed a[href*="/development/deployment/"]');
        if (newest?.textContent === 'deployment.ready') {
            window.readyShownAt = Date.now(); observer.disconnect();
        }
    }).observe(document.getElementById('cos-feed'), {childList: true, subtree: true})""")

    saved_at = in_another_process(
        "from django.utils import timezone\n"
        "from development.models import Deployment\n"
        "from development.services import deployment_set_state\n"
        f"deployment = Deployment.objects.get(pk='{deployment.pk}')\n"
        "deployment_set_state(deployment=deployment, state='ready', at=timezone.now())"
    )

    wait_until(page, "window.readyShownAt !== undefined", timeout=5)
    latency_ms = page.evaluate("window.readyShownAt") - saved_at
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-live-feed.png"), full_page=True)
    print(f"deployment.ready shown {latency_ms:.0f} ms after the other process's save")
    assert latency_ms < 1000
    link = page.locator("#cos-feed a", has_text="deployment.ready").first
    assert link.get_attribute("href") == f"/admin/development/deployment/{deployment.pk}/change/"
    assert errors == []


def test_an_open_task_list_updates_the_badge_and_a_stale_edit_is_refused(console):
    page, base, errors = console
    task = AgentTaskFactory(title="Summarise the incident", status=AgentTask.Status.QUEUED)
    watch(page, task.organization)
    page.goto(f"{base}/admin/agents/agenttask/")
    page.evaluate("window.sameDocument = true")
    row = page.locator("#result_list tr", has=page.locator(f"input.action-select[value='{task.pk}']"))
    assert row.locator(".cos-badge").inner_text() == "Queued"
    page.wait_for_timeout(300)  # the subscription is made as the page loads

    in_another_process(
        "from agents.models import AgentTask\n"
        f"task = AgentTask.objects.get(pk='{task.pk}')\n"
        "task.status = AgentTask.Status.CANCELLED\n"
        "task.save()"
    )

    wait_until(
        page,
        f"""document.querySelector("input.action-select[value='{task.pk}']")
            .closest('tr').querySelector('.cos-badge').textContent === 'Cancelled'""",
    )
    assert page.evaluate("window.sameDocument") is True  # not reloaded
    page.screenshot(path=str(ARTIFACTS / "admin-live-task-list.png"), full_page=True)

    # Open the task, let another process change it, then save the form.
    page.goto(f"{base}/admin/agents/agenttask/{task.pk}/change/")
    in_another_process(
        f"from agents.models import AgentTask\nAgentTask.objects.filter(pk='{task.pk}').update(title='Theirs')"
    )
    page.fill("#id_title", "Mine")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote, .errorlist")
    assert "changed by someone else after you opened this page" in page.content()
    page.screenshot(path=str(ARTIFACTS / "admin-stale-edit-refused.png"), full_page=True)
    task.refresh_from_db()
    assert task.title == "Theirs"
    assert errors == []


def test_every_page_loads_without_console_errors_and_passes_the_accessibility_audit(console):
    page, base, errors = console
    call_command("loaddata", "core", "integrations", "development", "design", "social", "agents", "analytics")
    rollups_refresh(since=min(Organization.objects.values_list("created_at", flat=True)))
    watch(page, Organization.objects.get(slug="acme"))
    task = AgentTask.objects.first()

    # The dashboard opens on the sample data's charts without touching a control.
    page.goto(f"{base}/admin/analytics/dashboard/")
    assert page.locator("svg.chart rect.column").count() > 0
    assert page.locator("table.analytics-bars tr").count() > 0
    page.screenshot(path=str(ARTIFACTS / "admin-dashboard-sample-data.png"), full_page=True)

    page.goto(f"{base}/admin/")
    page.goto(f"{base}/admin/agents/agenttask/{task.pk}/change/")
    for model in admin.site._registry:
        meta = model._meta
        page.goto(f"{base}/admin/{meta.app_label}/{meta.model_name}/")
    # The global search, from the header box of the page last opened: results as you type, then the page.
    page.fill("#cos-search-query", "acme-web")
    page.wait_for_selector("#cos-search-panel a[href*='/admin/development/deployment/']", state="visible")
    page.screenshot(path=str(ARTIFACTS / "admin-global-search-as-you-type.png"))
    page.press("#cos-search-query", "Enter")
    page.wait_for_url("**/admin/search/?q=acme-web")
    assert page.locator(".cos-search-list a[href*='/admin/development/deployment/']").count() == 2
    page.screenshot(path=str(ARTIFACTS / "admin-global-search.png"), full_page=True)
    assert errors == []

    audited = {
        "index": "/admin/",
        "changelist": "/admin/agents/agenttask/",
        "change page": f"/admin/agents/agenttask/{task.pk}/change/",
        "dashboard": "/admin/analytics/dashboard/",
        "search": "/admin/search/?q=acme",
    }
    violations = {}
    for name, path in audited.items():
        page.goto(f"{base}{path}")
        # Evaluated through the DevTools protocol: the page's CSP forbids inline scripts, rightly.
        page.evaluate(AXE.read_text())
        found = page.evaluate("async () => (await axe.run()).violations")
        violations[name] = [
            (v["id"], v["impact"], [node["target"] for node in v["nodes"]][:3])
            for v in found
            if v["impact"] in ("serious", "critical")
        ]
    assert violations == {name: [] for name in audited}, json.dumps(violations, indent=1)
