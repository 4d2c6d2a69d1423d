"""The agent queue in the background worker (docs/jobs.md, docs/agents.md).

Agent tasks keep their own table and state machine (agents/queue.py): every
``run_worker`` process runs :class:`agents.worker.Worker` in a thread beside
the system jobs. That Worker also returns the tasks of dead workers to the
queue when their lease runs out; no periodic job does, since only a running
Worker could take them again anyway.
"""

from __future__ import annotations

from agents.worker import Worker
from companyos.foundation.jobs import register_runner

register_runner("agents", lambda concurrency: Worker(concurrency=concurrency))
