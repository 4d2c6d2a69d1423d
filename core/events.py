"""Real-time consequences of membership changes.

A user removed from an organization stops receiving its events at once: a
control message tells that user's open websocket connections, which drop
their subscriptions (connections also re-check memberships periodically, in
case the message is lost).
"""

from __future__ import annotations

from companyos.foundation.events import control_on_commit
from core.models import OrganizationMember


def membership_deleted(sender, instance: OrganizationMember, **kwargs) -> None:
    control_on_commit(user_id=instance.user_id, action="membership_revoked", organization=str(instance.organization_id))
