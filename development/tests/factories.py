"""Factories for repositories, pull requests and deployments."""

import datetime as dt

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from core.tests.factories import OrganizationFactory
from development.models import Deployment, PullRequest, Repository


class RepositoryFactory(DjangoModelFactory):
    class Meta:
        model = Repository

    organization = factory.SubFactory(OrganizationFactory)
    owner = "acme"
    name = factory.Sequence(lambda n: f"service-{n}")
    full_name = factory.LazyAttribute(lambda o: f"{o.owner}/{o.name}")
    external_id = factory.Sequence(lambda n: 700_000_000 + n)
    description = "A service of the platform."
    url = factory.LazyAttribute(lambda o: f"https://github.com/{o.full_name}")
    language = "Python"


class PullRequestFactory(DjangoModelFactory):
    """An open pull request; ``merged=True`` gives a merged one."""

    class Meta:
        model = PullRequest

    class Params:
        merged = factory.Trait(
            state=PullRequest.State.MERGED,
            merged_at=factory.LazyAttribute(lambda o: o.opened_at + dt.timedelta(hours=5)),
            closed_at=factory.LazyAttribute(lambda o: o.opened_at + dt.timedelta(hours=5)),
        )

    repository = factory.SubFactory(RepositoryFactory)
    number = factory.Sequence(lambda n: n + 1)
    external_id = factory.Sequence(lambda n: 1_900_000_000 + n)
    title = factory.Faker("sentence", nb_words=6)
    body = factory.Faker("paragraph")
    state = PullRequest.State.OPEN
    author_login = factory.Sequence(lambda n: f"dev-{n}")
    head_branch = factory.Sequence(lambda n: f"feature/change-{n}")
    base_branch = "main"
    head_sha = factory.Faker("sha1")
    url = factory.LazyAttribute(lambda o: f"https://github.com/{o.repository.full_name}/pull/{o.number}")
    labels = factory.LazyFunction(lambda: ["enhancement"])
    additions = 120
    deletions = 30
    changed_files = 6
    opened_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))


class DeploymentFactory(DjangoModelFactory):
    """A deployment that is ready."""

    class Meta:
        model = Deployment

    organization = factory.SubFactory(OrganizationFactory)
    repository = factory.SubFactory(RepositoryFactory, organization=factory.SelfAttribute("..organization"))
    external_id = factory.Sequence(lambda n: f"dpl_{n:024d}")
    project_name = factory.LazyAttribute(lambda o: o.repository.name if o.repository else "web")
    url = factory.LazyAttribute(lambda o: f"https://{o.project_name}-{o.external_id[-6:]}.vercel.app")
    environment = Deployment.Environment.PREVIEW
    state = Deployment.State.READY
    commit_sha = factory.Faker("sha1")
    branch = "main"
    started_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(minutes=3))
    ready_at = factory.LazyAttribute(lambda o: o.started_at + dt.timedelta(seconds=84))
    build_duration_ms = 84_000
