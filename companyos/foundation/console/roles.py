"""The three staff roles, as Django groups.

- ``viewer``: may view everything, change nothing.
- ``operator``: views everything; changes the operational models (those
  that declare ``operators_may_change = True``) and runs their actions
  (approve a task, schedule a post...); deletes nothing, adds nothing, never
  sees or sets credentials and secrets, and manages no people or roles.
- ``admin``: every permission, including ``console.manage_secrets``.

The groups are created by the migration ``0002_roles`` and kept in step by
:func:`sync_roles` after every ``migrate``, so a model added later (by any
app) gets its permissions into the groups without a new data migration.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"


def operators_may_change(app_label: str, model_name: str) -> bool:
    """Whether the model declares ``operators_may_change = True``: one the company is run with.

    Read from the installed models (historical models in migrations carry no
    class attributes); a permission of a model no longer installed grants
    operators nothing.
    """
    try:
        model = global_apps.get_model(app_label, model_name)
    except LookupError:
        return False
    return getattr(model, "operators_may_change", False)


def role_permissions(permissions) -> dict[str, list]:
    """Split Permission rows into the three roles."""
    roles: dict[str, list] = {VIEWER: [], OPERATOR: [], ADMIN: []}
    for permission in permissions:
        action = permission.codename.partition("_")[0]
        content_type = permission.content_type
        roles[ADMIN].append(permission)
        if action == "view":
            roles[VIEWER].append(permission)
            roles[OPERATOR].append(permission)
        elif action == "change" and operators_may_change(content_type.app_label, content_type.model):
            roles[OPERATOR].append(permission)
    return roles


def sync_roles(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS) -> None:
    """Create the groups if missing and give each exactly its role's permissions."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.using(using).select_related("content_type")
    for name, granted in role_permissions(permissions).items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(granted)


def sync_roles_after_migrate(sender, *, using: str = DEFAULT_DB_ALIAS, apps=global_apps, plan=None, **kwargs) -> None:
    # post_migrate is sent once per app with models; acting on the last one
    # is enough, once every app's permissions exist.
    last = [config for config in global_apps.get_app_configs() if config.models_module is not None][-1]
    if sender.label != last.label:
        return
    try:
        apps.get_model("auth", "Group")
    except LookupError:
        return
    sync_roles(apps=apps, using=using)
