"""The history triggers move into the apps' migrations; the function reads our own context.

Until now the triggers were created after every ``migrate`` from run-time
SQL (``console_change_write`` / ``console_change_update``); each tracked
model now declares them (``Meta.triggers = tracked(...)``, see
companyos.foundation.console.history) and its app's migrations create them,
depending on this migration. The old ones are dropped here.

``console_record_change()`` is defined here, its only definition (0002 and
0005 defined the earlier versions). It takes who and from where from the
``companyos.change_context`` setting that ``change_context()`` sends with
each write, instead of django-pghistory's. The diff is 0005's: one pass over
the new row's keys.
"""

from django.db import migrations

DROP_RUNTIME_TRIGGERS = r"""
DO $$
DECLARE found record;
BEGIN
    FOR found IN
        SELECT tgname, tgrelid::regclass AS tbl FROM pg_trigger
         WHERE tgname IN ('console_change_write', 'console_change_update')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', found.tgname, found.tbl);
    END LOOP;
END $$;
"""

RECORD_CHANGE = r"""
CREATE OR REPLACE FUNCTION console_record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
-- Arguments: the model label, the comma-separated columns whose values are
-- hidden (a change is recorded, the value is not), and the columns whose
-- changes alone are not worth a record.
DECLARE
    hidden text[] := string_to_array(TG_ARGV[1], ',');
    ignored text[] := string_to_array(TG_ARGV[2], ',');
    old_row jsonb;
    new_row jsonb;
    before_values jsonb;
    after_values jsonb;
    row_id uuid;
    -- {"id", "source", "user", "metadata"}; unset (NULL or '') outside the application.
    context jsonb := NULLIF(current_setting('companyos.change_context', true), '')::jsonb;
    column_name text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        row_id := NEW.id;
        old_row := to_jsonb(OLD);
        new_row := to_jsonb(NEW);
        SELECT jsonb_object_agg(key, value) INTO after_values
          FROM jsonb_each(new_row)
         WHERE value IS DISTINCT FROM old_row -> key AND NOT key = ANY (ignored);
        IF after_values IS NULL THEN
            RETURN NULL;
        END IF;
        SELECT jsonb_object_agg(key, old_row -> key) INTO before_values FROM jsonb_object_keys(after_values) AS key;
    ELSIF TG_OP = 'INSERT' THEN
        row_id := NEW.id;
        after_values := to_jsonb(NEW) - ignored;
    ELSE
        row_id := OLD.id;
        before_values := to_jsonb(OLD) - ignored;
    END IF;
    FOREACH column_name IN ARRAY hidden LOOP
        IF before_values ? column_name THEN
            before_values := jsonb_set(before_values, ARRAY[column_name], '"(hidden)"');
        END IF;
        IF after_values ? column_name THEN
            after_values := jsonb_set(after_values, ARRAY[column_name], '"(hidden)"');
        END IF;
    END LOOP;
    INSERT INTO console_change (at, model, object_id, operation, before, after, user_id, source, context_id, context)
    VALUES (
        now(), TG_ARGV[0], row_id, lower(TG_OP), before_values, after_values,
        (context ->> 'user')::uuid,
        COALESCE(context ->> 'source', ''),
        (context ->> 'id')::uuid,
        context -> 'metadata'
    );
    RETURN NULL;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("console", "0005_faster_change_diff")]

    operations = [
        migrations.RunSQL(DROP_RUNTIME_TRIGGERS, migrations.RunSQL.noop),
        # The apps' trigger migrations depend on this one, so they are reversed first.
        migrations.RunSQL(RECORD_CHANGE, "DROP FUNCTION console_record_change();"),
    ]
