"""Fill a development database with realistic data for every model, at volume.

The object graph (organizations, people, integrations, repositories, pull
requests, deployments, designs, social posts, agents, tasks) is built with
the factory-boy factories of the test suite, so it obeys every constraint
the tests rely on; saving it fires the usual real-time events. Events and
metrics, the tables that grow, go through ``analytics.ingest`` (binary COPY,
rollups kept current) in batches.

factory-boy is a development dependency (requirements-dev.txt): this command
is for development and benchmark databases, never production.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from functools import partial
from itertools import islice

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import transaction
from django.utils import timezone

from analytics.ingest import record_events, record_metrics
from analytics.synthetic import OrganizationSubjects, event_rows, metric_rows


class ProgressBar:
    """A one-line progress bar on a command's stderr, redrawn in place at most ten times a second."""

    def __init__(self, label: str, total: int, stream: OutputWrapper, width: int = 30) -> None:
        self.label, self.total, self.stream, self.width = label, total, stream, width
        self.done = 0
        self.started = self.drawn = time.monotonic()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self.drawn >= 0.1 or self.done >= self.total:
            self.drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * self.width)
        rate = self.done / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0
        self.stream.write(
            ending="",
            msg=f"\r{self.label:<10} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} "
            f"{self.done:,}/{self.total:,}  {rate:,.0f}/s  ETA {eta:4.0f}s ",
        )
        if self.done >= self.total:
            self.stream.write("")
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _batches(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


class Command(BaseCommand):
    help = "Generate realistic data for every model: an object graph per organization, then events and metrics."

    def add_arguments(self, parser):
        parser.add_argument("--organizations", type=int, default=3)
        parser.add_argument("--users", type=int, default=5, help="Members per organization.")
        parser.add_argument("--events", type=int, default=10_000)
        parser.add_argument("--metrics", type=int, default=100_000)
        parser.add_argument("--days", type=int, default=30, help="Events and metrics span the last N days.")
        parser.add_argument("--batch-size", type=int, default=50_000, help="Rows per ingest transaction.")
        parser.add_argument("--seed", type=int, default=None, help="Reproduce the same content.")

    def handle(self, *args, organizations, users, events, metrics, days, batch_size, seed, **options):
        try:
            import factory.random  # noqa: PLC0415 - a development dependency, needed only here
        except ImportError:
            raise CommandError("generate_data needs factory-boy: pip install -r requirements-dev.txt") from None
        if organizations < 1:
            raise CommandError("--organizations must be at least 1")
        rng = random.Random(seed)
        if seed is not None:
            factory.random.reseed_random(seed)
        started = time.monotonic()
        # Globally unique fields (slugs, emails, provider ids) carry a tag of
        # this run, so generate_data can run again on the same database.
        tag = secrets.token_hex(3)

        graph = ProgressBar("graph", organizations, self.stderr)
        subjects = []
        for index in range(organizations):
            with transaction.atomic():
                subjects.append(_organization_graph(f"{tag}-{index}", users=users, rng=rng))
            graph.advance(1)

        end = timezone.now()
        start = end - timedelta(days=days)
        self._ingest(
            "events",
            # The sample's past: the deployments', pull requests' and tasks' own events.
            partial(record_events, as_platform=True),
            event_rows(organizations=subjects, count=events, start=start, end=end, rng=rng),
            events,
            batch_size,
        )
        self._ingest(
            "metrics",
            record_metrics,
            metric_rows(organizations=[s.organization for s in subjects], count=metrics, start=start, end=end, rng=rng),
            metrics,
            batch_size,
        )
        self._summary(time.monotonic() - started)

    def _ingest(self, label: str, record: Callable, rows: Iterable[dict], total: int, batch_size: int) -> None:
        if not total:
            return
        bar = ProgressBar(label, total, self.stderr)
        for batch in _batches(rows, batch_size):
            record(batch)
            bar.advance(len(batch))
        self.stdout.write(f"{label}: {total:,} rows in {bar.elapsed:.1f}s ({total / bar.elapsed:,.0f} rows/s)")

    def _summary(self, elapsed: float) -> None:
        self.stdout.write(f"Done in {elapsed:.1f}s. Rows now in the database:")
        for app_label in ("core", "integrations", "development", "design", "social", "agents", "analytics"):
            for model in apps.get_app_config(app_label).get_models():
                self.stdout.write(f"  {model._meta.label:<32} {model._base_manager.count():>12,}")


def _organization_graph(tag: str, *, users: int, rng: random.Random) -> OrganizationSubjects:
    """One organization with everything a real one has; returns what its events can point at."""
    # Imported here: the factories live with the tests (development dependency).
    from agents.models import Agent, AgentTask  # noqa: PLC0415
    from agents.tests.factories import AgentCollaborationFactory, AgentFactory, AgentTaskFactory  # noqa: PLC0415
    from core.models import OrganizationMember  # noqa: PLC0415
    from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory  # noqa: PLC0415
    from design.tests.factories import DesignComponentFactory, FigmaFileFactory  # noqa: PLC0415
    from development.models import Deployment, PullRequest  # noqa: PLC0415
    from development.tests.factories import DeploymentFactory, PullRequestFactory, RepositoryFactory  # noqa: PLC0415
    from integrations.models import Integration  # noqa: PLC0415
    from integrations.tests.factories import IntegrationFactory, WebhookFactory  # noqa: PLC0415
    from social.models import SocialPost  # noqa: PLC0415
    from social.tests.factories import SocialAccountFactory, SocialPostFactory  # noqa: PLC0415

    now = timezone.now()
    organization = OrganizationFactory(name=f"Company {tag}", slug=f"company-{tag}")
    people = [UserFactory(email=f"person{i}-{tag}@example.com") for i in range(max(users, 1))]
    for i, person in enumerate(people):
        role = OrganizationMember.Role.OWNER if i == 0 else OrganizationMember.Role.MEMBER
        OrganizationMemberFactory(organization=organization, user=person, role=role, invited_by=people[0])

    integrations = {
        service: IntegrationFactory(organization=organization, service=service, created_by=people[0])
        for service in Integration.Service.values
    }
    WebhookFactory(integration=integrations["github"], name="GitHub events")
    WebhookFactory(integration=integrations["vercel"], name="Vercel deployments", events=["deployment"])

    repositories = [
        RepositoryFactory(organization=organization, integration=integrations["github"], name=name, language=language)
        for name, language in (("web", "TypeScript"), ("api", "Python"), ("infra", "HCL"))
    ]
    pull_requests = []
    for repository in repositories:
        for number in range(1, 9):
            opened = now - timedelta(hours=rng.randint(1, 24 * 30))
            state = rng.choice([PullRequest.State.OPEN, PullRequest.State.MERGED, PullRequest.State.MERGED])
            pull_requests.append(
                PullRequestFactory(
                    repository=repository,
                    number=number,
                    author=rng.choice(people),
                    opened_at=opened,
                    merged=state == PullRequest.State.MERGED,
                    additions=rng.randint(1, 900),
                    deletions=rng.randint(0, 400),
                )
            )
    deployments = []
    for i in range(12):
        started = now - timedelta(hours=rng.randint(1, 24 * 30))
        state = rng.choices([Deployment.State.READY, Deployment.State.ERROR], weights=[9, 1])[0]
        duration = rng.randint(40_000, 180_000)
        deployments.append(
            DeploymentFactory(
                organization=organization,
                repository=repositories[i % len(repositories)],
                integration=integrations["vercel"],
                external_id=f"dpl_{tag}_{i:04d}",
                environment=rng.choice(Deployment.Environment.values),
                state=state,
                started_at=started,
                ready_at=started + timedelta(milliseconds=duration) if state == Deployment.State.READY else None,
                build_duration_ms=duration,
                error_message="" if state == Deployment.State.READY else "Build failed: exit code 1",
            )
        )

    agents = [
        AgentFactory(organization=organization, name=agent_type.label, slug=agent_type.value, agent_type=agent_type)
        for agent_type in list(Agent.AgentType)[:4]
    ]
    for _ in range(2):
        figma_file = FigmaFileFactory(organization=organization, integration=integrations["figma"])
        for _ in range(6):
            DesignComponentFactory(figma_file=figma_file, generated_by_agent=agents[1], usage_count=rng.randint(0, 80))

    account = SocialAccountFactory(
        organization=organization,
        integration=integrations["twitter"],
        handle=f"company_{tag.replace('-', '_')}",
        external_id=f"{tag}-twitter",
    )
    posts = []
    for i in range(8):
        status = (SocialPost.Status.DRAFT, SocialPost.Status.SCHEDULED, SocialPost.Status.PUBLISHED)[i % 3]
        posts.append(
            SocialPostFactory(
                account=account,
                author=rng.choice(people),
                status=status,
                scheduled_at=now + timedelta(days=1 + i) if status == SocialPost.Status.SCHEDULED else None,
                published_at=now - timedelta(days=i) if status == SocialPost.Status.PUBLISHED else None,
                impressions_count=rng.randint(100, 20_000) if status == SocialPost.Status.PUBLISHED else 0,
            )
        )

    tasks = []
    for i in range(12):
        status = (AgentTask.Status.PENDING, AgentTask.Status.QUEUED, AgentTask.Status.COMPLETED)[i % 3]
        started = now - timedelta(hours=rng.randint(1, 200))
        finished = status == AgentTask.Status.COMPLETED
        tasks.append(
            AgentTaskFactory(
                organization=organization,
                agent=agents[i % len(agents)],
                created_by=rng.choice(people),
                title=f"Review {rng.choice(pull_requests).title}"[:200],
                status=status,
                started_at=started if finished else None,
                completed_at=started + timedelta(seconds=rng.randint(5, 600)) if finished else None,
            )
        )
    for task in tasks[:3]:
        AgentCollaborationFactory(
            task=task, initiator=task.agent, collaborator=agents[(agents.index(task.agent) + 1) % 4]
        )

    return OrganizationSubjects(
        organization=organization.id,
        subjects={
            "development.deployment": [d.id for d in deployments],
            "development.pullrequest": [p.id for p in pull_requests],
            "agents.agenttask": [t.id for t in tasks],
            "social.socialpost": [p.id for p in posts],
        },
        users=[p.id for p in people],
        agents=[a.id for a in agents],
    )
