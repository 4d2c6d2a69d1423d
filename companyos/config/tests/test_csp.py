"""Content-Security-Policy on every page, and no inline code it would block."""

from html.parser import HTMLParser

import pytest
from django.test import Client

from companyos.config.tests.admin.cases import CASES, parents

pytestmark = pytest.mark.django_db


class InlineCode(HTMLParser):
    """Collects what a nonce-based policy blocks: inline scripts and styles without the nonce,
    style attributes and event-handler attributes."""

    def __init__(self, nonce: str | None):
        super().__init__()
        self.nonce = nonce
        self.blocked: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and "src" not in attributes and attributes.get("type") != "application/json":
            self._needs_nonce(tag, attributes)
        if tag == "style":
            self._needs_nonce(tag, attributes)
        for name in attributes:
            if name == "style" or name.startswith("on"):
                self.blocked.append(f"<{tag} {name}=...>")

    def _needs_nonce(self, tag, attributes):
        if not self.nonce or attributes.get("nonce") != self.nonce:
            self.blocked.append(f"inline <{tag}> without the response's nonce")


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def blocked_inline_code(response) -> list[str]:
    nonce = response.wsgi_request.csp_nonce if hasattr(response.wsgi_request, "csp_nonce") else None
    parser = InlineCode(str(nonce) if nonce else None)
    parser.feed(response.content.decode())
    return parser.blocked


@pytest.fixture
def superuser_client(db):
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_superuser(email="csp@example.com", password="x" * 20))
    return client


def test_every_answer_carries_the_policy(client):
    for path in ("/admin/login/", "/healthz", "/webhooks/unknown/"):
        response = client.get(path)
        policy = directives(response)
        assert policy["script-src"][0] == "'self'", path
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]


def test_no_console_page_holds_inline_code_the_policy_blocks(superuser_client):
    rows = parents()
    pages = ["/admin/", "/admin/analytics/dashboard/", "/admin/password_change/"]
    for case in CASES:
        case.make(rows, 1)
        obj = case.model._default_manager.order_by("-pk").first()
        pages += [case.url(), case.url("change/", obj), case.url("history/", obj)]

    for page in pages:
        response = superuser_client.get(page)
        assert response.status_code == 200, page
        assert "Content-Security-Policy" in response, page
        assert blocked_inline_code(response) == [], page


def test_the_login_page_holds_no_inline_code(client):
    assert blocked_inline_code(client.get("/admin/login/")) == []
