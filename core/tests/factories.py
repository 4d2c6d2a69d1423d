"""Factories for people, organizations and API tokens."""

import hashlib

import factory
from factory.django import DjangoModelFactory

from core.models import ApiToken, Organization, OrganizationMember, User


class UserFactory(DjangoModelFactory):
    """A member with an unusable password; pass ``password=`` to set one."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    github_username = factory.Sequence(lambda n: f"dev-{n}")
    timezone = "Europe/Berlin"
    settings = factory.LazyFunction(lambda: {"notifications": {"email": True}, "theme": "system"})

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        if extracted:
            obj.set_password(extracted)
        else:
            obj.set_unusable_password()
        if create:
            obj.save(update_fields=["password"])


class AdminUserFactory(UserFactory):
    role = User.Role.ADMIN
    is_staff = True
    is_superuser = True


class OrganizationFactory(DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Company {n}")
    slug = factory.Sequence(lambda n: f"company-{n}")
    plan = Organization.Plan.TEAM
    settings = factory.LazyFunction(lambda: {"default_timezone": "UTC"})


class OrganizationMemberFactory(DjangoModelFactory):
    class Meta:
        model = OrganizationMember

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = OrganizationMember.Role.MEMBER


class ApiTokenFactory(DjangoModelFactory):
    """A stored token; ``token.raw`` is the value a client would send (only its hash is stored)."""

    class Meta:
        model = ApiToken

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Script {n}")
    raw = factory.Sequence(lambda n: f"cos_test_token_{n:08d}")
    prefix = factory.LazyAttribute(lambda o: o.raw[:12])
    token_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.raw.encode()).hexdigest())

    @classmethod
    def _create(cls, model_class, *args, raw: str, **kwargs):
        token = super()._create(model_class, *args, **kwargs)
        token.raw = raw
        return token
