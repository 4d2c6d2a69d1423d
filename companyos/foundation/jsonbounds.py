"""JSON from outside: bounded in size and nesting, and storable in JSONB.

Every place that takes JSON from a caller (the webhook intake, the admin's
JSON fields) parses it with :func:`load_bounded_json`, so one rule decides
what is refused:

- larger than ``JSON_MAX_BYTES`` (or the caller's own limit), before parsing;
- arrays and objects nested deeper than ``JSON_MAX_DEPTH``. The bound sits
  far below what Python's recursion limit lets ``json`` load back (about
  1,000 levels, less inside a deep call stack such as an admin page
  rendering a JSONB column) and what PostgreSQL's ``max_stack_depth`` lets
  JSONB take: a value that was accepted can always be read again. Deeper
  text stops the C parser at the recursion limit (a RecursionError, caught);
  what it parses is then measured by a walk without recursion;
- ``NaN``/``Infinity`` (not JSON), numbers longer than
  ``MAX_NUMBER_CHARACTERS`` or beyond a float's range (JSONB's numeric
  would refuse the exponent, Python would read infinity), and strings JSONB
  refuses (NUL, unpaired surrogates).

A refusal is a :class:`JSONRefused` (a ValueError) whose message tells the
caller what to change and nothing else.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput

__all__ = ["BoundedJSONFormField", "JSONRefused", "load_bounded_json"]

UNSTORABLE = "The JSON holds characters that cannot be stored (NUL or unpaired surrogates)."

# Ids and amounts fit easily; Python refuses integers over 4,300 digits with a bare ValueError.
MAX_NUMBER_CHARACTERS = 100
NUMBER_TOO_LONG = f"Numbers are limited to {MAX_NUMBER_CHARACTERS} characters."
# JSON writes an integer without leading zeros or exponent: its text is longer
# than MAX_NUMBER_CHARACTERS exactly when the integer is outside this range.
_INTEGER_RANGE = (-(10 ** (MAX_NUMBER_CHARACTERS - 1)), 10**MAX_NUMBER_CHARACTERS)


class JSONRefused(ValueError):
    """JSON input over a bound or holding what JSONB cannot store."""


def _check_structure(value: Any, *, max_depth: int, check_strings: bool) -> None:
    """Refuse ``value`` nested deeper than ``max_depth``, holding an integer longer than
    ``MAX_NUMBER_CHARACTERS``, or (``check_strings``) a string JSONB refuses.

    A walk with its own stack: no recursion, whatever the depth. ``value``
    comes from ``json.loads``: its containers are exactly dicts and lists.
    """
    lowest, highest = _INTEGER_RANGE
    stack = [([value], 0)]  # the value in a list of depth 0, checked like any child
    while stack:
        container, depth = stack.pop()
        if type(container) is dict:
            if check_strings and not all(_storable(key) for key in container):
                raise JSONRefused(UNSTORABLE)
            children = container.values()
        else:
            children = container
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                if depth == max_depth:
                    raise JSONRefused(f"The JSON nests arrays and objects deeper than {max_depth} levels.")
                stack.append((child, depth + 1))
            elif kind is int:
                if not lowest < child < highest:
                    raise JSONRefused(NUMBER_TOO_LONG)
            elif kind is str and check_strings and not _storable(child):
                raise JSONRefused(UNSTORABLE)


def _reject_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not JSON.")


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARACTERS:
        raise JSONRefused(NUMBER_TOO_LONG)
    value = float(literal)
    if not math.isfinite(value):
        raise JSONRefused(f"The number {literal} is out of range.")
    return value


def _storable(text: str) -> bool:
    """Whether PostgreSQL's JSONB takes the string: it refuses NUL and unpaired surrogates, which JSON allows."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def load_bounded_json(data: str | bytes, *, max_bytes: int | None = None) -> Any:
    """Parse JSON from a caller, refusing with :class:`JSONRefused` what is too large, too deep or unstorable.

    ``max_bytes`` replaces ``JSON_MAX_BYTES`` for a caller with a size limit
    of its own (the webhook intake's). Bytes must be UTF-8 (a
    UnicodeDecodeError, also a ValueError, otherwise).
    """
    limit = max_bytes or settings.JSON_MAX_BYTES
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise JSONRefused(f"The JSON is larger than {limit} bytes.")
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    too_deep = f"The JSON nests arrays and objects deeper than {settings.JSON_MAX_DEPTH} levels."
    try:
        # Floats, rare, are bounded as they are read; integers by the walk
        # below, which costs less than a hook called for each of them.
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except JSONRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRefused(f"The JSON is not valid: {exc.msg} at line {exc.lineno} column {exc.colno}.") from exc
    except ValueError as exc:  # an integer over Python's 4,300 digits
        raise JSONRefused(NUMBER_TOO_LONG) from exc
    except RecursionError as exc:
        raise JSONRefused(too_deep) from exc
    # Only \u escapes can smuggle in what JSONB refuses (valid UTF-8 text cannot).
    _check_structure(value, max_depth=settings.JSON_MAX_DEPTH, check_strings="\\u" in text)
    return value


class BoundedJSONFormField(forms.JSONField):
    """The admin's JSON field: what :func:`load_bounded_json` refuses is a form error, never a 500.

    Django's own field parses without bounds both when cleaning and when
    showing the typed text back, so a deeply nested value would raise
    RecursionError on either path.
    """

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            load_bounded_json(value)
        except JSONRefused as exc:
            raise ValidationError(str(exc), code="invalid") from exc
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        try:
            return load_bounded_json(data)
        except ValueError:
            return InvalidJSONInput(data)
