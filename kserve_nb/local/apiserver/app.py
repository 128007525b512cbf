"""The aiohttp application: default namespaces, auth and error middlewares, routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kserve_nb.local.apiserver.codec import status_response
from kserve_nb.local.apiserver.failures import UNAUTHORIZED, ApiError
from kserve_nb.local.apiserver.proxy import EndpointSource
from kserve_nb.local.apiserver.server import (
    MAX_BODY_BYTES,
    NAMESPACE_NAME_LABEL,
    PROTECTED_NAMESPACES,
    ApiServer,
)
from kserve_nb.local.store import NAMESPACES, Store

log = logging.getLogger(__name__)


def _namespace_manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {NAMESPACE_NAME_LABEL: name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def ensure_default_namespaces(store: Store) -> None:
    """Create ``default``, ``kube-system`` and ``kube-public`` when missing."""
    for name in PROTECTED_NAMESPACES:
        if store.get(NAMESPACES, None, name) is None:
            store.create(NAMESPACES, _namespace_manifest(name))


AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]  # aiohttp's request handler type
SERVER_KEY = web.AppKey("kserve_nb_apiserver", ApiServer)


@web.middleware
async def _errors_middleware(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return status_response(exc)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. a body over the size limit) become Status objects too.
        return status_response(ApiError(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason))
    except Exception:  # never leak a traceback for bad input
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return status_response(ApiError(500, "InternalError",
                                        "Internal error occurred: unexpected server error",
                                        {"causes": [{"message": "unexpected server error"}]}))


@web.middleware
async def _auth_middleware(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    server = request.app[SERVER_KEY]
    if not server.authorized(request):
        return status_response(UNAUTHORIZED)
    return await handler(request)

def create_app(store: Store, token: str, endpoints: EndpointSource | None = None) -> web.Application:
    """The local Kubernetes API server as an aiohttp application.

    Parameters
    ----------
    store:
        The object store (its methods are called on the application's event loop).
    token:
        The bearer token every request must carry. It is never logged.
    endpoints:
        The pods behind each Service, for the service proxy (the controller: the ready
        model-server processes of a Service's Deployment). None: no Service has any pod.
    """
    ensure_default_namespaces(store)
    server = ApiServer(store, token, endpoints)
    app = web.Application(middlewares=[_errors_middleware, _auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[SERVER_KEY] = server
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    app.on_shutdown.append(server.on_shutdown)
    return app
