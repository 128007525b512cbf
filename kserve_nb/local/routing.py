"""The local ingress's route table and routing rule: one format, two data planes.

The controller pushes one table to the ingress (:meth:`Gateway.update <kserve_nb.local.gateway.Gateway.update>`,
:meth:`NginxIngress.update <kserve_nb.local.nginx.NginxIngress.update>`); nginx's Lua and the Python
gateway both route by it, with the rule below. ``tests/local/test_routing.py`` runs one set of
tests against both data planes.

The table
---------

``routes``: ``{host: [(namespace, target, weight), ...]}``

- ``host``: a DNS name, matched against the request's ``Host`` header without its port and
  ignoring case (``sklearn-iris.kserve-test.example.com``, ``latest-…``, ``prev-…``).
- ``target``: the name of one model server process: a Knative revision name in Serverless mode
  (``sklearn-iris-predictor-00002``), ``{deployment}-{hash}`` in Standard mode. It is what the
  ``x-kserve-revision`` response header and the ``revision_name`` metric label carry.
- ``weight``: a whole number ≥ 0 (the traffic percent); weights are relative, need not add up
  to 100, and a target of weight 0 is never picked.

``endpoints``: ``{(namespace, target): (host, port)}`` of the targets whose model server is
*ready*; a target without one gets no traffic.

nginx receives the same table as text (:func:`encode_table`, read back by :func:`decode_table`):
one line per host, ``host target port weight namespace [target port weight namespace …]``, holding
only ready targets of weight > 0 whose names are DNS-safe; a host left with none is not written, so
nginx hands it to the Python gateway, which answers it by the rule.

The rule
--------

1. ``/v2/repository…`` (KServe's model load/unload API) → 403.
2. A host not in the table → 404 ``{"error": "no route for host 'H': … (known hosts: …)"}``.
3. No target of weight > 0 with an endpoint → 503 ``{"error": "no ready revision for host 'H':
   T (P%) is not ready"}``, ``x-kserve-revision: T`` (the unready targets, comma-separated).
4. Otherwise one target, picked at random with probability ``weight / sum of the live weights``
   (the split renormalised over the ready targets, as Istio's weighted clusters do).
5. A request that certainly reached no model (connection refused: the target just died; or a
   pooled keep-alive connection found closed before any answer) is sent **once** more, to another
   live target picked the same way without the first. None left, or refused again → 503
   ``{"error": "no ready revision for host 'H': T the model server refused the connection (it is
   restarting) and no other target is ready"}``, ``x-kserve-revision: T``. A request that reached a
   model is never sent again.
6. Every answer from a target carries ``x-kserve-revision: T``; so do the 502 (the target stopped
   answering mid-request: ``{"error": "revision T failed to answer: …"}``) and the 504 (no
   answer within :data:`~kserve_nb.local.gateway.UPSTREAM_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kserve_nb.local.exporter import series_labels

log = logging.getLogger(__name__)

#: ``host → [(namespace, target, weight), …]`` (see the module docstring).
Routes = Mapping[str, Sequence[tuple[str, str, int]]]
#: The same table as the controller builds it (mutable), per InferenceService and merged.
RouteTable = dict[str, list[tuple[str, str, int]]]
#: ``(namespace, target) → (host, port)`` of each ready model server.
Endpoints = Mapping[tuple[str, str], tuple[str, int]]

REVISION_HEADER = b"x-kserve-revision"

# Names that may appear in nginx's table: DNS names and revision names (what admission allows anyway).
# Anything else is left to the Python gateway (and logged): the text format can't be broken.
_SAFE_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def host_key(host: str) -> str:
    """The table key of a host or ``Host`` header value: lower case, without the port."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


@dataclass(frozen=True)
class Upstream:
    """A live upstream of a :class:`Route`: one ready target, with what the data plane needs of it precomputed."""

    name: str
    revision_line: bytes  #: the whole ``x-kserve-revision`` header line
    endpoint: tuple[str, int]
    weight: int
    series: str  #: its metric labels (:func:`~kserve_nb.local.exporter.series_labels`)


@dataclass(frozen=True)
class Route:
    """One host's targets: the live ones (weight > 0, ready) and the unready ones with traffic."""

    host: str
    live: tuple[Upstream, ...]
    total: int  #: sum of the live weights: the split is renormalised over the ready targets
    unready: tuple[tuple[str, int], ...]  #: (target, weight) with traffic but no ready endpoint

    def pick(self, exclude: str | None = None) -> Upstream | None:
        """A live target at random by weight (rule 4), optionally without ``exclude`` (rule 5)."""
        live, total = self.live, self.total
        if exclude is not None:
            live = tuple(t for t in live if t.name != exclude)
            total = sum(t.weight for t in live)
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        x = random.random() * total  # noqa: S311 - a weighted traffic split, not security
        for upstream in live:
            x -= upstream.weight
            if x < 0:
                return upstream
        return live[-1]


def build(routes: Routes, endpoints: Endpoints) -> dict[str, Route]:
    """The table as the Python gateway holds it: :func:`host_key` → :class:`Route`."""
    table: dict[str, Route] = {}
    for host, targets in routes.items():
        live: list[Upstream] = []
        unready: list[tuple[str, int]] = []
        for namespace, name, weight in targets:
            if weight <= 0:
                continue
            endpoint = endpoints.get((namespace, name))
            if endpoint is None:
                unready.append((name, weight))
            else:
                live.append(Upstream(
                    name, revision_line(name), (endpoint[0], int(endpoint[1])), int(weight),
                    series_labels(namespace, name),
                ))
        key = host_key(host)
        table[key] = Route(key, tuple(live), sum(t.weight for t in live), tuple(unready))
    return table


def revision_line(name: str) -> bytes:
    """The ``x-kserve-revision`` header line naming ``name``."""
    return REVISION_HEADER + b": " + name.encode() + b"\r\n"


# --- the error answers (rules 2, 3, 5, 6) ---------------------------------------------------


def no_route_message(host: str, known: Sequence[str]) -> str:
    """Rule 2's text (404)."""
    known = sorted(known)
    hint = (", ".join(known[:8]) + (", …" if len(known) > 8 else "")) if known else "none yet"
    return (
        f"no route for host '{host}': no InferenceService answers to it. Send a Host header such as "
        f"'<isvc>.<namespace>.example.com' (known hosts: {hint})"
    )


def unready_message(route: Route) -> str:
    """Rule 3's text (503)."""
    if route.unready:
        listed = ", ".join(f"{name} ({weight}%)" for name, weight in route.unready)
        verb = "is" if len(route.unready) == 1 else "are"
        return f"no ready revision for host '{route.host}': {listed} {verb} not ready"
    return f"no ready revision for host '{route.host}': the route has no traffic targets"


def unreachable_message(host: str, target: str, reason: str) -> str:
    """Rule 5's text (503): ``target`` could not be reached and no other target is left."""
    return (
        f"no ready revision for host '{host}': {target} the model server {reason} (it is restarting) "
        "and no other target is ready"
    )


def failed_message(target: str, reason: str) -> str:
    """Rule 6's text (502): ``target`` took the request and then failed it."""
    return f"revision {target} failed to answer: {reason}"


def timeout_message(target: str, seconds: float) -> str:
    """Rule 6's text (504)."""
    return f"revision {target} did not answer within {seconds:g} s"


# --- nginx's text form of the table -----------------------------------------------------------


def encode_table(routes: Routes, endpoints: Endpoints) -> str:
    """The table as nginx's Lua reads it: ``host target port weight namespace [target …]`` lines.

    Only ready targets with traffic; a host with none is left out (the Python gateway answers it).
    """
    lines = []
    for host, targets in sorted(routes.items()):
        host = host_key(host)
        if not _SAFE_NAME.match(host):
            log.warning("nginx ingress: host %r left to the Python gateway (not a DNS name)", host)
            continue
        live = []
        for namespace, name, weight in targets:
            endpoint = endpoints.get((namespace, name))
            if weight > 0 and endpoint is not None and _SAFE_NAME.match(name) and _SAFE_NAME.match(namespace):
                live.append(f"{name} {int(endpoint[1])} {int(weight)} {namespace}")
        if live:
            lines.append(f"{host} {' '.join(live)}")
    return "\n".join(lines) + "\n"


def decode_table(table: str) -> tuple[dict[str, list[tuple[str, str, int]]], dict[tuple[str, str], tuple[str, int]]]:
    """The routes and endpoints an :func:`encode_table` text holds (what nginx serves)."""
    routes: dict[str, list[tuple[str, str, int]]] = {}
    endpoints: dict[tuple[str, str], tuple[str, int]] = {}
    for line in table.splitlines():
        if not line.strip():
            continue
        host, *fields = line.split()
        for i in range(0, len(fields) - 3, 4):
            name, port, weight, namespace = fields[i:i + 4]
            if port.isdigit() and weight.isdigit():
                routes.setdefault(host, []).append((namespace, name, int(weight)))
                endpoints[(namespace, name)] = ("127.0.0.1", int(port))
    return routes, endpoints
