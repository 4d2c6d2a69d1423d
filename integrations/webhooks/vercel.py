"""What Vercel's ``deployment.*`` events mean for our rows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError

from development.models import Deployment, DeploymentEnvironment, DeploymentState, PullRequest, Repository
from development.services import deployment_upsert
from integrations.models import Integration

# The deployment state each event reports. ``succeeded`` (build done) and
# ``ready`` (checks passed, serving) both mean "ready" here.
EVENT_STATES: Mapping[str, str] = {
    "deployment.created": DeploymentState.BUILDING,
    "deployment.succeeded": DeploymentState.READY,
    "deployment.ready": DeploymentState.READY,
    "deployment.error": DeploymentState.ERROR,
    "deployment.canceled": DeploymentState.CANCELED,
}


def _deployment_fields(*, integration: Integration, data: Mapping[str, Any]) -> dict[str, Any]:
    """The descriptive fields of a deployment from an event's ``payload``.

    The deployment is linked to the repository and pull request its git
    metadata names, when we have them.
    """
    deployment = data["deployment"]
    meta = deployment.get("meta") or {}
    url = deployment.get("url") or ""
    if url and "://" not in url:
        url = f"https://{url}"
    fields: dict[str, Any] = {
        "integration_id": integration.pk,
        "project_name": deployment.get("name") or "",
        "url": url,
        "environment": DeploymentEnvironment.PRODUCTION
        if data.get("target") == "production"
        else DeploymentEnvironment.PREVIEW,
        "commit_sha": meta.get("githubCommitSha") or "",
        "branch": meta.get("githubCommitRef") or "",
        "metadata": {
            "project_id": (data.get("project") or {}).get("id"),
            "team_id": (data.get("team") or {}).get("id"),
            "links": data.get("links") or {},
            "meta": meta,
        },
    }
    if meta.get("githubCommitOrg") and meta.get("githubCommitRepo"):
        full_name = f"{meta['githubCommitOrg']}/{meta['githubCommitRepo']}"
        repository_id = (
            Repository.objects.filter(organization_id=integration.organization_id, full_name=full_name)
            .values_list("pk", flat=True)
            .first()
        )
        if repository_id is not None:
            fields["repository_id"] = repository_id
            if str(meta.get("githubPrId") or "").isdigit():
                fields["pull_request_id"] = (
                    PullRequest.objects.filter(repository_id=repository_id, number=int(meta["githubPrId"]))
                    .values_list("pk", flat=True)
                    .first()
                )
    return fields


def deployment_apply(
    *, integration: Integration, event_type: str, data: Mapping[str, Any], at: datetime
) -> tuple[Deployment, bool]:
    """Create or update a deployment from a ``deployment.*`` event.

    ``data`` is the event's ``payload`` object and ``at`` its ``createdAt``.
    Returns ``(deployment, applied)``; ``applied`` is False for an event the
    deployment has moved past.
    """
    state = EVENT_STATES.get(event_type)
    if state is None:
        raise ValidationError(f"Not a deployment event Vercel sends: {event_type!r}.")
    deployment = data["deployment"]
    return deployment_upsert(
        organization_id=integration.organization_id,
        external_id=deployment["id"],
        state=state,
        at=at,
        fields=_deployment_fields(integration=integration, data=data),
        error_message=str(deployment.get("errorMessage") or "") if state == DeploymentState.ERROR else "",
    )
