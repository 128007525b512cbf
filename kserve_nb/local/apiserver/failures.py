"""Kubernetes ``Status`` errors with the reasons and message texts of a real API server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kserve_nb.local.admission import FieldError
from kserve_nb.local.store import ResourceType, StoreAlreadyExists, StoreConflict, StoreNotFound


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details else None

    def status(self) -> dict[str, Any]:
        """The ``Status`` body."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified_resource(rt: ResourceType) -> str:
    """``inferenceservices.serving.kserve.io`` / ``configmaps``: how errors name a resource."""
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def qualified_kind(rt: ResourceType) -> str:
    """``InferenceService.serving.kserve.io`` / ``ConfigMap``: how Invalid errors name a kind."""
    return f"{rt.kind}.{rt.group}" if rt.group else rt.kind


def status_details(rt: ResourceType, name: str, *, kind: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if rt.group:
        out["group"] = rt.group
    out["kind"] = kind or rt.plural
    return out


def not_found(rt: ResourceType, name: str) -> ApiError:
    """404 ``<resource> "<name>" not found``."""
    return ApiError(404, "NotFound", f'{qualified_resource(rt)} "{name}" not found', status_details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    """409 AlreadyExists."""
    return ApiError(409, "AlreadyExists", f'{qualified_resource(rt)} "{name}" already exists', status_details(rt, name))


def conflict(rt: ResourceType, name: str, detail: str | None = None) -> ApiError:
    """409 Conflict, with the optimistic-concurrency message of a real server."""
    detail = detail or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified_resource(rt)} "{name}": {detail}',
                    status_details(rt, name))


def invalid_error(rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid listing field errors like ``field.ErrorList``."""
    rendered = [e.render() for e in errors]
    text = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = status_details(rt, name, kind=rt.kind)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified_kind(rt)} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def too_large_resource_version(requested: int, current: int) -> ApiError:
    """What the API server answers a watch from a resourceVersion it has not reached (504 Timeout).

    The ``ResourceVersionTooLarge`` cause is what client-go's reflector looks for to re-list.
    """
    return ApiError(504, "Timeout", f"Too large resource version: {requested}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def method_not_allowed() -> ApiError:
    """405 MethodNotAllowed."""
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def path_not_found() -> ApiError:
    """404 for a path that names no resource."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def unsupported_media_type(accepted: list[str]) -> ApiError:
    """415 UnsupportedMediaType."""
    return ApiError(415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    + ", ".join(accepted))


def status_for(rt: ResourceType, name: str, exc: Exception) -> ApiError:
    if isinstance(exc, StoreNotFound):
        return not_found(rt, name)
    if isinstance(exc, StoreAlreadyExists):
        return already_exists(rt, name)
    if isinstance(exc, StoreConflict):
        return conflict(rt, name)
    raise exc


UNAUTHORIZED = ApiError(401, "Unauthorized", "Unauthorized")
