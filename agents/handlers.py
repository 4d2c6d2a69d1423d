"""Task handlers: the code a worker runs for each task type.

A handler takes the claimed :class:`~agents.models.AgentTask` and returns its
output (anything JSON can store). Raising an exception fails the attempt; the
worker retries it with backoff up to ``max_attempts``, unless the exception is
a :class:`PermanentFailure`, which fails the task at once.

Register handlers with the decorator, in any installed app's
``agent_handlers.py`` module (the worker imports those at start)::

    from agents.handlers import register

    @register("summarize_pull_request")
    def summarize(task):
        return {"summary": ...}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agents.models import AgentTask

Handler = Callable[[AgentTask], Any]

_registry: dict[str, Handler] = {}


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help (bad input, unknown type)."""


def register(task_type: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``task_type``."""

    def decorator(handler: Handler) -> Handler:
        existing = _registry.get(task_type)
        if existing is not None and existing is not handler:
            raise ValueError(f"Task type {task_type!r} already has a handler: {existing.__qualname__}.")
        _registry[task_type] = handler
        return handler

    return decorator


def unregister(task_type: str) -> None:
    """Forget the handler of ``task_type`` (tests register temporary ones)."""
    _registry.pop(task_type, None)


def get_handler(task_type: str) -> Handler:
    """The handler of ``task_type``; a :class:`PermanentFailure` if there is none."""
    try:
        return _registry[task_type]
    except KeyError:
        raise PermanentFailure(f"No handler is registered for task type {task_type!r}.") from None


@register("echo")
def echo(task: AgentTask) -> Any:
    """Output = input: for trying the queue out, tests and benchmarks."""
    return task.input


# Caps the ``sleep`` handler so a typo cannot park a worker for hours.
MAX_SLEEP_SECONDS = 600.0


@register("sleep")
def sleep(task: AgentTask) -> Any:
    """Sleep ``input["seconds"]`` (at most 10 minutes), then echo the input.

    Stands in for a slow model call: crash and shutdown tests kill or stop a
    worker while it is busy with one of these.
    """
    try:
        seconds = float(task.input.get("seconds", 1.0))
    except (TypeError, ValueError):
        raise PermanentFailure("input['seconds'] must be a number.") from None
    time.sleep(min(max(seconds, 0.0), MAX_SLEEP_SECONDS))
    return task.input
