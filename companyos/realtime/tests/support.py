"""Helpers the websocket edge's tests share: async scenarios, child processes, organizations to watch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connections

from companyos.foundation.tests import support
from core.models import Organization
from core.services import api_token_create
from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async scenario in a fresh loop, closing the DB connections its threads opened."""

    async def main():
        try:
            return await scenario()
        finally:
            await database_sync_to_async(connections.close_all)()

    return asyncio.run(main())


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child process: the test database, this run's Redis prefix and channel layer."""
    return support.child_env(
        CHANNEL_LAYER=settings.CHANNEL_LAYER, DJANGO_SETTINGS_MODULE="companyos.config.settings", **overrides
    )


def acme_and_globex() -> tuple[Organization, Organization, str, str]:
    """Organizations ``acme`` and ``globex`` with one member each; returns them and their members' API tokens."""
    acme, globex = OrganizationFactory(slug="acme"), OrganizationFactory(slug="globex")
    tokens = []
    for organization in (acme, globex):
        user = UserFactory()
        OrganizationMemberFactory(organization=organization, user=user)
        tokens.append(api_token_create(user=user, name="e2e")[1])
    return acme, globex, *tokens
