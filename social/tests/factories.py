"""Factories for social accounts and posts."""

import factory
from factory.django import DjangoModelFactory

from core.tests.factories import OrganizationFactory
from social.models import SocialAccount, SocialPost


class SocialAccountFactory(DjangoModelFactory):
    class Meta:
        model = SocialAccount

    organization = factory.SubFactory(OrganizationFactory)
    platform = SocialAccount.Platform.TWITTER
    handle = factory.Sequence(lambda n: f"company{n}")
    external_id = factory.Sequence(lambda n: str(1_500_000_000 + n))
    display_name = factory.LazyAttribute(lambda o: o.handle.title())
    profile_url = factory.LazyAttribute(lambda o: f"https://x.com/{o.handle}")
    followers_count = 1200


class SocialPostFactory(DjangoModelFactory):
    """A draft; pass status and the matching timestamp for other states."""

    class Meta:
        model = SocialPost

    account = factory.SubFactory(SocialAccountFactory)
    content = factory.Faker("sentence", nb_words=14)
    status = SocialPost.Status.DRAFT
