"""The control message of a removed membership (control messages are not events).

Events (``deployment.ready``…) are declared on their models and stored as
rows (``companyos.foundation.events``). A control message is different: it
tells one user's open websocket connections something at once, through
``control_on_commit``, after commit; it stores nothing, belongs to no topic
and is never replayed. Two exist: ``token_revoked`` (``core.services.api_token_revoke``)
and ``membership_revoked``, sent below from ``post_delete`` so that a
membership deleted any way (the admin, a cascade, a shell) cuts that user's
live events of the organization: the connections drop their subscriptions.
Connections also re-check their memberships periodically, in case the
message is lost.
"""

from __future__ import annotations

from companyos.foundation.events import control_on_commit
from core.models import OrganizationMember


def membership_deleted(sender, instance: OrganizationMember, **kwargs) -> None:
    control_on_commit(user_id=instance.user_id, action="membership_revoked", organization=str(instance.organization_id))
