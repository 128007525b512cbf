"""Per-revision counters from the responses the client itself observed (the ``client`` source).

Where no Prometheus is at hand, the traffic a notebook sends is its own evidence: each response of
a :class:`~kserve_nb.predict.load.LoadRun` (or a results frame from ``send``) names the revision
that answered in its ``x-kserve-revision`` header, and carries a status and a latency.
:class:`ClientSource` adds them up into the same cumulative :class:`RevisionSample` counters a
Prometheus source produces, so a gate reads both the same way.

What it cannot know: a request that failed before any revision answered (connection refused or
reset, a timeout, no answer at all) on the weighted default host has no revision to charge. Those
are counted under the separate key :data:`UNATTRIBUTED`, which :meth:`ClientSource.snapshot`
includes whenever it is non-zero, so a judge can see them instead of their vanishing. On a real
cluster, whose ingress sends no ``x-kserve-revision`` header, every request to the default host is
unattributed; target the ``latest-``/``prev-`` hosts or use Prometheus there.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kserve_nb.errors import ValidationError
from kserve_nb.metrics.sample import LATENCY_BUCKETS_MS, Histogram, RevisionSample
from kserve_nb.semantics_standard import deployment_of

if TYPE_CHECKING:
    import pandas as pd

    from kserve_nb.predict.load import LoadRun

#: Key of requests no revision answered (see the module docs).
UNATTRIBUTED = "(unattributed)"

_BOUNDS: tuple[float, ...] = Histogram.empty(LATENCY_BUCKETS_MS).bounds


def is_server_error(status: int | None) -> bool:
    """What :attr:`RevisionSample.errors` counts: a 5xx answer, or no answer at all (``None``)."""
    return status is None or status >= 500


@dataclass
class _Counts:
    """Running counters of one revision (per-bucket, not yet cumulative)."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(_BOUNDS))
    labelled: int = 0
    correct: int = 0
    codes: dict[str, int] = field(default_factory=dict)

    def add(self, status: int | None, latency_ms: float, correct: bool | None) -> None:
        self.requests += 1
        self.errors += is_server_error(status)
        code = "error" if status is None else str(status)
        self.codes[code] = self.codes.get(code, 0) + 1
        if not math.isnan(latency_ms):  # NaN: never sent, no time to count
            self.buckets[bisect.bisect_left(_BOUNDS, latency_ms)] += 1
        if correct is not None:
            self.labelled += 1
            self.correct += bool(correct)

    def sample(self, revision: str, queries: dict[str, str]) -> RevisionSample:
        running, cumulative = 0, []
        for c in self.buckets:
            running += c
            cumulative.append(running)
        return RevisionSample(
            revision,
            self.requests,
            self.errors,
            Histogram(_BOUNDS, tuple(cumulative)),
            self.labelled,
            self.correct,
            dict(self.codes),
            "client",
            queries,
        )


class _Follow:
    """Reads a live LoadRun's records once each, from where it left off."""

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.position = 0

    def new(self) -> list[Any]:
        recs = self.run.records(self.position)
        self.position += len(recs)
        return recs


class ClientSource:
    """A :class:`~kserve_nb.metrics.sample.MetricSource` over the responses the client observed.

    Parameters
    ----------
    observed:
        A live :class:`~kserve_nb.predict.load.LoadRun` (followed as it goes: the counters grow
        with every answer), a results DataFrame (``PredictionClient.send``, ``LoadRun.results``;
        counted once), or a list of these. :meth:`add` adds more later.

    Notes
    -----
    Counters are cumulative and only grow; a gate judges the difference of two snapshots.
    ``requests`` counts every request that was sent (rows a bulk ``send`` never sent because the
    ingress was down are skipped), ``errors`` the 5xx answers and the requests with no answer,
    ``codes`` every status (``"error"`` for no answer), ``latency`` every request with a measured
    time, and ``labelled``/``correct`` the successful answers to rows whose true label was given.
    Safe to call from several threads.

    Examples
    --------
    >>> run = svc.generate_load(X, y=y, rate=50, duration=60)   # doctest: +SKIP
    >>> source = ClientSource(run)
    >>> before = source.snapshot("kserve-test", "sklearn-iris", ["sklearn-iris-predictor-00002"])
    """

    name = "client"

    def __init__(self, observed: LoadRun | pd.DataFrame | Iterable[LoadRun | pd.DataFrame]) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, _Counts] = {}
        self._follows: list[_Follow] = []
        self._hosts: list[str] = []
        self.add(observed)

    def add(self, observed: LoadRun | pd.DataFrame | Iterable[LoadRun | pd.DataFrame]) -> None:
        """Count more traffic: another run, results frame, or a list of them."""
        from kserve_nb.predict.load import LoadRun

        items = [observed] if isinstance(observed, LoadRun) or _is_frame(observed) else list(observed)
        for item in items:
            if not (isinstance(item, LoadRun) or _is_frame(item)):
                raise ValidationError(
                    f"ClientSource counts LoadRun objects or results DataFrames, got {type(item).__name__}"
                )
        with self._lock:
            for item in items:
                if isinstance(item, LoadRun):
                    self._follows.append(_Follow(item))
                    self._hosts.append(item.target.host)
                else:
                    self._add_frame(item)

    def snapshot(self, namespace: str, service: str, revisions: Sequence[str]) -> dict[str, RevisionSample]:
        """Cumulative counters of each of ``revisions`` now (all zero for one never seen), plus
        :data:`UNATTRIBUTED` when some requests had no revision to charge.

        Raises
        ------
        ValidationError
            When a followed run was sent to another InferenceService than ``namespace/service``.
        """
        for follow in self._follows:
            run = follow.run
            if (run.service is not None and run.service != service) or (
                run.namespace is not None and run.namespace != namespace
            ):
                raise ValidationError(
                    f"this ClientSource follows traffic to {run.namespace}/{run.service}, not "
                    f"{namespace}/{service}; start generate_load on the service being judged"
                )
        with self._lock:
            for follow in self._follows:
                for r in follow.new():
                    self._count(r.revision, r.status_code, r.latency_ms, r.correct)
            queries = {"client": self._describe()}
            out = {
                rev: (self._counts[rev].sample(rev, queries) if rev in self._counts else
                      RevisionSample(rev, source="client", queries=queries))
                for rev in revisions
            }
            stray = self._counts.get(UNATTRIBUTED)
            if stray is not None and stray.requests:
                out[UNATTRIBUTED] = stray.sample(UNATTRIBUTED, queries)
            return out

    def revisions(self) -> list[str]:
        """Revisions seen answering so far (not counting :data:`UNATTRIBUTED`)."""
        with self._lock:
            for follow in self._follows:
                for r in follow.new():
                    self._count(r.revision, r.status_code, r.latency_ms, r.correct)
            return sorted(k for k in self._counts if k != UNATTRIBUTED)

    def for_sides(self, sides: Mapping[str, str]) -> SideClientSource:
        """A view of these counters per Standard-mode side: ``sides`` maps each side's name
        (``stable``, ``v2``…) to its Deployment; see :class:`SideClientSource`."""
        return SideClientSource(self, sides)

    def __repr__(self) -> str:
        return f"<ClientSource {self._describe()}>"

    # -- internals -------------------------------------------------------------------------

    def _describe(self) -> str:
        hosts = ", ".join(sorted(set(self._hosts))) or "results frames"
        return f"responses observed by the client (traffic to {hosts}), by x-kserve-revision"

    def _count(self, revision: str | None, status: int | None, latency_ms: float, correct: bool | None) -> None:
        key = revision or UNATTRIBUTED
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _Counts()
        counts.add(status, latency_ms, correct)

    def _add_frame(self, df: pd.DataFrame) -> None:
        missing = [c for c in ("revision", "status_code", "latency_ms") if c not in df.columns]
        if missing:
            raise ValidationError(
                f"the results frame lacks column(s) {missing}; pass the DataFrame returned by send() or LoadRun.results"
            )
        n = len(df)
        errors = df["error"].tolist() if "error" in df.columns else [None] * n
        correct = df["correct"].tolist() if "correct" in df.columns else [None] * n
        for rev, status, lat, err, ok in zip(
            df["revision"].tolist(), df["status_code"].tolist(), df["latency_ms"].tolist(), errors, correct
        ):
            if isinstance(err, str) and err.startswith("not sent: "):
                continue  # a bulk send skipped it once the ingress was found dead
            self._count(
                None if _missing(rev) else str(rev),
                None if _missing(status) else int(status),
                math.nan if _missing(lat) else float(lat),
                None if _missing(ok) else bool(ok),
            )


class SideClientSource:
    """:class:`ClientSource`'s counters per Standard-mode side (``stable``, a canary's name).

    A Standard-mode answer names the pod template that served it (``{deployment}-{hash}``, see
    :func:`~kserve_nb.semantics_standard.deployment_of`); every template of a side's Deployment
    (old and new during a rolling update) counts for that side. Answers no side claims stay under
    their own names.
    """

    name = "client"

    def __init__(self, base: ClientSource, sides: Mapping[str, str]) -> None:
        if not sides:
            raise ValidationError("for_sides needs at least one side: {side name: Deployment}")
        self.base = base
        self.sides = {str(k): str(v) for k, v in sides.items()}

    def __repr__(self) -> str:
        return f"<SideClientSource {', '.join(self.sides)} of {self.base!r}>"

    def snapshot(self, namespace: str, service: str, revisions: Sequence[str]) -> dict[str, RevisionSample]:
        """Cumulative counters of each named side (all zero for one never seen), plus
        :data:`UNATTRIBUTED` when some requests had no answer to charge."""
        seen = self.base.revisions()
        raw = self.base.snapshot(namespace, service, seen)
        out: dict[str, RevisionSample] = {}
        for side in revisions:
            deployment = self.sides.get(side, side)
            parts = [raw[k] for k in seen if k == deployment or deployment_of(k) == deployment]
            out[side] = _merged(side, parts, raw)
        if UNATTRIBUTED in raw:
            out[UNATTRIBUTED] = raw[UNATTRIBUTED]
        return out


def _merged(name: str, parts: Sequence[RevisionSample], raw: Mapping[str, RevisionSample]) -> RevisionSample:
    queries = next(iter(raw.values())).queries if raw else {}
    if not parts:
        return RevisionSample(name, source="client", queries=queries)
    codes: dict[str, int] = {}
    latency = parts[0].latency
    for p in parts[1:]:
        latency = latency + p.latency
    for p in parts:
        for k, v in p.codes.items():
            codes[k] = codes.get(k, 0) + v
    return RevisionSample(
        name, sum(p.requests for p in parts), sum(p.errors for p in parts), latency,
        sum(p.labelled for p in parts), sum(p.correct for p in parts), codes, "client", queries,
    )


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _is_frame(v: Any) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        return False
    return isinstance(v, pd.DataFrame)
