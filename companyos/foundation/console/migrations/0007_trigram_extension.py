"""pg_trgm, for the trigram indexes of the global search (companyos.foundation.search).

The apps' migrations that add those indexes depend on this one. pg_trgm is a
trusted extension: the database's owner may create it without superuser.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("console", "0006_record_change_from_declared_triggers")]

    operations = [TrigramExtension()]
