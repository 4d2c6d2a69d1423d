"""Building and sending signed webhook deliveries in tests.

GitHub payloads are the examples GitHub publishes (``payloads/github``,
copied unchanged from octokit/webhooks, MIT licence). Vercel publishes no
example files, so ``vercel_event`` builds one from the shape its Webhooks API
reference documents (``/work/shared/payloads/vercel/README.md``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from django.db import connection
from django.test import Client
from django.urls import reverse
from procrastinate.contrib.django.models import ProcrastinateJob

from integrations.jobs import process_delivery
from integrations.models import Webhook
from integrations.webhooks.signatures import github_signature, vercel_signature

PAYLOADS = Path(__file__).parent / "payloads"


def github_payload(name: str) -> bytes:
    """The raw bytes of an example payload, e.g. ``pull_request/opened.payload.json``."""
    return (PAYLOADS / "github" / name).read_bytes()


def endpoint(webhook: Webhook) -> str:
    return reverse("integrations:webhook_receive", args=[webhook.endpoint_token])


def run_queued_deliveries() -> int:
    """Do what a worker does with the ``process_delivery`` jobs the view queued: run each once, oldest first.

    In the test's own transaction (a worker process would not see its rows);
    returns how many jobs ran.
    """
    queued = ProcrastinateJob.objects.filter(task_name=process_delivery.name, status="todo").order_by("id")
    jobs = list(queued.values_list("id", "args"))
    for job_id, args in jobs:
        process_delivery(**args)
        with connection.cursor() as cursor:
            cursor.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", [job_id])
    return len(jobs)


def post_github(
    client: Client,
    webhook: Webhook,
    event: str,
    body: bytes,
    *,
    delivery_id: str | None = None,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    process: bool = True,
):
    """POST ``body`` as GitHub would: signed, with its event and delivery headers.

    Then, unless ``process`` is False, run the job the view queued, as the worker would.
    """
    sent = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": github_signature(webhook.secret if secret is None else secret, body),
        "User-Agent": "GitHub-Hookshot/044aadd",
        **(headers or {}),
    }
    response = client.post(endpoint(webhook), data=body, content_type="application/json", headers=sent)
    if process:
        run_queued_deliveries()
    return response


def vercel_event(
    event_type: str,
    *,
    deployment_id: str = "dpl_2euZBFqxYdDMDG1jTrHFnNZ2eUVa",
    created_at_ms: int = 1_700_000_000_000,
    delivery_id: str | None = None,
    target: str | None = "production",
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Vercel ``deployment.*`` event with every documented field filled in."""
    return {
        "type": event_type,
        "id": delivery_id or f"evt_{uuid.uuid4().hex[:24]}",
        "createdAt": created_at_ms,
        "region": "iad1",
        "payload": {
            "team": {"id": "team_1a2b3c4d5e6f7g8h9i0j"},
            "user": {"id": "usr_9z8y7x6w5v4u3t2s1r0q"},
            "deployment": {
                "id": deployment_id,
                "url": "acme-web-4fkq7x1yz.vercel.app",
                "name": "acme-web",
                "meta": {
                    "githubCommitSha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                    "githubCommitRef": "changes",
                    "githubCommitMessage": "Update the README with new information.",
                    "githubCommitOrg": "Codertocat",
                    "githubCommitRepo": "Hello-World",
                    "githubPrId": "2",
                    **(meta or {}),
                },
            },
            "links": {
                "deployment": f"https://vercel.com/acme/acme-web/{deployment_id}",
                "project": "https://vercel.com/acme/acme-web",
            },
            "target": target,
            "project": {"id": "prj_12HKQaOmR5t5Uy6vdcQsNIiZgHGB"},
            "plan": "pro",
            "regions": ["iad1"],
        },
    }


def post_vercel(
    client: Client,
    webhook: Webhook,
    event: dict[str, Any] | bytes,
    *,
    secret: str | None = None,
    process: bool = True,
):
    """POST a Vercel event (a dict is encoded), signed with the webhook's secret; then as :func:`post_github`."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    signature = vercel_signature(webhook.secret if secret is None else secret, body)
    response = client.post(
        endpoint(webhook), data=body, content_type="application/json", headers={"x-vercel-signature": signature}
    )
    if process:
        run_queued_deliveries()
    return response
