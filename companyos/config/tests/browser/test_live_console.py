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
from django.utils import timezone

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from analytics.rollups import rollups_refresh
from companyos.config.tests.browser.test_admin_browser import ARTIFACTS, PASSWORD, chromium
from companyos.foundation.ratelimit import WINDOW_SECONDS
from companyos.foundation.tests.support import current_database_url, uvicorn_server
from core.models import Organization
from core.tests.factories import AdminUserFactory, OrganizationMemberFactory
from development.models import Deployment
from development.services import deployment_set_state
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


# Each page keeps the frames its websockets receive in ``window.receivedFrames``, as they arrive:
# this listener is added before live.js's own, so a frame seen here has been handled once the
# next ``page.evaluate`` runs.
RECORD_FRAMES = """(() => {
  const Native = window.WebSocket;
  window.receivedFrames = [];
  window.WebSocket = function (url, protocols) {
    const socket = new Native(url, protocols);
    socket.addEventListener("message", (message) => window.receivedFrames.push(JSON.parse(message.data)));
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();"""


@pytest.fixture
def server_env() -> dict[str, str]:
    """Settings of the console's server that a test changes (by parametrizing this fixture)."""
    return {}


@pytest.fixture
def console(monkeypatch, server_env):
    """A logged-in Chromium page on a uvicorn server; yields (page, base URL, console errors)."""
    staff = AdminUserFactory(email="live@example.com", password=PASSWORD)
    with uvicorn_server(env={**child_env(), **server_env}) as port, chromium(monkeypatch) as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(RECORD_FRAMES)
        page = context.new_page()
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


def received(frame_type: str, **fields) -> str:
    """A JS expression: whether the page has received a frame of this type with these event fields."""
    match = " && ".join(f"frame.event.{name} === {json.dumps(str(value))}" for name, value in fields.items())
    return f"window.receivedFrames.some((frame) => frame.type === {json.dumps(frame_type)}" + (
        f" && {match})" if match else ")"
    )


def event_ids(organization, *, of) -> list[str]:
    """The ids of the stored events about ``of``, oldest first."""
    return [str(pk) for pk in organization.events.filter(subject_id=of.pk).order_by("id").values_list("pk", flat=True)]


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


@pytest.mark.parametrize("server_env", [{"EVENTS_REPLAYS_PER_MINUTE_PER_TOKEN": "1"}])
def test_a_feed_whose_resuming_subscribe_the_rate_limit_refused_makes_it_again_when_allowed(console):
    page, base, errors = console
    deployments = [DeploymentFactory(state=Deployment.State.BUILDING) for _ in range(2)]
    for deployment in deployments:
        watch(page, deployment.organization)
    # The index subscribes to both organizations with `since` (the newest event it shows of each),
    # one more than the limit allows: shortly before the minute's window ends, so the wait is short.
    time.sleep(max(0.0, WINDOW_SECONDS - time.time() % WINDOW_SECONDS - 4))

    page.goto(f"{base}/admin/")

    wait_until(page, "window.receivedFrames.some((frame) => frame.code === 'replay_rate_limited')")
    subscribed = (
        "window.receivedFrames.filter((frame) => frame.type === 'subscribed').map((frame) => frame.organization)"
    )
    wait_until(page, f"new Set({subscribed}).size === 2", timeout=15)
    assert sorted(page.evaluate(f"() => {subscribed}")) == sorted(str(each.organization_id) for each in deployments)
    for deployment in deployments:  # live for both
        deployment_set_state(deployment=deployment, state=Deployment.State.READY, at=timezone.now())
    ready = "[...document.querySelectorAll('#cos-feed a')].filter((link) => link.textContent === 'deployment.ready')"
    wait_until(page, f"{ready}.length === 2")
    assert errors == []


@pytest.mark.parametrize("server_env", [{"EVENTS_REPLAY_LIMIT": "2"}])
def test_a_feed_whose_replay_was_truncated_says_to_reload(console):
    page, base, errors = console
    first = DeploymentFactory(state=Deployment.State.BUILDING)
    for _ in range(3):
        DeploymentFactory(organization=first.organization, state=Deployment.State.BUILDING)
    watch(page, first.organization)

    # The feed resumes after its newest event; the replay's overlap before it holds three more, one over the limit.
    page.goto(f"{base}/admin/")

    wait_until(page, "document.getElementById('cos-missed') !== null")
    assert page.locator("#cos-missed").inner_text() == (
        "More changes happened while this page was disconnected than it can catch up on — reload"
    )
    assert page.locator("#cos-missed a").get_attribute("href") == f"{base}/admin/"
    assert errors == []


# The gap repair hands out an event one interval after the server first read it, and reads from the
# overlap before a subscription: with these, an event stamped just before the page subscribed reaches
# it several seconds after a live one stamped later.
LATE_REPAIR = {"EVENTS_POSITION_SECONDS": "5", "EVENTS_REPLAY_OVERLAP_SECONDS": "30"}


def a_watched_queued_task(page) -> tuple[AgentTask, str]:
    """A queued task of an organization the page's staff member watches, and the id of its queued event."""
    task = AgentTaskFactory(title="Summarise the incident", status=AgentTask.Status.QUEUED)
    watch(page, task.organization)
    [queued] = event_ids(task.organization, of=task)
    return task, queued


def cancel_in_another_process(task) -> None:
    """Cancel ``task`` from a separate process, as a worker or the API would."""
    in_another_process(
        "from agents.models import AgentTask\n"
        f"task = AgentTask.objects.get(pk='{task.pk}')\n"
        "task.status = AgentTask.Status.CANCELLED\n"
        "task.save()"
    )


@pytest.mark.parametrize("server_env", [LATE_REPAIR])
def test_an_open_task_list_updates_the_badge_and_a_stale_edit_is_refused(console):
    page, base, errors = console
    task, queued = a_watched_queued_task(page)
    page.goto(f"{base}/admin/agents/agenttask/")
    page.evaluate("window.sameDocument = true")
    row = page.locator("#result_list tr", has=page.locator(f"input.action-select[value='{task.pk}']"))
    assert row.locator(".cos-badge").inner_text() == "Queued"
    wait_until(page, received("subscribed"))

    cancel_in_another_process(task)

    badge = f"""document.querySelector("input.action-select[value='{task.pk}']")
            .closest('tr').querySelector('.cos-badge').textContent"""
    wait_until(page, f"{badge} === 'Cancelled'")
    # The repair's copy of the older "queued" event, arriving after the live "cancelled", changes nothing.
    wait_until(page, received("event", id=queued), timeout=15)
    assert page.evaluate(f"() => {badge}") == "Cancelled"
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


@pytest.mark.parametrize("server_env", [LATE_REPAIR])
def test_a_list_counts_the_rows_made_after_it_opened_and_not_one_made_before(console):
    page, base, errors = console
    before, queued = a_watched_queued_task(page)
    page.goto(f"{base}/admin/agents/agenttask/?status__exact=cancelled")  # neither task is on it

    # The repair's copy of the event of a task made before the page: not counted as new.
    wait_until(page, received("event", id=queued), timeout=15)
    assert page.locator("#cos-new-rows").count() == 0

    after = AgentTaskFactory(organization=before.organization, agent=before.agent)

    wait_until(page, "document.getElementById('cos-new-rows')?.textContent === '1 new — show'")
    [made] = event_ids(after.organization, of=after)
    assert page.evaluate(received("event", id=made))
    assert errors == []


@pytest.mark.parametrize("server_env", [LATE_REPAIR])
def test_a_change_page_warns_of_a_change_made_after_it_opened_and_not_of_one_before(console):
    page, base, errors = console
    task, queued = a_watched_queued_task(page)
    page.goto(f"{base}/admin/agents/agenttask/{task.pk}/change/")
    warning = page.locator("#cos-live-warning")

    # The repair's copy of the event the page was rendered after: no warning.
    wait_until(page, received("event", id=queued), timeout=15)
    assert warning.is_hidden()

    cancel_in_another_process(task)

    wait_until(page, "!document.getElementById('cos-live-warning').hidden")
    assert warning.inner_text() == (
        "This agent task changed after you opened this page (agent.task.cancelled, now Cancelled). "
        "Saving will be refused: reload to see the change."
    )
    page.screenshot(path=str(ARTIFACTS / "admin-live-change-warning.png"), full_page=True)
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
