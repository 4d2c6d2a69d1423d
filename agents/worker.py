"""The agent worker: claims due tasks and runs their handlers.

One process runs ``concurrency`` runner threads, each with its own database
connection and a recorder thread (with another) that writes the outcomes
while the runner goes on, and, in the main thread, the supervisor: it renews
the leases of the tasks in hand, returns expired leases of dead workers to
the queue, and wakes the runners at every poll. New tasks are announced by
NOTIFY: the first runner to go idle waits on the LISTEN connection itself,
so a notification starts its claim at once, and it wakes the other idle
runners.

Stopping (SIGTERM/SIGINT, or :meth:`Worker.stop`) lets each runner finish
the task it is running, hands back the claimed tasks it has not started,
records the outcomes it has, and exits. A worker killed outright loses its
leases instead; another worker's reaper requeues those tasks once the lease
has run out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils.module_loading import autodiscover_modules

from agents import services
from agents.handlers import PermanentFailure, get_handler
from agents.models import AgentTask
from agents.queue import TaskListener, tasks_claim, tasks_renew_leases
from companyos.foundation.console.history import history_source
from companyos.foundation.db import CONNECTION_LOST, connection_lost, error_summary
from companyos.foundation.events import sends_in_background

logger = logging.getLogger("agents.worker")

# How long the supervisor, or a runner waiting for a NOTIFY, blocks at a time:
# a stop request or a poll is seen within it.
WAIT_SLICE_SECONDS = 0.5


_NOT_RECORDED = "outcome not recorded: the lease will return it to the queue"

# The first pause before recording outcomes again after the database connection
# failed; it doubles up to the worker's poll interval.
RECORD_RETRY_FIRST_SECONDS = 0.2
_Recorded = TypeVar("_Recorded")


def _log_retried(error: Exception, message: str, *args: object) -> None:
    """Log a database error the worker retries: a lost connection as one warning line
    with the error's first line, any other error (a bug) with its traceback."""
    if connection_lost(error):
        logger.warning(f"{message} (%s)", *args, error_summary(error))
    else:
        logger.error(message, *args, exc_info=error)


def _described(task: AgentTask, result: AgentTask | Exception | str) -> tuple[AgentTask, str]:
    """The task to log, and what became of it, from what recording it returned."""
    if isinstance(result, str):
        return task, result
    if isinstance(result, services.LeaseLost):
        return task, "dropped: cancelled or lease lost meanwhile"
    if result.status == AgentTask.Status.QUEUED:
        return result, f"failed, retry at {result.scheduled_for:%H:%M:%S}"
    return result, result.status


@dataclass(frozen=True)
class _Outcome:
    """What a handler did with a task, waiting to be recorded."""

    task: AgentTask
    output: object
    error: str
    permanent: bool
    duration_ms: int


class _Recorder:
    """Records a runner's outcomes from a thread with a connection of its own.

    The runner starts the next task while the outcomes before it are being
    written, and the outcomes that arrive meanwhile are written together
    next, in one transaction (group commit): a handler that takes time gets
    its outcome written alone at once, fast handlers share a commit instead
    of waiting for one each. At most ``limit`` outcomes wait behind the ones
    being written; a worker killed outright leaves both unrecorded, and their
    leases return them to the queue, as for any task it held.
    """

    def __init__(self, record: Callable[[list[_Outcome]], None], *, limit: int, name: str, within: Callable) -> None:
        self._record = record
        self._outcomes: queue.Queue[_Outcome | None] = queue.Queue(maxsize=limit)
        self._thread = threading.Thread(target=within(self._loop), name=name)
        self._thread.start()

    def submit(self, outcome: _Outcome) -> None:
        self._outcomes.put(outcome)

    def close(self) -> None:
        """Record what was submitted, then stop."""
        self._outcomes.put(None)
        self._thread.join()

    def _loop(self) -> None:
        try:
            while True:
                waiting = [self._outcomes.get()]
                with contextlib.suppress(queue.Empty):
                    while waiting[-1] is not None:
                        waiting.append(self._outcomes.get_nowait())
                if connection.errors_occurred:
                    close_old_connections()  # as the runner does: reconnect after an error
                if outcomes := [outcome for outcome in waiting if outcome is not None]:
                    self._record(outcomes)
                if waiting[-1] is None:
                    return
        finally:
            connection.close()


def new_worker_id() -> str:
    """``host:pid:random``: readable in the admin, unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Worker:
    """Runs tasks until stopped, or (``burst``) until none is due."""

    concurrency: int = 1
    agent_ids: Sequence[uuid.UUID] = ()
    task_types: Sequence[str] = ()
    burst: bool = False
    batch_size: int = 1
    # None: the AGENT_TASK_LEASE_SECONDS / AGENT_WORKER_POLL_SECONDS settings.
    lease_seconds: float | None = None
    poll_seconds: float | None = None
    worker_id: str = field(default_factory=new_worker_id)
    processed: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.lease_seconds is None:
            self.lease_seconds = settings.AGENT_TASK_LEASE_SECONDS
        if self.poll_seconds is None:
            self.poll_seconds = settings.AGENT_WORKER_POLL_SECONDS
        # Apps register their handlers in <app>/agent_handlers.py.
        autodiscover_modules("agent_handlers")
        self._stopping = threading.Event()
        self._wakeups = [threading.Event() for _ in range(self.concurrency)]
        self._in_hand: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        # Held by the idle runner that waits on the LISTEN connection.
        self._listening = threading.Lock()
        self._listener: TaskListener | None = None

    def stop(self) -> None:
        """Finish the running tasks, hand back the others, and return from :meth:`run`."""
        self._stopping.set()
        self._wake_all()

    def run(self) -> int:
        """Run until stopped (or drained, in burst mode); returns how many tasks ran."""
        logger.info(
            "worker %s starting: concurrency=%d burst=%s agents=%s task_types=%s",
            self.worker_id,
            self.concurrency,
            self.burst,
            ",".join(map(str, self.agent_ids)) or "all",
            ",".join(self.task_types) or "all",
        )
        self._listener = None if self.burst else TaskListener(agent_ids=self.agent_ids)
        runners = [
            threading.Thread(target=self._within(self._runner), args=(index,), name=f"runner-{index}")
            for index in range(self.concurrency)
        ]
        try:
            self._maintain()
            for runner in runners:
                runner.start()
            self._supervise(runners)
        finally:
            self.stop()
            for runner in runners:
                if runner.is_alive():
                    runner.join()
            if self._listener is not None:
                self._listener.close()
            connection.close()
        logger.info("worker %s stopped after %d tasks", self.worker_id, self.processed)
        return self.processed

    def _within(self, function: Callable) -> Callable:
        """``function`` as a runner's or recorder's thread runs it: history records its
        changes as the worker's, and the live sends of its events go out while it goes on
        (it waits for them once, as it stops)."""
        return history_source("worker", worker_id=self.worker_id)(sends_in_background()(function))

    def _supervise(self, runners: list[threading.Thread]) -> None:
        """Renew leases and reap expired ones, and wake the runners at every
        poll, until the runners are done. Waits in short slices."""
        maintenance_every = max(min(self.lease_seconds / 3, 30.0), 0.5)
        next_maintenance = time.monotonic() + maintenance_every
        next_poll = time.monotonic() + self.poll_seconds
        while alive := [runner for runner in runners if runner.is_alive()]:
            alive[0].join(WAIT_SLICE_SECONDS)
            now = time.monotonic()
            if now >= next_maintenance:
                self._maintain()
                next_maintenance = now + maintenance_every
            if now >= next_poll:
                # The fallback: a scheduled or backed-off task may be due now.
                self._wake_all()
                next_poll = now + self.poll_seconds

    def _idle(self, wakeup: threading.Event) -> None:
        """Wait until there may be work: on the LISTEN connection if no other
        runner is waiting there (then a NOTIFY wakes the other runners too),
        otherwise for a wake-up. Polls and stop requests set ``wakeup``."""
        if self._listener is None or not self._listening.acquire(blocking=False):
            wakeup.wait()
            return
        try:
            while not wakeup.is_set():
                if self._listen(self._listener):
                    self._wake_all()
                    return
        finally:
            self._listening.release()

    def _listen(self, listener: TaskListener) -> bool:
        """Wait a slice for a NOTIFY; a lost connection is logged and reopened
        (meanwhile the poll keeps the runners going)."""
        try:
            return listener.wait(WAIT_SLICE_SECONDS)
        except psycopg.Error as error:  # the listener's own connection, outside Django's error wrapping
            _log_retried(error, "worker %s lost its LISTEN connection; reconnecting", self.worker_id)
            self._stopping.wait(self.poll_seconds)
            with contextlib.suppress(psycopg.Error):
                listener.reconnect()
            return True

    def _maintain(self) -> None:
        """Renew the leases in hand and requeue other workers' expired ones."""
        with self._lock:
            in_hand = list(self._in_hand)
        try:
            close_old_connections()
            tasks_renew_leases(worker_id=self.worker_id, task_ids=in_hand, lease_seconds=self.lease_seconds)
            for task in services.tasks_requeue_expired_leases():
                logger.warning("task %s: lease of worker %s expired, now %s", task.pk, task.worker_id, task.status)
        except DatabaseError as error:
            _log_retried(error, "worker %s could not renew or reap leases; retrying", self.worker_id)

    def _wake_all(self) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    def _runner(self, index: int) -> None:
        wakeup = self._wakeups[index]
        recorder = _Recorder(self._record, limit=self.batch_size, name=f"recorder-{index}", within=self._within)
        try:
            while not self._stopping.is_set():
                wakeup.clear()
                if connection.errors_occurred:
                    # Reconnect after an error. Not before every claim: the
                    # health check costs a query, and a dead connection fails
                    # the claim anyway, which leads here.
                    close_old_connections()
                try:
                    tasks = self._claim()
                except DatabaseError as error:
                    _log_retried(error, "worker %s could not claim tasks; retrying", self.worker_id)
                    self._stopping.wait(self.poll_seconds)
                    continue
                if not tasks:
                    if self.burst:
                        return
                    self._idle(wakeup)
                    continue
                for position, task in enumerate(tasks):
                    if self._stopping.is_set():
                        self._hand_back(tasks[position:])
                        return
                    recorder.submit(self._run_handler(task))
        finally:
            recorder.close()
            connection.close()

    def _claim(self) -> list[AgentTask]:
        tasks = tasks_claim(
            worker_id=self.worker_id,
            limit=self.batch_size,
            agent_ids=self.agent_ids,
            task_types=self.task_types,
            lease_seconds=self.lease_seconds,
        )
        with self._lock:
            self._in_hand.update(task.pk for task in tasks)
        return tasks

    def _execute(self, task: AgentTask) -> None:
        """Run one claimed task's handler and record the outcome, in this thread."""
        self._record([self._run_handler(task)])

    @staticmethod
    def _run_handler(task: AgentTask) -> _Outcome:
        started = time.monotonic()
        error, permanent, output = "", False, None
        try:
            output = get_handler(task.task_type)(task)
        except PermanentFailure as exc:
            error, permanent = str(exc), True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        return _Outcome(task, output, error, permanent, round((time.monotonic() - started) * 1000))

    def _record(self, outcomes: list[_Outcome]) -> None:
        """Record handlers' outcomes, one log line each: the completions
        through :func:`services.tasks_complete` (several in one transaction),
        each failure in a transaction of its own.

        A lost connection (a failover, a restarted server) is retried until
        the outcomes are recorded: the handlers' work is not run again. Only a
        worker that stops meanwhile, or another error, leaves the tasks running;
        their leases, no longer renewed, then return them to the queue.
        """
        described: dict[uuid.UUID, tuple[AgentTask, str, str]] = {}
        completing = [outcome for outcome in outcomes if not outcome.error]
        failing = [outcome for outcome in outcomes if outcome.error]
        try:
            try:
                results = self._until_recorded(lambda again: self._complete(completing, again=again), completing)
            except Exception:  # not only DatabaseError: the recorder must go on, the runner must not wait on it
                tasks = ", ".join(str(outcome.task.pk) for outcome in completing)
                logger.exception("tasks %s: could not record the outcomes", tasks)
                results = [_NOT_RECORDED] * len(completing)
            for outcome, result in zip(completing, results, strict=True):
                if isinstance(result, TypeError | ValueError):
                    error = f"The handler's output cannot be stored as JSON: {result}"
                    failing.append(dataclasses.replace(outcome, error=error, permanent=True))
                else:
                    described[outcome.task.pk] = (*_described(outcome.task, result), "")
            for outcome in failing:
                described[outcome.task.pk] = (*_described(outcome.task, self._fail(outcome)), outcome.error)
        finally:
            with self._lock:
                self._in_hand.difference_update(outcome.task.pk for outcome in outcomes)
                self.processed += len(outcomes)
        for outcome in outcomes:
            task, what, error = described[outcome.task.pk]
            logger.info(
                "task %s type=%s agent=%s attempt=%d/%d %s in %d ms%s",
                task.pk,
                task.task_type,
                task.agent_id,
                task.attempts,
                task.max_attempts,
                what,
                outcome.duration_ms,
                f": {error}" if error else "",
            )

    def _until_recorded(self, record: Callable[[bool], _Recorded], outcomes: list[_Outcome]) -> _Recorded:
        """``record(again)``, run again after each lost connection until it succeeds or the worker stops.

        The runner waits meanwhile (at most a batch of outcomes queues up), as its claims would fail too.
        """
        pause, again = RECORD_RETRY_FIRST_SECONDS, False
        while True:
            try:
                return record(again)
            except CONNECTION_LOST as error:
                if not connection_lost(error) or self._stopping.is_set():
                    raise
                tasks = ", ".join(str(outcome.task.pk) for outcome in outcomes)
                _log_retried(error, "tasks %s: could not record the outcomes; retrying in %g s", tasks, pause)
            self._stopping.wait(pause)
            close_old_connections()
            pause, again = min(pause * 2, self.poll_seconds), True

    def _complete(self, completing: list[_Outcome], *, again: bool) -> list[AgentTask | Exception]:
        """Record completions. ``again``: an attempt failed, and may have committed before its connection
        went, so the tasks are read back first: those still running this attempt are recorded, those it
        recorded are reported as recorded, and any other was lost meanwhile."""
        if not again:
            return self._write_completions(completing)
        stored = AgentTask.objects.in_bulk([outcome.task.pk for outcome in completing])
        results: dict[uuid.UUID, AgentTask | Exception] = {}
        pending = []
        for outcome in completing:
            task = stored.get(outcome.task.pk)
            this_attempt = self._at_this_attempt(task, outcome)
            if this_attempt and task.status == AgentTask.Status.RUNNING:
                pending.append(dataclasses.replace(outcome, task=task))
            elif this_attempt and task.status in (AgentTask.Status.COMPLETED, AgentTask.Status.AWAITING_APPROVAL):
                results[outcome.task.pk] = task
            else:
                results[outcome.task.pk] = services.LeaseLost.of(outcome.task, self.worker_id)
        results.update(zip((outcome.task.pk for outcome in pending), self._write_completions(pending), strict=True))
        return [results[outcome.task.pk] for outcome in completing]

    def _at_this_attempt(self, stored: AgentTask | None, outcome: _Outcome) -> bool:
        """Whether ``stored``, the task read back, is still at the attempt this worker ran for ``outcome``."""
        return stored is not None and (stored.worker_id, stored.attempts) == (self.worker_id, outcome.task.attempts)

    def _write_completions(self, completing: list[_Outcome]) -> list[AgentTask | Exception]:
        return services.tasks_complete(
            worker_id=self.worker_id,
            results=[(outcome.task, outcome.output, outcome.duration_ms) for outcome in completing],
        )

    def _fail(self, outcome: _Outcome) -> AgentTask | Exception | str:
        try:
            return self._until_recorded(lambda again: self._write_failure(outcome, again=again), [outcome])
        except services.LeaseLost as exc:
            return exc
        except Exception:  # as for completions: logged, the lease returns the task
            logger.exception("task %s: could not record the outcome", outcome.task.pk)
            return _NOT_RECORDED

    def _write_failure(self, outcome: _Outcome, *, again: bool) -> AgentTask:
        """Record a failed attempt. ``again``: as for completions, the attempt before may have
        committed, so a task this attempt already failed with this error is reported as recorded
        (task_fail would find it no longer running and call it lost)."""
        if again:
            stored = AgentTask.objects.filter(pk=outcome.task.pk).first()
            if (
                self._at_this_attempt(stored, outcome)
                and stored.error == services.kept_error(outcome.error)
                and stored.status in (AgentTask.Status.QUEUED, AgentTask.Status.FAILED)
            ):
                return stored
        return services.task_fail(
            task=outcome.task, worker_id=self.worker_id, error=outcome.error, permanent=outcome.permanent
        )

    def _hand_back(self, tasks: list[AgentTask]) -> None:
        for task in tasks:
            with contextlib.suppress(services.LeaseLost):
                services.task_hand_back(task=task, worker_id=self.worker_id)
            with self._lock:
                self._in_hand.discard(task.pk)
            logger.info("task %s handed back: worker %s is stopping", task.pk, self.worker_id)
