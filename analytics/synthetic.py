"""Realistic synthetic metric samples and events, generated fast enough for tens of millions.

Used by ``manage.py generate_data`` and ``manage.py bench_analytics``. Rows
are plain dicts for ``analytics.ingest`` and come out in time order, the way
a live system appends them, so the heap and the BRIN indexes look like
production. Values follow a daily cycle with noise; every generator takes a
``random.Random`` so a seed reproduces the data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID


@dataclass(frozen=True)
class Series:
    """A kind of metric: its typical value, spread and how it is labelled."""

    name: str
    unit: str
    typical: float
    spread: float  # relative noise
    source: str
    dimensions: tuple[dict, ...]  # one is picked per sample (shared dicts: they are only read)
    integer: bool = False


SERIES: tuple[Series, ...] = (
    Series(
        "api.latency_ms", "ms", 120, 0.5, "system", tuple({"endpoint": e} for e in ("/api/tasks", "/api/prs", "/ws"))
    ),
    Series("api.requests", "count", 900, 0.3, "system", ({"region": "eu"}, {"region": "us"}), integer=True),
    Series(
        "deployment.build_duration_ms",
        "ms",
        84_000,
        0.35,
        "vercel",
        ({"environment": "production"}, {"environment": "preview"}),
    ),
    Series("pull_request.review_time_s", "s", 5_400, 0.8, "github", ({"repository": "web"}, {"repository": "api"})),
    Series(
        "agent.task.duration_ms",
        "ms",
        42_000,
        0.6,
        "agent",
        ({"agent_type": "code_reviewer"}, {"agent_type": "designer"}),
    ),
    Series("agent.queue.depth", "count", 14, 0.7, "system", ({},), integer=True),
    Series("social.post.impressions", "count", 2_400, 0.9, "twitter", ({"platform": "twitter"},), integer=True),
    Series("design.components.outdated", "count", 6, 0.5, "figma", ({},), integer=True),
)


def _daily_cycle(epoch_seconds: float) -> float:
    """1.0 ± 0.35 over the day, busiest mid-afternoon UTC."""
    return 1 + 0.35 * math.sin((epoch_seconds / 86_400 - 0.35) * 2 * math.pi)


def metric_rows(
    *,
    organizations: Sequence[UUID],
    count: int,
    start: datetime,
    end: datetime,
    rng: random.Random,
    series: Sequence[Series] = SERIES,
) -> Iterator[dict]:
    """``count`` samples evenly spread over [start, end), each for a random organization and series."""
    first, step = start.timestamp(), (end - start).total_seconds() / max(count, 1)
    for i in range(count):
        moment = first + i * step
        kind = series[rng.randrange(len(series))]
        value = max(kind.typical * _daily_cycle(moment) * (1 + kind.spread * rng.gauss(0, 0.5)), 0.0)
        yield {
            "organization": organizations[rng.randrange(len(organizations))],
            "name": kind.name,
            "value": float(round(value)) if kind.integer else round(value, 3),
            "unit": kind.unit,
            "dimensions": kind.dimensions[rng.randrange(len(kind.dimensions))],
            "timestamp": datetime.fromtimestamp(moment, tz=UTC),
            "source": kind.source,
        }


# event type -> (category, source, subject model label)
EVENT_TYPES: dict[str, tuple[str, str, str]] = {
    "deployment.created": ("development", "vercel", "development.deployment"),
    "deployment.ready": ("development", "vercel", "development.deployment"),
    "deployment.error": ("development", "vercel", "development.deployment"),
    "pull_request.opened": ("development", "github", "development.pullrequest"),
    "pull_request.updated": ("development", "github", "development.pullrequest"),
    "pull_request.merged": ("development", "github", "development.pullrequest"),
    "agent.task.started": ("agents", "agent", "agents.agenttask"),
    "agent.task.completed": ("agents", "agent", "agents.agenttask"),
    "agent.task.failed": ("agents", "agent", "agents.agenttask"),
    "social.post.scheduled": ("social", "user", "social.socialpost"),
    "social.post.published": ("social", "twitter", "social.socialpost"),
}
# How often each type happens relative to the others.
_EVENT_WEIGHTS = (10, 9, 1, 6, 12, 5, 8, 7, 1, 2, 2)


@dataclass
class OrganizationSubjects:
    """The ids events of one organization can point at, by subject model label."""

    organization: UUID
    subjects: dict[str, list[UUID]] = field(default_factory=dict)
    users: list[UUID] = field(default_factory=list)
    agents: list[UUID] = field(default_factory=list)


def event_rows(
    *,
    organizations: Sequence[OrganizationSubjects],
    count: int,
    start: datetime,
    end: datetime,
    rng: random.Random,
) -> Iterator[dict]:
    """``count`` events evenly spread over [start, end), about real objects of each organization."""
    types = list(EVENT_TYPES)
    first, step = start.timestamp(), (end - start).total_seconds() / max(count, 1)
    chosen = rng.choices(types, weights=_EVENT_WEIGHTS, k=count)
    for i, event_type in enumerate(chosen):
        org = organizations[rng.randrange(len(organizations))]
        category, source, subject_type = EVENT_TYPES[event_type]
        subjects = org.subjects.get(subject_type) or [None]
        subject = subjects[rng.randrange(len(subjects))]
        by_agent = category == "agents" and org.agents
        yield {
            "organization": org.organization,
            "event_type": event_type,
            "category": category,
            "source": source,
            "actor_agent": org.agents[rng.randrange(len(org.agents))] if by_agent else None,
            "actor_user": org.users[rng.randrange(len(org.users))] if not by_agent and org.users else None,
            "subject_type": subject_type if subject else "",
            "subject_id": subject,
            "payload": {"synthetic": True, "sequence": i},
            "occurred_at": datetime.fromtimestamp(first + i * step, tz=UTC),
        }
