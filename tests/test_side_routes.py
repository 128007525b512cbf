"""Reaching one Standard-mode side through an HTTPRoute of the user's own (``docs/standard-mode-canary.md`` §9).

- The rule (:func:`kserve_nb.standard.side_route`) on HTTPRoutes shaped as Gateway API v1 serves them.
- A :class:`~kserve_nb.predict.Target`'s extra headers on the wire, through both transports of
  ``send``, ``predict`` and the paced requester, received by a real HTTP server on 127.0.0.1
  standing in for a real cluster's Gateway (a third-party component there).
- ``Service.target`` on a Session without the local half (as on a real cluster), against the local
  API server holding the isvc, KServe's own routes and the user's route, with the ingress pointed at
  that recording Gateway.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from kserve_nb import semantics_standard as ss
from kserve_nb.errors import ValidationError
from kserve_nb.predict import PredictionClient, Target
from kserve_nb.predict.bulk import Job
from kserve_nb.standard import SideRoute, side_route

try:  # the helpers sit under tests/local; import them whether or not tests/ is a package
    from tests.local.conftest_api import CONTEXT, LocalApi
    from tests.local.test_standard_api import NAME, NOW, NS, isvc_manifest, settled_state, upsert
except ImportError:  # pragma: no cover - depends on how pytest put the directories on sys.path
    from local.conftest_api import CONTEXT, LocalApi  # type: ignore[no-redef]
    from local.test_standard_api import NAME, NOW, NS, isvc_manifest, settled_state, upsert  # type: ignore[no-redef]

SIDE = "my-model-v2-predictor"
PATHS = ["/v1/models/my-model:predict", "/v2/models/my-model/infer"]
ISVC_HOST = "my-model-kserve-std.example.com"
SIDE_HOSTS = ["my-model-v2-predictor-kserve-std.example.com", f"{SIDE}.{NS}.svc.cluster.local"]
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]


def backend(name: str = SIDE, **kw: Any) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 80, "weight": 1, **kw}


def route(name: str = "sides", *, hostnames: list[str] | None = None, rules: list[dict[str, Any]] | None = None,
          **meta: Any) -> dict[str, Any]:
    """An HTTPRoute as the API serves it (CRD defaults filled in)."""
    spec: dict[str, Any] = {
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "kserve-ingress-gateway",
                        "namespace": "kserve"}],
        "rules": rules if rules is not None else [{"backendRefs": [backend()]}],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": NS, **meta}, "spec": spec}


def header_rule(value: str = "v2", service: str = SIDE, **match: Any) -> dict[str, Any]:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                     "headers": [{"type": "Exact", "name": "x-kserve-side", "value": value}], **match}],
        "backendRefs": [backend(service)],
    }


def pick(*routes: dict[str, Any], service: str = SIDE) -> SideRoute | None:
    return side_route(routes, service, NS, paths=PATHS, hosts=SIDE_HOSTS)


def kserve_route() -> dict[str, Any]:
    """KServe's top-level route (its rule as KServe writes it: ``^/.*$``, split by weight)."""
    rule = {"matches": [{"path": {"type": "RegularExpression", "value": "^/.*$"}}],
            "backendRefs": [backend("my-model-predictor", weight=80), backend(weight=20)]}
    return route(NAME, hostnames=[ISVC_HOST], rules=[rule], ownerReferences=[
        {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "name": NAME, "uid": "u"}])


# ================================================================================ the rule


def test_a_header_match_to_the_side_alone_gives_its_host_and_header() -> None:
    found = pick(route(hostnames=[ISVC_HOST], rules=[header_rule()]))
    assert found == SideRoute(ISVC_HOST, (("x-kserve-side", "v2"),), "sides", 0)


def test_a_route_without_hostnames_is_called_on_the_first_host_no_kserve_route_lists() -> None:
    found = pick(route(rules=[header_rule()]))
    assert found is not None and (found.host, found.headers) == (SIDE_HOSTS[0], (("x-kserve-side", "v2"),))
    assert side_route([route(rules=[header_rule()])], SIDE, NS, paths=PATHS, hosts=[]) is None
    # a host a KServe route lists is never sent to a route that does not list it: the more
    # specific hostname of KServe's route would take the request
    found = side_route([kserve_route(), route()], SIDE, NS, paths=PATHS, hosts=[ISVC_HOST, SIDE_HOSTS[1]])
    assert found is not None and found.host == SIDE_HOSTS[1]


def test_on_a_kserve_host_only_a_catch_all_regex_path_beats_kserves_own_rule() -> None:
    # Envoy Gateway and the like rank KServe's ^/.*$ above any PathPrefix on the same host
    prefix = route("a-prefix", hostnames=[ISVC_HOST], rules=[header_rule()])
    assert pick(kserve_route(), prefix) is None
    assert pick(prefix) is not None  # with no KServe route on that host it is fine
    regex = header_rule()
    regex["matches"][0]["path"] = {"type": "RegularExpression", "value": "^/.*$"}
    found = pick(kserve_route(), prefix, route("b-regex", hostnames=[ISVC_HOST], rules=[regex]))
    assert found == SideRoute(ISVC_HOST, (("x-kserve-side", "v2"),), "b-regex", 0)
    # a route listing KServe's host and one of its own is called on its own
    both = route("c-both", hostnames=[ISVC_HOST, "v2.models.example.com"], rules=[header_rule()])
    assert pick(kserve_route(), both) == SideRoute("v2.models.example.com", (("x-kserve-side", "v2"),), "c-both", 0)


def test_a_host_only_route_is_the_special_case_and_wins_over_a_header_rule() -> None:
    host_only = route("b-host", hostnames=["v2.models.example.com"])
    headers = route("a-header", hostnames=[ISVC_HOST], rules=[header_rule()])
    assert pick(headers, host_only) == SideRoute("v2.models.example.com", (), "b-host", 0)
    # the rule of the host-only route decides, wherever it sits in the route
    mixed = route(hostnames=["m.example.com"], rules=[header_rule(), {"backendRefs": [backend()]}])
    assert pick(mixed) == SideRoute("m.example.com", (), "sides", 1)


def test_the_choice_is_deterministic_fewer_headers_then_route_name() -> None:
    two = header_rule()
    two["matches"][0]["headers"].append({"type": "Exact", "name": "x-team", "value": "ml"})
    a, b, c = route("c", rules=[two]), route("b", rules=[header_rule("x")]), route("a", rules=[header_rule("y")])
    assert pick(a, b, c) == pick(c, b, a) == SideRoute(SIDE_HOSTS[0], (("x-kserve-side", "y"),), "a", 0)


def test_header_type_defaults_to_exact_and_a_regular_expression_is_skipped() -> None:
    rule = header_rule()
    del rule["matches"][0]["headers"][0]["type"]
    assert pick(route(rules=[rule])) is not None
    rule["matches"][0]["headers"][0]["type"] = "RegularExpression"
    assert pick(route(rules=[rule])) is None
    # another match of the same rule that is satisfiable is used
    rule["matches"].append({"headers": [{"name": "x-side", "value": "two"}]})
    assert pick(route(rules=[rule])) == SideRoute(SIDE_HOSTS[0], (("x-side", "two"),), "sides", 0)


@pytest.mark.parametrize(("path", "admits"), [
    (None, True),
    ({"type": "PathPrefix", "value": "/"}, True),
    ({"value": "/"}, True),  # PathPrefix is the default type
    ({"type": "PathPrefix", "value": "/v1"}, False),  # V2 paths would miss it
    ({"type": "PathPrefix", "value": "/v"}, False),  # element by element: "/v" is no prefix of "/v1/..."
    ({"type": "Exact", "value": "/v1/models/my-model:predict"}, False),
    ({"type": "RegularExpression", "value": "^/.*$"}, True),  # a catch-all, as KServe's own rules use
    ({"type": "RegularExpression", "value": "^/v[12]/.*$"}, False),  # implementation-specific: not trusted
])
def test_the_path_match_must_admit_the_v1_and_v2_inference_paths(path: dict[str, str] | None, admits: bool) -> None:
    match: dict[str, Any] = {"headers": [{"type": "Exact", "name": "x-kserve-side", "value": "v2"}]}
    if path is not None:
        match["path"] = path
    found = pick(route(rules=[{"matches": [match], "backendRefs": [backend()]}]))
    assert (found is not None) is admits
    if path is not None and path.get("value") == "/v1":  # but it does admit the V1 path alone
        assert side_route([route(rules=[{"matches": [match], "backendRefs": [backend()]}])], SIDE, NS,
                          paths=PATHS[:1], hosts=SIDE_HOSTS) is not None


@pytest.mark.parametrize("refs", [
    [backend(), backend("my-model-predictor")],  # split between the sides
    [backend(weight=80), backend("my-model-predictor", weight=20)],
    [backend(namespace="other")],  # a Service of that name in another namespace
    [backend(port=8080)],  # not the Service's port
    [{k: v for k, v in backend().items() if k != "port"}],  # a Service backend needs its port
    [backend(kind="ServiceImport", group="multicluster.x-k8s.io")],
    [backend(weight=0)],  # no backend takes traffic: the Gateway answers 500
    [],
    [backend("my-model-predictor")],  # the other side
])
def test_a_rule_that_does_not_send_everything_to_the_side_is_skipped(refs: list[dict[str, Any]]) -> None:
    assert pick(route(rules=[{"backendRefs": refs}])) is None


def test_backends_default_to_weight_one_and_a_zero_weight_one_takes_nothing() -> None:
    bare = {k: v for k, v in backend().items() if k not in ("weight", "group", "kind")}
    assert pick(route(rules=[{"backendRefs": [bare]}])) is not None
    assert pick(route(rules=[{"backendRefs": [backend(), backend("my-model-predictor", weight=0)]}])) is not None
    assert pick(route(rules=[{"backendRefs": [backend(namespace=NS)]}])) is not None


def test_kserves_own_unaccepted_and_unsatisfiable_routes_are_skipped() -> None:
    owned = route(ownerReferences=[{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                    "name": NAME, "uid": "u"}])
    assert pick(owned) is None
    rejected = route()
    rejected["status"] = {"parents": [{"conditions": [{"type": "Accepted", "status": "False"}]}]}
    assert pick(rejected) is None
    rejected["status"]["parents"].append({"conditions": [{"type": "Accepted", "status": "True"}]})
    assert pick(rejected) is not None  # accepted by one of its Gateways
    assert pick(route(rules=[header_rule(queryParams=[{"name": "side", "value": "v2"}])])) is None
    assert pick(route(rules=[header_rule(method="GET")])) is None
    assert pick(route(rules=[header_rule(method="POST")])) is not None


def test_filters_that_redirect_or_rewrite_the_path_are_skipped() -> None:
    def with_filter(f: dict[str, Any]) -> dict[str, Any]:
        return route(rules=[{"backendRefs": [backend()], "filters": [f]}])

    assert pick(with_filter({"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}})) is None
    rewrite = {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    assert pick(with_filter(rewrite)) is None
    assert pick(with_filter({"type": "URLRewrite", "urlRewrite": {"hostname": "x"}})) is not None
    headers = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}
    assert pick(with_filter(headers)) is not None


def test_hostnames_first_literal_then_the_first_host_a_wildcard_admits() -> None:
    def host(*hostnames: str) -> str | None:
        found = pick(route(hostnames=list(hostnames)))
        return found.host if found else None

    assert host("*.example.com", "a.example.com", "b.example.com") == "a.example.com"
    assert host("*.example.com") == SIDE_HOSTS[0]
    assert host("*.cluster.local") == SIDE_HOSTS[1]
    assert host("*.other.org") is None


# ================================================================================ the Target


def test_target_headers_are_read_only_checked_and_shown_except_credentials() -> None:
    t = Target("v2", "h.example.com", "my-model-v2-predictor", headers={"x-kserve-side": "v2", "Cookie": "s=1"})
    assert repr(t) == ("Target(name='v2', host='h.example.com', revision='my-model-v2-predictor', "
                       "headers={'x-kserve-side': 'v2', 'Cookie': '***'})")
    assert repr(Target("a", "h")) == "Target(name='a', host='h', revision=None)"
    auth = Target("a", "h", headers={"Authorization": "Bearer secret"})
    assert "secret" not in repr(auth) and "Authorization" in repr(auth)
    with pytest.raises(TypeError):
        t.headers["x"] = "y"  # type: ignore[index]
    assert hash(t) == hash(Target("v2", "h.example.com", "my-model-v2-predictor"))
    assert t == Target("v2", "h.example.com", "my-model-v2-predictor", headers={"x-kserve-side": "v2", "Cookie": "s=1"})
    with pytest.raises(ValidationError, match="line breaks"):
        Target("a", "h", headers={"x-a": "1\r\nx-b: 2"})
    with pytest.raises(ValidationError, match="cannot set 'Host'"):
        Target("a", "h", headers={"Host": "other"})


# ================================================================================ on the wire


class Gateway:
    """A real HTTP/1.1 server on 127.0.0.1 that records ``(path, headers)`` of every request and
    answers one V1/V2 prediction (class 1), as a model behind a Gateway would."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = json.dumps({"predictions": [1], "model_name": NAME, "outputs": [
                    {"name": "output-0", "shape": [1], "datatype": "INT64", "data": [1]}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture()
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    try:
        yield gw
    finally:
        gw.close()


@pytest.mark.parametrize("via", ["http1", "httpx"])
def test_every_request_to_a_side_carries_its_host_and_headers(gateway: Gateway, via: str) -> None:
    options: dict[str, Any] = {"transport": httpx.HTTPTransport()} if via == "httpx" else {}
    side = Target("v2", ISVC_HOST, SIDE, headers={"x-kserve-side": "v2", "X-Team": "ml"})
    plain = Target("default", ISVC_HOST)
    with PredictionClient(gateway.url, model=NAME, headers={"x-team": "ops"}, **options) as client:
        assert client.predict(side, ROWS[:1]).predictions == [1]
        client.predict(side, ROWS[:1], protocol="v2")
        rows = client.send([side, plain], ROWS, warmup=1)
        send = client.requester([side])
        outcome = client.submit(lambda: send(Job(0, 0, 0, b'{"instances": [[1.0]]}', True))).result(10)
    assert rows["error"].isna().all() and outcome.error is None
    assert set(rows[rows["target"] == "v2"]["revision"]) == {SIDE}
    to_side = [h for _, h in gateway.requests if h.get("x-kserve-side")]
    to_default = [h for _, h in gateway.requests if not h.get("x-kserve-side")]
    assert len(to_side) == 2 + 1 + len(ROWS) + 1 and len(to_default) == 1 + len(ROWS)
    assert all(h["host"] == ISVC_HOST and h["x-kserve-side"] == "v2" for h in to_side)
    # the target's header replaces the client's of the same name, whatever its case
    assert {h["x-team"] for h in to_side} == {"ml"} and {h["x-team"] for h in to_default} == {"ops"}
    assert {p for p, _ in gateway.requests} == {f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"}


# ================================================================================ Service.target


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[LocalApi]:
    server = LocalApi(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def far(api: LocalApi, gateway: Gateway) -> Iterator[Any]:
    """The e2e isvc (stable and canary v2 at 20 %) with KServe's objects and status on the local API
    server, and a Session on it without the local half whose ingress is the recording Gateway."""
    from kserve_nb.cluster import Cluster
    from kserve_nb.local import standard_objects
    from kserve_nb.local.store import INFERENCESERVICES, NAMESPACES
    from kserve_nb.session import Session

    api.call(api.store.create, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS},
                                            "status": {"phase": "Active"}})
    isvc = api.call(api.store.create, INFERENCESERVICES, isvc_manifest())
    state = settled_state(isvc)
    for rt, obj in standard_objects.standard_objects(isvc, state):
        upsert(api, rt, obj)
    api.write_status(NS, NAME, ss.reconcile(isvc, state, NOW).status)
    session = Session(Cluster.from_kubeconfig(api.kubeconfig, context=CONTEXT), ingress=gateway.url)
    try:
        yield session.service(NAME, NS)
    finally:
        session.close()


def test_a_users_routes_reach_each_side_through_the_gateway(api: LocalApi, far: Any, gateway: Gateway) -> None:
    from kserve_nb.local.store import HTTPROUTES

    # KServe's own routes split between the sides: they reach neither alone, so the proxy is the way.
    assert far.target("v2").host == f"{SIDE}.{NS}.svc.cluster.local" and far.target("v2").headers == {}
    stable_host = f"my-model-predictor.{NS}.svc.cluster.local"
    assert far.target("stable").host == stable_host and stable_host in far._proxied
    # The user's routes (the API serves HTTPRoutes read-only to users: inserted as a user's kubectl
    # apply would have stored them). For v2, header matches on KServe's own host: the PathPrefix one
    # would lose to KServe's ^/.*$ rule on Envoy Gateway, the catch-all one wins by its header.
    regex = header_rule()
    regex["matches"][0]["path"] = {"type": "RegularExpression", "value": "^/.*$"}
    api.call(api.store.create, HTTPROUTES, route("a-prefix", hostnames=[ISVC_HOST], rules=[header_rule()]))
    api.call(api.store.create, HTTPROUTES, route("b-sides", hostnames=[ISVC_HOST], rules=[regex]))
    # For the stable, a route with no hostname: called on a host no KServe route lists (an unnamed
    # stable's component host is the weighted predictor host, so its Service's in-cluster name).
    api.call(api.store.create, HTTPROUTES, route("stable", rules=[{"backendRefs": [backend("my-model-predictor")]}]))
    v2, stable = far.target("v2"), far.target("stable")
    assert (v2.host, dict(v2.headers), v2.revision) == (ISVC_HOST, {"x-kserve-side": "v2"}, SIDE)
    assert (stable.host, dict(stable.headers)) == (stable_host, {})
    assert far.target("latest") == v2.__class__("latest", v2.host, v2.revision, headers=v2.headers)
    assert not far._proxied & {v2.host, stable.host}  # both through the ingress, none through the proxy
    comparison = far.compare(ROWS, warmup=1)
    assert (comparison.baseline, comparison.candidate) == ("stable", "v2")
    seen = {(h["host"], h.get("x-kserve-side")) for _, h in gateway.requests}
    assert seen == {(ISVC_HOST, "v2"), (stable_host, None)}
    gateway.requests.clear()
    results = far.send(ROWS, to=("v2", "default"), warmup=0)
    assert results["error"].isna().all()
    sent = [(h["host"], h.get("x-kserve-side")) for _, h in gateway.requests]
    assert sent.count((ISVC_HOST, "v2")) == sent.count((ISVC_HOST, None)) == len(ROWS)
    assert set(results[results["target"] == "v2"]["revision"]) == {SIDE}
