"""Formerly the first version of ``console_record_change()``.

Its only definition is now migration 0006 (databases that applied this one
had it replaced there), so nothing is created here.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]

    operations = []
