"""The service proxy: ``/api/v1/namespaces/{ns}/services/{[scheme:]name[:port]}/proxy/{path}``.

What kube-apiserver 1.32 does for this subresource (``pkg/registry/core/service/storage``
``ResourceLocation``, apimachinery's ``UpgradeAwareHandler`` and proxy ``Transport``), for the
verbs it proxies (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS), after the same authentication as
every other call:

- the id is ``name``, ``name:port`` or ``scheme:name:port`` (scheme ``http`` or ``https``), else
  400 ``invalid service request "id"``;
- a port *number* is looked up among the Service's ports (Service missing: 404 ``services "name"
  not found``; no such port: 503 ``no service port N found for service "name"``) and stands for
  that port's name; a port name (or none: the unnamed port) is taken as given;
- then the Service's endpoints: none at all (a Service that does not exist: 404 ``endpoints "name"
  not found``, as the Endpoints object is what is read), no address of any pod: 503 ``no endpoints
  available for service "name"``; no *ready* address on a port of that name (pods not ready, or a
  port name the Service does not have): 503 ``no endpoints available for service "id"``;
- one ready address at random gets the request: method, path, query, body (streamed) and
  headers, without hop-by-hop headers and without ``Authorization`` (the API server's
  authentication consumed it); ``X-Forwarded-For`` and ``X-Forwarded-Uri`` (the path as the
  client sent it) are added, ``Host`` stays the API server's;
- the answer comes back as the pod gave it (status, headers, body streamed), without hop-by-hop
  and CORS headers; a ``Location`` on this pod is rewritten to go through the proxy again; a pod
  that cannot be reached is 503 ``error trying to reach service: …``;
- ``GET``/``HEAD`` of ``…/proxy`` with no path is 301 to ``…/proxy/``.

Not emulated: the rewriting of links inside ``text/html`` answers, protocol upgrades (WebSocket),
and the bandwidth limit per connection. Endpoints come from an :class:`EndpointSource` (the local
controller: the ready model-server processes of a Service's Deployment); the upstream call is
httpx's, with TLS not verified for ``https:`` as kube-apiserver's proxy transport does not.
"""

from __future__ import annotations

import json
import posixpath
import random
import re
import ssl
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from aiohttp import web

from kserve_nb.local.apiserver.failures import ApiError, bad_request, method_not_allowed, not_found, path_not_found
from kserve_nb.local.store import SERVICES, Store

#: The verbs kube-apiserver routes to a proxy subresource.
PROXY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: What kube-apiserver's proxy transport allows for connecting to a pod; the answer itself is not
#: bounded (proxy requests are long-running requests: no request timeout applies).
CONNECT_TIMEOUT_SECONDS = 30.0

# Go's httputil.ReverseProxy drops these both ways (and whatever Connection names); Expect is
# answered by this server already, Authorization by its authentication.
_HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authenticate",
                         "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
_REQUEST_DROPPED = _HOP_BY_HOP | {"authorization", "expect", "content-length"}
# apimachinery's corsRemovingTransport: the pod's CORS answers are not the API server's.
_RESPONSE_DROPPED = _HOP_BY_HOP | {"content-length", "access-control-allow-credentials",
                                   "access-control-allow-headers", "access-control-allow-methods",
                                   "access-control-allow-origin"}
_PORT_NUMBER = re.compile(r"^[+-]?\d+$")  # what Go's strconv.ParseInt(s, 10, 64) accepts
_PROXY_PATH = re.compile(r"^(/api/v1/namespaces/[^/]+/services/[^/]+/proxy)(/.*)?$")


class EndpointSource(Protocol):
    """Who knows which pods stand behind a Service (on a cluster, its Endpoints object)."""

    def service_endpoints(self, namespace: str, service: str) -> tuple[Sequence[tuple[str, int]], int]:
        """``(host, port)`` of each ready pod of Service ``namespace/service``, and how many of its
        pods are not ready."""
        ...


def split_scheme_name_port(service_id: str) -> tuple[str, str, str] | None:
    """``[scheme:]name[:port]`` → ``(scheme, name, port)`` as Go's ``net.SplitSchemeNamePort``;
    None when invalid (too many parts, no name, a scheme other than http or https)."""
    parts = service_id.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in ("", "http", "https"):
        return None
    return scheme, name, port


def is_proxy_path(segments: list[str]) -> bool:
    """Whether decoded path ``segments`` name a Service's proxy subresource."""
    return (len(segments) >= 7 and segments[:3] == ["api", "v1", "namespaces"] and segments[4] == "services"
            and segments[6] == "proxy")


def _quote(text: str) -> str:
    """A string as Go's ``%q`` prints it (close enough: JSON's quoting)."""
    return json.dumps(text, ensure_ascii=False)


def service_unavailable(message: str) -> ApiError:
    """503 ServiceUnavailable (``errors.NewServiceUnavailable``)."""
    return ApiError(503, "ServiceUnavailable", message)


class ServiceProxy:
    """Serves the proxy subresource of Services in ``store``, to the pods ``endpoints`` names.

    ``endpoints`` None: no Service has any pod (an API server without a controller).
    """

    def __init__(self, store: Store, endpoints: EndpointSource | None) -> None:
        self.store = store
        self.endpoints = endpoints
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        """Close the upstream connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # verify=False: kube-apiserver's proxy transport does not check pods' certificates.
            # trust_env=False: an HTTP proxy from the daemon's environment must not see pod traffic.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS), verify=False,  # noqa: S501
                trust_env=False, follow_redirects=False,
            )
        return self._client

    def resolve(self, namespace: str, service_id: str) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of one ready pod of ``service_id``; the Status errors above."""
        parsed = split_scheme_name_port(service_id)
        if parsed is None:
            raise bad_request(f"invalid service request {_quote(service_id)}")
        scheme, name, port = parsed
        service = self.store.get(SERVICES, namespace, name)
        ports = [p for p in ((service or {}).get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
        port_name = port
        if _PORT_NUMBER.match(port):
            if service is None:
                raise not_found(SERVICES, name)
            match = next((p for p in ports if str(p.get("port")) == str(int(port))), None)
            if match is None:
                raise service_unavailable(f"no service port {int(port)} found for service {_quote(name)}")
            port_name = str(match.get("name") or "")
        if service is None:  # an existing Service always has its Endpoints object
            raise ApiError(404, "NotFound", f"endpoints {_quote(name)} not found", {"name": name, "kind": "endpoints"})
        ready, not_ready = self.endpoints.service_endpoints(namespace, name) if self.endpoints else ((), 0)
        if not ready and not not_ready:
            raise service_unavailable(f"no endpoints available for service {_quote(name)}")
        # Every port of the Service is a port of each of its endpoints; a pod serves one here.
        if not ready or port_name not in {str(p.get("name") or "") for p in ports}:
            raise service_unavailable(f"no endpoints available for service {_quote(service_id)}")
        host, pod_port = random.choice(list(ready))  # noqa: S311 - load spreading, as kube-apiserver's
        return scheme or "http", host, int(pod_port)

    async def serve(self, request: web.Request, segments: list[str]) -> web.StreamResponse:
        """Proxy one request; ``segments`` are its decoded path segments (see :func:`is_proxy_path`)."""
        if request.method not in PROXY_METHODS:
            raise method_not_allowed()
        raw = _PROXY_PATH.match(request.rel_url.raw_path)
        if raw is None:  # empty or encoded-slash segments: no route of kube-apiserver's either
            raise path_not_found()
        prefix, path = raw.group(1), raw.group(2) or ""
        scheme, host, port = self.resolve(segments[3], segments[5])
        query = request.rel_url.raw_query_string
        if not path and request.method in ("GET", "HEAD"):
            # kube-apiserver redirects an empty path to the proxy root (kubernetes#4958).
            location = request.rel_url.raw_path + "/" + (f"?{query}" if query else "")
            return web.Response(status=301, headers={"Location": location})
        path = _clean(path)
        upstream = f"{scheme}://{host}:{port}{path}" + (f"?{query}" if query else "")
        headers = _forwarded_headers(request, prefix + path)
        body: Any = request.content.iter_any() if request.body_exists else None
        client = self._http()
        try:
            answer = await client.send(client.build_request(request.method, upstream, headers=headers, content=body),
                                       stream=True)
        except httpx.HTTPError as exc:
            raise service_unavailable(f"error trying to reach service: {_reach_error(exc, host, port)}") from None
        try:
            response = web.StreamResponse(status=answer.status_code, reason=answer.reason_phrase or None)
            dropped = _RESPONSE_DROPPED | _connection_tokens(answer.headers.get_list("connection"))
            for name, value in answer.headers.multi_items():
                if name.lower() in dropped:
                    continue
                if name.lower() == "location":
                    value = _rewrite_location(value, prefix, f"{host}:{port}", request.host)
                response.headers.add(name, value)
            length = answer.headers.get("content-length")
            if length is not None and length.isdigit() and "chunked" not in answer.headers.get("transfer-encoding", ""):
                response.content_length = int(length)
            await response.prepare(request)
            async for chunk in answer.aiter_raw():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            await answer.aclose()


def _clean(path: str) -> str:
    """The pod's path as kube-apiserver joins it (``path.Join``: dot segments and double slashes
    go), keeping a trailing slash."""
    cleaned = posixpath.normpath(path)
    cleaned = "/" + cleaned.lstrip("/") if cleaned != "." else "/"
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def _connection_tokens(values: Sequence[str]) -> frozenset[str]:
    """Header names a ``Connection`` header lists (hop-by-hop for this exchange only)."""
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def _forwarded_headers(request: web.Request, forwarded_uri: str) -> list[tuple[str, str]]:
    """The client's headers as the pod gets them (see the module docstring)."""
    dropped = _REQUEST_DROPPED | _connection_tokens(request.headers.getall("Connection", []))
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in dropped]
    length = request.headers.get("Content-Length")
    if length is not None and request.body_exists:
        headers.append(("Content-Length", length))  # streamed with its length, not re-chunked
    peer = request.remote or ""
    previous = ", ".join(request.headers.getall("X-Forwarded-For", []))
    headers = [(k, v) for k, v in headers if k.lower() not in ("x-forwarded-for", "x-forwarded-uri")]
    if peer:
        headers.append(("X-Forwarded-For", f"{previous}, {peer}" if previous else peer))
    headers.append(("X-Forwarded-Uri", forwarded_uri))
    return headers


def _rewrite_location(location: str, prefix: str, pod: str, api_host: str) -> str:
    """A redirect to a path on the pod (or on this API server) points back through the proxy
    (apimachinery's ``Transport.rewriteURL`` with no scheme and host of its own)."""
    url = urlsplit(location)
    if (url.netloc and url.netloc not in (pod, api_host)) or not url.path.startswith("/"):
        return location
    keep_origin = url.netloc == api_host
    scheme, netloc = (url.scheme, url.netloc) if keep_origin else ("", "")
    if url.path.startswith(prefix):
        return urlunsplit((scheme, netloc, url.path, url.query, url.fragment))
    joined = posixpath.normpath(prefix + url.path) + ("/" if url.path.endswith("/") else "")
    return urlunsplit((scheme, netloc, joined, url.query, url.fragment))


def _reach_error(exc: httpx.HTTPError, host: str, port: int) -> str:
    """Why the pod could not be reached, in the words of Go's dialer where it is a dial error."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        if isinstance(cause, ConnectionRefusedError):
            return f"dial tcp {host}:{port}: connect: connection refused"
        if isinstance(cause, ssl.SSLError):
            return f"tls: {cause.reason or cause}"
        return f"dial tcp {host}:{port}: {exc or type(exc).__name__}"
    if isinstance(exc, httpx.TimeoutException):
        return f"dial tcp {host}:{port}: i/o timeout"
    return str(exc) or type(exc).__name__
