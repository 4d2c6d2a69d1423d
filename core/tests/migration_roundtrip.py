"""Migrate every app to zero and forward again; run as a script by test_migrations.

``python -m core.tests.migration_roundtrip core integrations ...`` against the
database in DATABASE_URL (a throwaway one: it ends fully migrated, but
whatever data it held is gone). One process for every step, so Django starts
once.
"""

import sys

import django


def main(app_labels: list[str]) -> None:
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    def our_tables() -> set[str]:
        prefixes = tuple(f"{app}_" for app in app_labels)
        return {table for table in connection.introspection.table_names() if table.startswith(prefixes)}

    call_command("migrate", verbosity=0)
    everything = our_tables()
    assert everything, "no tables after migrate"
    # Leaves first, so each step unapplies exactly one app's migrations.
    for app in reversed(app_labels):
        call_command("migrate", app, "zero", verbosity=0)
        assert not any(table.startswith(f"{app}_") for table in our_tables()), f"{app} left tables behind"
        call_command("migrate", verbosity=0)
        assert our_tables() == everything, f"{app}: migrating forward again gave other tables"
    # And everything down at once, leaves first (an app's 0001 may not depend
    # on core: agents and analytics gain their core foreign keys in 0002).
    for app in reversed(app_labels):
        call_command("migrate", app, "zero", verbosity=0)
    assert our_tables() == set(), sorted(our_tables())
    call_command("migrate", verbosity=0)
    assert our_tables() == everything
    print(f"round trip ok: {len(everything)} tables")


if __name__ == "__main__":
    main(sys.argv[1:])
