"""Reading what models declare about themselves (events, search, ...) from the app registry.

The platform lists no domain model: a model sets a class attribute holding a
declaration object, and the infrastructure that needs it finds it here.
"""

from __future__ import annotations

from typing import TypeVar

from django.apps import apps
from django.db import models

Declaration = TypeVar("Declaration")


def declaration_of(model: type[models.Model], attribute: str, kind: type[Declaration]) -> Declaration | None:
    """What ``model`` declares under ``attribute``, if it is a ``kind``."""
    declaration = getattr(model, attribute, None)
    return declaration if isinstance(declaration, kind) else None


def declaring_models(attribute: str, kind: type[Declaration]) -> list[tuple[type[models.Model], Declaration]]:
    """Every installed model that declares a ``kind`` under ``attribute``, with its declaration."""
    return [
        (model, declaration)
        for model in apps.get_models()
        if (declaration := declaration_of(model, attribute, kind)) is not None
    ]
