"""Formerly a cheaper diff in ``console_record_change()``.

The function, with that diff, is now defined once, by migration 0006
(databases that applied this one had it replaced there), so nothing is
changed here.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("console", "0004_fewer_indexes_split_triggers")]

    operations = []
