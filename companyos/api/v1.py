"""Version 1 of the HTTP API: ``/api/v1/``, its OpenAPI 3.1 schema and docs page (docs/api.md).

Built on django-ninja; docs/api.md says why (measured against Django REST
framework with drf-spectacular on the same list).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from companyos.api import resources, writes
from companyos.api.auth import ApiAuth
from companyos.api.problems import CONTENT_TYPE, Problem
from companyos.foundation.jsonbounds import JSONRefused, load_bounded_json


class BoundedJSONParser(Parser):
    """Request bodies are parsed with the project's JSON bounds (size, depth, storable strings)."""

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            return load_bounded_json(request.body or b"null", max_bytes=settings.API_MAX_BODY_BYTES)
        except JSONRefused as exc:
            raise Problem(400, str(exc)) from None
        except UnicodeDecodeError:
            raise Problem(400, "The body is not UTF-8.") from None


class CompanyOSApi(NinjaAPI):
    def get_openapi_schema(self, **kwargs: Any) -> dict[str, Any]:
        """ninja documents every answer as application/json; the errors are problem documents."""
        schema = super().get_openapi_schema(**kwargs)
        for operations in schema["paths"].values():
            for operation in operations.values():
                for status, response in operation["responses"].items():
                    if int(status) >= 400 and "application/json" in response.get("content", {}):
                        response["content"] = {CONTENT_TYPE: response["content"]["application/json"]}
        return schema


api = CompanyOSApi(
    title="CompanyOS API",
    version="1",
    description=(
        "The state behind the websocket's events. Authenticate with an API token "
        "(`Authorization: Bearer cos_...`) or the admin session. Lists are pages "
        "(`next_cursor`); each object carries `last_event_id`, and each page the "
        "organization's `event_position`: subscribe on `/ws/events/` with `since` "
        "set to it to follow every change after the page. Errors are "
        "`application/problem+json` (RFC 9457)."
    ),
    urls_namespace="api-v1",
    openapi_url="/schema/",
    docs_url="/docs/",
    auth=ApiAuth(),
    parser=BoundedJSONParser(),
)

router = writes.router
resources.register_organizations(router)
resources.register_series(router)
resources.register_reads(router)
api.add_router("", router)


@api.exception_handler(Problem)
def problem(request: HttpRequest, exc: Problem):
    return exc.response()


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, exc: ValidationError):
    errors = [{"field": _field(error["loc"]), "message": error["msg"]} for error in exc.errors]
    return Problem(422, "The request does not match the schema; see errors.", errors=errors).response()


def _field(location: tuple) -> str:
    """Where an input error is, as the client wrote it: ``body.at``, ``query.limit``, ``path.post_id``.

    Each operation takes its JSON body as one parameter named ``body``; ninja puts that
    name between the source and the body's own fields, where the client sent none.
    """
    if location[:2] == ("body", "body"):
        location = ("body", *location[2:])
    return ".".join(str(part) for part in location)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError):
    return Problem(exc.status_code, str(exc)).response()


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError):
    return Problem(401, "Send an API token as 'Authorization: Bearer <token>'.").response()


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404):
    return Problem(404, "Not found.").response()


@api.exception_handler(PermissionDenied)
def forbidden(request: HttpRequest, exc: PermissionDenied):
    return Problem(403, "Forbidden.").response()


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, exc: RequestDataTooBig):
    return Problem(413, f"Request bodies are limited to {settings.API_MAX_BODY_BYTES} bytes.").response()
