"""Per-revision metrics from Prometheus, with PromQL that is shown with every number.

:class:`PrometheusSource` is the :class:`~kserve_nb.metrics.sample.MetricSource` of real clusters
and of the local one (whose ingress exports the same series, scraped by its own Prometheus):

- :meth:`PrometheusSource.snapshot` — cumulative per-revision counters (requests, errors = 5xx and
  connection failures, codes, a latency histogram), what release gates take differences of;
- :meth:`PrometheusSource.range_frame` — ``time, revision, rps, error_rate, p50_ms, p95_ms`` over
  a time range (``rate()`` based), what live charts draw;
- :meth:`PrometheusSource.explain` — every quantity with its resolved PromQL and raw value, so a
  gate that fails never fails with no visible value.

The PromQL is a :class:`PromQueries` of templates. :data:`KNATIVE` (the default) reads Knative's
queue-proxy metrics, which every KServe Serverless revision exports:
``revision_app_request_count`` and ``revision_app_request_latencies`` (ms), labelled
``namespace_name``, ``configuration_name`` (``{isvc}-predictor``), ``revision_name``,
``response_code``. :data:`KSERVE_MODEL_SERVER` reads the model server's own
``request_predict_seconds`` histogram instead (no status codes there, so no error counts).

Standard (RawDeployment) mode has no revisions and no queue-proxy: its unit is the *side* — the
stable predictor or one ``spec.canary[]`` entry, each its own Deployment. :meth:`PrometheusSource.for_sides`
gives a source that answers per side (``stable``, ``v2``…): its ``standard_queries`` aggregate by a
``deployment`` label, derived in PromQL from a pod-like name (``label_replace``), and the source
translates side names to Deployments and back. :data:`KSERVE_STANDARD` (the default on a real
cluster) reads the model server's ``request_predict_seconds`` per pod, :data:`ISTIO_STANDARD` a
mesh's ``istio_requests_total`` per workload (with status codes), :data:`STANDARD_LOCAL` the local
ingress's counters per target ``{deployment}-{pod-template-hash}``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kserve_nb import errors
from kserve_nb.metrics.sample import Histogram, RevisionSample

if TYPE_CHECKING:
    import httpx
    import pandas as pd

#: Placeholders a template may use.
PLACEHOLDERS = ("namespace", "service", "revisions", "window", "q")

_SEL = 'namespace_name="{namespace}",configuration_name="{service}-predictor",revision_name=~"{revisions}"'
_RATE = "sum by (revision_name) (rate(revision_app_request_count{" + _SEL + "}[{window}]))"
_RATE_5XX = (
    "sum by (revision_name) (rate(revision_app_request_count{" + _SEL + ',response_code_class="5xx"}[{window}]))'
)


@dataclass(frozen=True)
class PromQueries:
    """PromQL templates for one family of metrics.

    Placeholders (replaced as text, so PromQL's own braces need no escaping): ``{namespace}``,
    ``{service}`` (the InferenceService name), ``{revisions}`` (a regex alternation of the revision
    names, escaped), ``{window}`` (a ``rate()`` range such as ``1m``), ``{q}`` (a quantile).

    Attributes
    ----------
    requests:
        Cumulative request counts by revision (and status code, when ``code_label`` is set).
    latency_buckets:
        Cumulative latency histogram buckets by revision and ``le``.
    rps, error_rate, quantile:
        Rates over ``{window}`` by revision: requests per second, the share of 5xx answers, the
        ``{q}`` latency quantile in milliseconds.
    revision_label, code_label:
        Label names of the revision and the status code in these results.
    latency_unit_ms:
        Milliseconds per unit of ``latency_buckets``' ``le`` (1 for Knative's ms, 1000 for seconds).
    """

    name: str
    requests: str
    latency_buckets: str
    rps: str
    error_rate: str
    quantile: str
    revision_label: str = "revision_name"
    code_label: str | None = "response_code"
    latency_unit_ms: float = 1.0

    @property
    def counts_errors(self) -> bool:
        """Whether these metrics tell failed requests apart (they carry a status code)."""
        return self.code_label is not None

    def resolve(self, quantity: str, **values: Any) -> str:
        """The PromQL of ``quantity`` (a field name) with the placeholders filled in."""
        text = str(getattr(self, quantity))
        for key in PLACEHOLDERS:
            if key in values:
                text = text.replace("{" + key + "}", str(values[key]))
        return text


#: Knative's queue-proxy metrics, as every KServe Serverless revision exports them (the local
#: cluster's ingress exports the same series).
KNATIVE = PromQueries(
    name="knative",
    requests="sum by (revision_name, response_code) (revision_app_request_count{" + _SEL + "})",
    latency_buckets="sum by (revision_name, le) (revision_app_request_latencies_bucket{" + _SEL + "})",
    rps=_RATE,
    # No 5xx series yet means a rate of 0, not "no value": hence the `or 0 * total`.
    error_rate=f"({_RATE_5XX} or 0 * {_RATE}) / {_RATE}",
    quantile=(
        "histogram_quantile({q}, sum by (revision_name, le) "
        "(rate(revision_app_request_latencies_bucket{" + _SEL + "}[{window}])))"
    ),
)

_KSEL = 'namespace="{namespace}",serving_knative_dev_revision=~"{revisions}"'
#: The KServe model server's ``request_predict_seconds`` histogram, scraped from the pods with their
#: labels mapped (``serving_knative_dev_revision``, as Prometheus' kubernetes-pods job does). It has
#: no status codes: requests are the predictions timed, and errors are not known (0).
KSERVE_MODEL_SERVER = PromQueries(
    name="kserve-model-server",
    requests="sum by (serving_knative_dev_revision) (request_predict_seconds_count{" + _KSEL + "})",
    latency_buckets="sum by (serving_knative_dev_revision, le) (request_predict_seconds_bucket{" + _KSEL + "})",
    rps="sum by (serving_knative_dev_revision) (rate(request_predict_seconds_count{" + _KSEL + "}[{window}]))",
    error_rate=(
        "0 * sum by (serving_knative_dev_revision) (rate(request_predict_seconds_count{" + _KSEL + "}[{window}]))"
    ),
    quantile=(
        "1000 * histogram_quantile({q}, sum by (serving_knative_dev_revision, le) "
        "(rate(request_predict_seconds_bucket{" + _KSEL + "}[{window}])))"
    ),
    revision_label="serving_knative_dev_revision",
    code_label=None,
    latency_unit_ms=1000.0,
)

# Standard mode: a side's Deployment from the name of what served it. The local ingress labels a
# request with its target ``{deployment}-{pod-template-hash}`` (the hash in Kubernetes' name
# alphabet, which has no 0, 1 or vowels, so a Knative revision's ``-00001`` never matches); a real
# pod is ``{deployment}-{pod-template-hash}-{suffix}``.
_HASH = "[bcdfghjklmnpqrstvwxz2456789]+"
_LOCAL_SEL = 'namespace_name="{namespace}",revision_name=~"({revisions})-' + _HASH + '"'


def _local_dep(expr: str) -> str:
    return 'label_replace(' + expr + ', "deployment", "$1", "revision_name", "(.+)-' + _HASH + '")'


_LOCAL_RATE = (
    "sum by (deployment) (" + _local_dep("rate(revision_app_request_count{" + _LOCAL_SEL + "}[{window}])") + ")"
)
_LOCAL_RATE_5XX = (
    "sum by (deployment) ("
    + _local_dep("rate(revision_app_request_count{" + _LOCAL_SEL + ',response_code_class="5xx"}[{window}])')
    + ")"
)
#: Standard mode on the local cluster: its ingress counts every request per target (the process
#: serving one pod template of a Deployment) under Knative's metric names; these aggregate them by
#: Deployment, so each side's numbers are all of its pods' requests, with status codes.
STANDARD_LOCAL = PromQueries(
    name="standard-local-ingress",
    requests=(
        "sum by (deployment, response_code) (" + _local_dep("revision_app_request_count{" + _LOCAL_SEL + "}") + ")"
    ),
    latency_buckets=(
        "sum by (deployment, le) (" + _local_dep("revision_app_request_latencies_bucket{" + _LOCAL_SEL + "}") + ")"
    ),
    rps=_LOCAL_RATE,
    error_rate=f"({_LOCAL_RATE_5XX} or 0 * {_LOCAL_RATE}) / {_LOCAL_RATE}",
    quantile=(
        "histogram_quantile({q}, sum by (deployment, le) ("
        + _local_dep("rate(revision_app_request_latencies_bucket{" + _LOCAL_SEL + "}[{window}])") + "))"
    ),
    revision_label="deployment",
)

_POD_SEL = 'namespace="{namespace}",pod=~"({revisions})-[a-z0-9]+-[a-z0-9]+"'


def _pod_dep(expr: str) -> str:
    return 'label_replace(' + expr + ', "deployment", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+")'


#: Standard mode on a real cluster: the KServe model server's own ``request_predict_seconds``
#: histogram (seconds, labelled ``model_name``), scraped from each predictor pod with its
#: ``namespace`` and ``pod`` labels (the usual kubernetes-pods job or a PodMonitor; KServe annotates
#: the pods ``prometheus.io/scrape`` when ``serving.kserve.io/enable-prometheus-scraping`` is on) and
#: summed by Deployment, the pod name without its ``-{pod-template-hash}-{suffix}``. It has no status
#: codes: request counts and latency only, the error rate is unknown (an error gate needs another
#: source, e.g. :data:`ISTIO_STANDARD` or the rollout's own test traffic).
KSERVE_STANDARD = PromQueries(
    name="kserve-model-server-standard",
    requests="sum by (deployment) (" + _pod_dep("request_predict_seconds_count{" + _POD_SEL + "}") + ")",
    latency_buckets="sum by (deployment, le) (" + _pod_dep("request_predict_seconds_bucket{" + _POD_SEL + "}") + ")",
    rps="sum by (deployment) (" + _pod_dep("rate(request_predict_seconds_count{" + _POD_SEL + "}[{window}])") + ")",
    error_rate="",
    quantile=(
        "1000 * histogram_quantile({q}, sum by (deployment, le) ("
        + _pod_dep("rate(request_predict_seconds_bucket{" + _POD_SEL + "}[{window}])") + "))"
    ),
    revision_label="deployment",
    code_label=None,
    latency_unit_ms=1000.0,
)

_ISEL = 'reporter="destination",destination_workload_namespace="{namespace}",destination_workload=~"{revisions}"'
_IRATE = "sum by (destination_workload) (rate(istio_requests_total{" + _ISEL + "}[{window}]))"
_IRATE_5XX = "sum by (destination_workload) (rate(istio_requests_total{" + _ISEL + ',response_code=~"5.."}[{window}]))'
#: Standard mode behind an Istio mesh (sidecars or waypoints): Istio's standard request metrics by
#: destination workload, which for a KServe predictor pod is its Deployment; with status codes.
ISTIO_STANDARD = PromQueries(
    name="istio-standard",
    requests="sum by (destination_workload, response_code) (istio_requests_total{" + _ISEL + "})",
    latency_buckets="sum by (destination_workload, le) (istio_request_duration_milliseconds_bucket{" + _ISEL + "})",
    rps=_IRATE,
    error_rate=f"({_IRATE_5XX} or 0 * {_IRATE}) / {_IRATE}",
    quantile=(
        "histogram_quantile({q}, sum by (destination_workload, le) "
        "(rate(istio_request_duration_milliseconds_bucket{" + _ISEL + "}[{window}])))"
    ),
    revision_label="destination_workload",
)

#: Columns of :meth:`PrometheusSource.range_frame`.
RANGE_COLUMNS = ["time", "revision", "rps", "error_rate", "p50_ms", "p95_ms"]


@dataclass(frozen=True)
class Reading:
    """One quantity as Prometheus answered it: the resolved PromQL and the raw value per revision."""

    quantity: str
    query: str
    values: Mapping[str, float] = field(default_factory=dict)


class PrometheusSource:
    """Per-revision metrics of a KServe service from a Prometheus HTTP API.

    Parameters
    ----------
    url:
        Base URL of the Prometheus API (``http://prometheus.monitoring:9090``, or a Kubernetes API
        server's service proxy URL ending in ``…/proxy``).
    queries:
        The PromQL templates (:data:`KNATIVE` by default, :data:`KSERVE_MODEL_SERVER`, or your own).
    headers, auth:
        Sent with every request (e.g. ``Authorization``); ``auth`` is httpx's (``(user, password)``).
    verify:
        TLS verification: True, False, or a CA bundle path / ``ssl.SSLContext``. Keep it on.
    cert:
        A client certificate (httpx's ``cert``), for an API server's service proxy.
    rate_window:
        Seconds of the ``rate()`` window of :meth:`range_frame` and :meth:`explain` (at least two
        scrape intervals of the Prometheus behind it; the local one scrapes every second).
    timeout:
        Seconds one query may take.
    standard_queries:
        The templates :meth:`for_sides` reads Standard-mode sides with (:data:`KSERVE_STANDARD` by
        default; the local cluster's source uses :data:`STANDARD_LOCAL`).
    """

    def __init__(
        self,
        url: str,
        *,
        queries: PromQueries | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        verify: Any = True,
        cert: Any = None,
        rate_window: float = 60.0,
        timeout: float = 10.0,
        standard_queries: PromQueries | None = None,
    ) -> None:
        if not isinstance(url, str) or not re.match(r"^https?://[^/]", url):
            raise errors.ConfigError(f"a Prometheus URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.queries = queries or KNATIVE
        self.rate_window = float(rate_window)
        self._headers = dict(headers or {})
        self._auth = auth
        self._verify = verify
        self._cert = cert
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self.standard_queries = standard_queries or KSERVE_STANDARD
        #: Standard mode (:meth:`for_sides`): side name → its Deployment; empty: names are revisions.
        self.sides: dict[str, str] = {}
        #: Short name shown with every verdict.
        self.name = f"prometheus {_display(self.url)}"

    def __repr__(self) -> str:  # never shows headers or credentials
        return f"<PrometheusSource {_display(self.url)} queries={self.queries.name}>"

    def with_queries(self, queries: PromQueries) -> PrometheusSource:
        """The same Prometheus, read with other query templates."""
        other = PrometheusSource(
            self.url, queries=queries, headers=self._headers, auth=self._auth, verify=self._verify,
            cert=self._cert, rate_window=self.rate_window, timeout=self._timeout,
            standard_queries=self.standard_queries,
        )
        other.name = self.name
        other.sides = dict(self.sides)
        return other

    def for_sides(self, sides: Mapping[str, str]) -> PrometheusSource:
        """The same Prometheus answering per Standard-mode side: ``sides`` maps each side's name
        (``stable``, ``v2``…) to its Deployment (``ServiceStatus.sides``). The names given to
        :meth:`snapshot`, :meth:`range_frame` and :meth:`explain` are then side names, and so are the
        names in their answers (a Deployment no side names keeps its own name)."""
        if not sides:
            raise errors.ValidationError("for_sides needs at least one side: {side name: Deployment}")
        other = self.with_queries(self.standard_queries)
        other.sides = {str(k): str(v) for k, v in sides.items()}
        return other

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ raw API

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: the ``result`` list of ``/api/v1/query`` (``metric`` labels, ``value``)."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._get("/api/v1/query", params, promql)

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query: the ``result`` list of ``/api/v1/query_range`` (``metric``, ``values``)."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{max(step, 0.001):g}"}
        return self._get("/api/v1/query_range", params, promql)

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                headers=self._headers, auth=self._auth, verify=self._verify, cert=self._cert, timeout=self._timeout
            )
        return self._client

    def _get(self, path: str, params: Mapping[str, Any], promql: str) -> list[dict[str, Any]]:
        import httpx

        where = _display(self.url)
        try:
            response = self._http().get(self.url + path, params=params)
        except httpx.TimeoutException as err:
            raise errors.ConnectionFailed(f"Prometheus at {where} did not answer within {self._timeout:g}s") from err
        except httpx.HTTPError as err:
            raise errors.ConnectionFailed(f"cannot reach Prometheus at {where}: {err}") from err
        if response.status_code in (401, 403):
            raise errors.AccessDenied(
                f"Prometheus at {where} refused the request ({response.status_code}): "
                "check the credentials (connect(prometheus=…) with headers/auth, or RBAC for services/proxy)",
                status=response.status_code,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            raise errors.ConnectionFailed(
                f"{where} answered {response.status_code} without a Prometheus API response: is it a Prometheus URL?",
                status=response.status_code,
            )
        if body.get("status") != "success":
            message = body.get("error") or f"HTTP {response.status_code}"
            if body.get("errorType") == "bad_data":
                raise errors.ValidationError(f"Prometheus rejected the query: {message} — query: {promql}")
            raise errors.ClusterError(
                f"Prometheus query failed: {message} — query: {promql}", status=response.status_code
            )
        return list((body.get("data") or {}).get("result") or [])

    # ------------------------------------------------------------------ MetricSource

    def _values(self, namespace: str, service: str, revisions: Sequence[str] | None, **extra: Any) -> dict[str, Any]:
        if self.sides:  # side names → their Deployments (every side when none is named)
            revisions = [self.sides.get(n, n) for n in (revisions or list(self.sides))]
        return {"namespace": namespace, "service": service, "revisions": _alternation(revisions), **extra}

    def _name(self, labels: Mapping[str, Any]) -> str | None:
        """The revision (or side) a result row is about, from its labels."""
        value = labels.get(self.queries.revision_label)
        if value is None or not self.sides:
            return None if value is None else str(value)
        return next((side for side, dep in self.sides.items() if dep == value), str(value))

    def snapshot(self, namespace: str, service: str, revisions: Sequence[str]) -> dict[str, RevisionSample]:
        """Cumulative counters of each of ``revisions`` now (all zero for a revision never seen)."""
        q = self.queries
        values = self._values(namespace, service, revisions)
        requests_q = q.resolve("requests", **values)
        latency_q = q.resolve("latency_buckets", **values)
        codes: dict[str, dict[str, int]] = {}
        for row in self.query(requests_q):
            labels = row.get("metric") or {}
            rev = self._name(labels)
            if rev is None:
                continue
            code = str(labels.get(q.code_label, "")) if q.code_label else "all"
            n = _count(row.get("value"))
            per = codes.setdefault(rev, {})
            per[code or "error"] = per.get(code or "error", 0) + n
        buckets: dict[str, dict[float, int]] = {}
        for row in self.query(latency_q):
            labels = row.get("metric") or {}
            rev, le = self._name(labels), labels.get("le")
            if rev is None or le is None:
                continue
            bound = math.inf if le == "+Inf" else round(float(le) * q.latency_unit_ms, 6)
            per_rev = buckets.setdefault(rev, {})
            per_rev[bound] = per_rev.get(bound, 0) + _count(row.get("value"))
        histograms = {rev: _histogram(b) for rev, b in buckets.items()}
        # A revision without observations gets the buckets the others have (a real cluster's are
        # Knative's, sparser than ours), so differences of snapshots line up.
        known = next(iter(histograms.values()), None)
        empty = Histogram(known.bounds, (0,) * len(known.bounds)) if known else Histogram.empty()
        queries = {"requests": requests_q, "latency": latency_q}
        out: dict[str, RevisionSample] = {}
        for rev in revisions:
            per = {k: v for k, v in codes.get(rev, {}).items() if v}
            hist = histograms.get(rev) or empty
            total = sum(per.values()) if per else hist.total
            errors_ = sum(v for k, v in per.items() if k.startswith("5") or k == "error")
            out[rev] = RevisionSample(
                rev, total, errors_, hist, codes=per, source="prometheus", queries=queries
            )
        return out

    # ------------------------------------------------------------------ rates over time

    def range_frame(
        self,
        namespace: str,
        service: str,
        start: float,
        end: float,
        step: float,
        *,
        revisions: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Per-revision rates between ``start`` and ``end`` (Unix seconds), one row per ``step``.

        Columns ``time`` (UTC timestamps), ``revision``, ``rps``, ``error_rate``, ``p50_ms``,
        ``p95_ms`` (NaN where a quantity has no value, e.g. no traffic, or no status codes for the
        error rate). Every revision of the service unless ``revisions`` names some; per side
        (``revision`` holds the side's name) for a source made by :meth:`for_sides`. Rates are over
        the larger of ``step`` and the source's ``rate_window``.
        """
        import pandas as pd

        if not end > start:
            raise errors.ValidationError(f"range_frame needs end > start (got {start} … {end})")
        values = self._values(namespace, service, revisions, window=_duration(max(step, self.rate_window)))
        columns: dict[str, dict[tuple[float, str], float]] = {}
        for column, quantity, extra in (
            ("rps", "rps", {}),
            ("error_rate", "error_rate", {}),
            ("p50_ms", "quantile", {"q": "0.5"}),
            ("p95_ms", "quantile", {"q": "0.95"}),
        ):
            series: dict[tuple[float, str], float] = {}
            columns[column] = series
            if not getattr(self.queries, quantity):
                continue  # not in these metrics (an error rate without status codes): NaN
            promql = self.queries.resolve(quantity, **values, **extra)
            for row in self.query_range(promql, start, end, step):
                rev = self._name(row.get("metric") or {})
                if rev is None:
                    continue
                for ts, raw in row.get("values") or []:
                    series[(float(ts), rev)] = _float(raw)
        keys = sorted(set().union(*(c.keys() for c in columns.values())))
        frame = pd.DataFrame(
            {
                "time": pd.to_datetime([k[0] for k in keys], unit="s", utc=True),
                "revision": [k[1] for k in keys],
                **{c: [columns[c].get(k, math.nan) for k in keys] for c in RANGE_COLUMNS[2:]},
            },
            columns=RANGE_COLUMNS,
        )
        return frame

    # ------------------------------------------------------------------ evidence

    def read(self, quantity: str, namespace: str, service: str, revisions: Sequence[str], **extra: Any) -> Reading:
        """One quantity now (``rps``, ``error_rate``, ``quantile`` with ``q=0.95``, ``requests``…):
        its resolved PromQL and the raw value per revision."""
        if quantity not in {"requests", "latency_buckets", "rps", "error_rate", "quantile"}:
            raise errors.ValidationError(
                f"unknown quantity {quantity!r}: use requests, latency_buckets, rps, error_rate or quantile"
            )
        values = self._values(namespace, service, revisions, window=_duration(self.rate_window), **extra)
        if not getattr(self.queries, quantity):
            return Reading(quantity, f"(not in {self.queries.name}: its metrics carry no status codes)", {})
        promql = self.queries.resolve(quantity, **values)
        out: dict[str, float] = {}
        for row in self.query(promql):
            rev = self._name(row.get("metric") or {})
            if rev is not None:
                out[rev] = out.get(rev, 0.0) + _float((row.get("value") or [0, "NaN"])[1])
        return Reading(quantity, promql, out)

    def explain(self, namespace: str, service: str, revisions: Sequence[str]) -> pd.DataFrame:
        """Every number this source gives for ``revisions`` with the PromQL that produced it.

        Rows ``quantity, revision, value, query``: the cumulative requests and the rates, p50 and
        p95 over ``rate_window`` as Prometheus answers them now.
        """
        import pandas as pd

        rows = []
        for label, quantity, extra in (
            ("requests", "requests", {}),
            ("rps", "rps", {}),
            ("error_rate", "error_rate", {}),
            ("p50_ms", "quantile", {"q": "0.5"}),
            ("p95_ms", "quantile", {"q": "0.95"}),
        ):
            reading = self.read(quantity, namespace, service, revisions, **extra)
            for rev in revisions:
                value = reading.values.get(rev, math.nan)
                rows.append({"quantity": label, "revision": rev, "value": value, "query": reading.query})
        return pd.DataFrame(rows, columns=["quantity", "revision", "value", "query"])

    def wait_for(
        self, namespace: str, service: str, revisions: Sequence[str], requests: int, timeout: float = 30.0
    ) -> dict[str, RevisionSample]:
        """Snapshot until ``revisions`` together show at least ``requests`` requests (a scrape
        interval or two after traffic), or ``timeout`` seconds; returns the last snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot(namespace, service, revisions)
            if sum(s.requests for s in snap.values()) >= requests or time.monotonic() > deadline:
                return snap
            time.sleep(0.25)


# ---------------------------------------------------------------------- helpers


def _display(url: str) -> str:
    """The URL without user info or query (what may be shown)."""
    return re.sub(r"//[^/@]*@", "//", url).split("?", 1)[0]


_RE2_META = re.compile(r"[.^$*+?()\[\]{}|\\]")


def _alternation(revisions: Sequence[str] | None) -> str:
    """A PromQL regex matching exactly ``revisions`` (``.+`` for all), escaped for a "…" string."""
    if not revisions:
        return ".+"
    # Only RE2's metacharacters are escaped, so the query stays readable ("-" needs none).
    regex = "|".join(_RE2_META.sub(r"\\\g<0>", str(r)) for r in revisions)
    return regex.replace("\\", "\\\\").replace('"', '\\"')


def _duration(seconds: float) -> str:
    """``rate()`` range text: whole seconds, at least 1 s."""
    return f"{max(1, int(math.ceil(seconds)))}s"


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def _count(value: Any) -> int:
    x = _float(value[1]) if isinstance(value, (list, tuple)) and len(value) == 2 else math.nan
    return 0 if math.isnan(x) else int(round(x))


def _histogram(buckets: Mapping[float, int]) -> Histogram:
    """A :class:`Histogram` from ``le`` → cumulative count (kept monotone: scrapes of two exporters
    are not taken at the same instant)."""
    if math.inf not in buckets:
        buckets = {**buckets, math.inf: max(buckets.values(), default=0)}
    bounds = tuple(sorted(buckets))
    counts, running = [], 0
    for b in bounds:
        running = max(running, buckets[b])
        counts.append(running)
    return Histogram(bounds, tuple(counts))
