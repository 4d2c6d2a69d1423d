"""Errors as ``application/problem+json`` (RFC 9457).

Every refusal of the API is a :class:`Problem`: a status, a title saying
what went wrong, a detail saying what to change, and for invalid input an
``errors`` list naming each field (``{"field": "body.at", "message": ...}``)
or each batch row (``{"index": 3, "field": "value", "message": ...}``).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from ninja import Schema

CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Content too large",
    422: "Invalid input",
    429: "Too many requests",
}


class FieldError(Schema):
    field: str
    message: str
    index: int | None = None


class ProblemOut(Schema):
    """The body of every error answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class Problem(Exception):  # noqa: N818 -- it is the answer, named as RFC 9457 names it
    """An error answer; raised anywhere in a request, rendered by the API's handler."""

    def __init__(
        self, status: int, detail: str, *, errors: list[dict[str, Any]] | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers or {}

    def response(self) -> HttpResponse:
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": TITLES[self.status],
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        response = HttpResponse(json.dumps(body), status=self.status, content_type=CONTENT_TYPE)
        for name, value in self.headers.items():
            response[name] = value
        return response


# Documented on every operation: the answers any request may get.
COMMON_ERRORS = {400: ProblemOut, 401: ProblemOut, 404: ProblemOut, 413: ProblemOut, 422: ProblemOut, 429: ProblemOut}
WRITE_ERRORS = {**COMMON_ERRORS, 403: ProblemOut, 409: ProblemOut}
