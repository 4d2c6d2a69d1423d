"""Social accounts and posts: constraints and deletion rules."""

import pytest
from django.utils import timezone

from agents.tests.factories import AgentFactory
from core.tests.factories import UserFactory
from core.tests.utils import violates
from social.models import SocialAccount, SocialPost
from social.tests.factories import SocialAccountFactory, SocialPostFactory

pytestmark = pytest.mark.django_db


class TestSocialAccount:
    def test_external_id_is_unique_per_platform(self):
        account = SocialAccountFactory()
        with violates("social_account_external_unique"):
            SocialAccountFactory(external_id=account.external_id)
        SocialAccountFactory(platform="linkedin", external_id=account.external_id)

    def test_handle_is_unique_per_organization_and_platform(self):
        account = SocialAccountFactory(handle="acme")
        with violates("social_account_handle_unique"):
            SocialAccountFactory(organization=account.organization, handle="acme")
        SocialAccountFactory(organization=account.organization, platform="linkedin", handle="acme")

    def test_platform_check(self):
        with violates("social_account_platform_valid"):
            SocialAccountFactory(platform="myspace")

    def test_deleting_the_organization_deletes_accounts_and_posts(self):
        post = SocialPostFactory()
        post.account.organization.delete()
        assert not SocialAccount.objects.filter(pk=post.account_id).exists()
        assert not SocialPost.objects.filter(pk=post.pk).exists()


class TestSocialPost:
    def test_status_check(self):
        with violates("social_post_status_valid"):
            SocialPostFactory(status="viral")

    def test_a_scheduled_post_has_scheduled_at(self):
        with violates("social_post_scheduled_has_scheduled_at"):
            SocialPostFactory(status="scheduled")
        assert SocialPostFactory(status="scheduled", scheduled_at=timezone.now()).pk

    def test_a_published_post_has_published_at(self):
        with violates("social_post_published_has_published_at"):
            SocialPostFactory(status="published")
        assert SocialPostFactory(status="published", published_at=timezone.now()).pk

    def test_media_urls_array_round_trips(self):
        urls = ["https://cdn.example.com/a.png", "https://cdn.example.com/ü.gif"]
        post = SocialPostFactory(media_urls=urls)
        assert SocialPost.objects.get(pk=post.pk).media_urls == urls

    def test_content_keeps_unicode(self):
        post = SocialPostFactory(content="Launch day 🚀 — «merci» 日本語")
        assert SocialPost.objects.get(pk=post.pk).content == "Launch day 🚀 — «merci» 日本語"

    def test_deleting_the_author_or_the_agent_keeps_the_post(self):
        author, agent = UserFactory(), AgentFactory()
        post = SocialPostFactory(author=author, agent=agent, is_agent_generated=True)
        author.delete()
        agent.delete()
        post.refresh_from_db()
        assert (post.author, post.agent, post.is_agent_generated) == (None, None, True)
