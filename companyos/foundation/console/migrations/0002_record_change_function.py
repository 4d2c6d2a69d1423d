"""The trigger function behind the change history (see companyos.foundation.console.history).

Triggers calling it are (re)installed on the tracked tables after every
migrate, so tables of any app, created later, are covered without a
migration here.
"""

from django.db import migrations

RECORD_CHANGE = r"""
CREATE OR REPLACE FUNCTION console_record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
-- Arguments: the model label, the comma-separated columns whose values are
-- hidden (a change is recorded, the value is not), and the columns whose
-- changes alone are not worth a record.
DECLARE
    hidden text[] := string_to_array(TG_ARGV[1], ',');
    ignored text[] := string_to_array(TG_ARGV[2], ',');
    before_values jsonb;
    after_values jsonb;
    row_id uuid;
    context jsonb := NULLIF(current_setting('pghistory.context_metadata', true), '')::jsonb;
    column_name text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        row_id := NEW.id;
        SELECT jsonb_object_agg(n.key, o.value), jsonb_object_agg(n.key, n.value)
          INTO before_values, after_values
          FROM jsonb_each(to_jsonb(NEW)) AS n
          JOIN jsonb_each(to_jsonb(OLD)) AS o ON o.key = n.key
         WHERE n.value IS DISTINCT FROM o.value AND NOT n.key = ANY (ignored);
        IF before_values IS NULL THEN
            RETURN NULL;
        END IF;
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
        NULLIF(context ->> 'user', '')::uuid,
        COALESCE(context ->> 'source', ''),
        NULLIF(current_setting('pghistory.context_id', true), '')::uuid,
        context - 'user' - 'source'
    );
    RETURN NULL;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]

    operations = [
        migrations.RunSQL(RECORD_CHANGE, "DROP FUNCTION IF EXISTS console_record_change() CASCADE;"),
    ]
