"""Create the viewer, operator and admin groups with their permissions.

Permissions are normally created after ``migrate`` (post_migrate), so on a
fresh database they do not exist yet here: they are created first, for every
app in the migration state.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    from companyos.foundation.console.roles import sync_roles

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    sync_roles(apps=apps, using=schema_editor.connection.alias)


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["viewer", "operator", "admin"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0002_record_change_function"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # Every domain model in the state, so its permissions exist here.
        *[(app, "__first__") for app in ("core", "integrations", "development", "design", "social", "agents", "analytics")],
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
