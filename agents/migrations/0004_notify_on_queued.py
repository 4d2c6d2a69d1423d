"""NOTIFY idle workers whenever a task becomes queued.

A trigger rather than an on_commit hook so that every path that queues a task
(services, bulk inserts, raw SQL, the lease reaper) wakes the workers.
PostgreSQL delivers the notification at commit and folds identical ones in a
transaction into one, so a bulk insert of 10,000 tasks sends one per agent.
The payload is the agent's id, so workers serving other agents can ignore it.
"""

from django.db import migrations

CHANNEL = "agents_task_queued"

CREATE = f"""
CREATE FUNCTION agents_task_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.agent_id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER agents_task_queued_insert AFTER INSERT ON agents_agenttask
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION agents_task_notify_queued();
CREATE TRIGGER agents_task_queued_update AFTER UPDATE OF status ON agents_agenttask
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued') EXECUTE FUNCTION agents_task_notify_queued();
"""

DROP = """
DROP TRIGGER agents_task_queued_update ON agents_agenttask;
DROP TRIGGER agents_task_queued_insert ON agents_agenttask;
DROP FUNCTION agents_task_notify_queued();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0003_queue_invariants"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
