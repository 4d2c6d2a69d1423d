"""What GitHub's ``repository`` and ``pull_request`` objects mean for our rows.

Each function maps one object of a verified payload onto field values and
hands them to the ``development`` services, which decide whether the event
is new enough to apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime

from development.models import PullRequest, PullRequestState, Repository
from development.services import pull_request_upsert, repository_upsert
from integrations.models import Integration


def _time(value: Any) -> datetime | None:
    """Parse GitHub's ISO 8601 timestamps ("2019-05-15T15:20:33Z")."""
    if not value:
        return None
    if not isinstance(value, str) or (parsed := parse_datetime(value)) is None:
        raise ValidationError(f"Not a timestamp: {value!r}.")
    return parsed


def repository_apply(*, integration: Integration, data: Mapping[str, Any]) -> tuple[Repository, bool]:
    """Create or update a repository from GitHub's ``repository`` object.

    GitHub's ``updated_at`` orders the events. Returns ``(repository, applied)``.
    """
    owner = data["owner"]["login"]
    return repository_upsert(
        organization_id=integration.organization_id,
        external_id=int(data["id"]),
        fields={
            "integration_id": integration.pk,
            "full_name": data.get("full_name") or f"{owner}/{data['name']}",
            "name": data["name"],
            "owner": owner,
            "description": data.get("description") or "",
            "default_branch": data.get("default_branch") or "main",
            "is_private": bool(data.get("private")),
            "url": data.get("html_url") or "",
            "language": data.get("language") or "",
            "stars_count": int(data.get("stargazers_count") or 0),
        },
        at=_time(data.get("updated_at")),
    )


def _pull_request_state(data: Mapping[str, Any]) -> tuple[str, datetime | None, datetime | None]:
    """State, merged_at and closed_at, consistent with the model's check constraints."""
    updated_at = _time(data.get("updated_at"))
    if data.get("merged") or data.get("merged_at"):
        merged_at = _time(data.get("merged_at")) or updated_at
        return PullRequestState.MERGED, merged_at, _time(data.get("closed_at")) or merged_at
    if data.get("state") == "closed":
        return PullRequestState.CLOSED, None, _time(data.get("closed_at")) or updated_at
    return PullRequestState.OPEN, None, None


def pull_request_apply(*, repository: Repository, data: Mapping[str, Any]) -> tuple[PullRequest, bool]:
    """Create or update a pull request from GitHub's ``pull_request`` object.

    Every ``pull_request`` action (opened, edited, synchronize, closed,
    labeled, ...) carries the whole object, so one mapping serves them all;
    a merge is ``closed`` with ``merged: true``. GitHub's ``updated_at``
    orders the events. Returns ``(pull_request, applied)``.
    """
    state, merged_at, closed_at = _pull_request_state(data)
    fields: dict[str, Any] = {
        "external_id": int(data["id"]),
        "title": data.get("title") or "",
        "body": data.get("body") or "",
        "state": state,
        "is_draft": bool(data.get("draft")),
        "author_login": (data.get("user") or {}).get("login") or "",
        "head_branch": data["head"]["ref"],
        "base_branch": data["base"]["ref"],
        "head_sha": data["head"].get("sha") or "",
        "url": data.get("html_url") or "",
        "labels": [label["name"] for label in data.get("labels") or []],
        "opened_at": _time(data["created_at"]),
        "merged_at": merged_at,
        "closed_at": closed_at,
        "metadata": {
            "node_id": data.get("node_id"),
            "merge_commit_sha": data.get("merge_commit_sha"),
            "locked": bool(data.get("locked")),
            "assignees": [user["login"] for user in data.get("assignees") or []],
            "requested_reviewers": [user["login"] for user in data.get("requested_reviewers") or []],
        },
    }
    # Some actions omit the diff statistics; keep what we have then.
    fields.update(
        {name: int(data[name]) for name in ("additions", "deletions", "changed_files") if data.get(name) is not None}
    )
    return pull_request_upsert(
        repository_id=repository.pk, number=int(data["number"]), fields=fields, at=_time(data.get("updated_at"))
    )
