"""Fault-injected candidate models, to show a canary judge catching a bad model end to end.

:class:`FaultyModel` wraps any fitted scikit-learn classifier and, per request, adds latency, fails,
or flips predictions to another class, at set rates. It pickles with joblib like any estimator, so
a model directory holding one is served by the local cluster's sklearn runtime (and would be by
KServe's own ``sklearnserver`` with kserve-nb installed) unchanged:

- a raised fault becomes what KServe answers for a model error: HTTP 500 with
  ``{"error": "injected fault: …"}`` (the runtime wraps it in ``kserve.errors.InferenceError``);
- the added latency is a ``time.sleep`` inside ``predict``, so it behaves like a slower model:
  it holds the revision's event loop, which serves one prediction at a time (a +50 ms model
  answers at most ~20 requests per second per revision);
- a flip replaces a prediction by another of the model's ``classes_``, chosen at random.

The local cluster seeds the models of :data:`kserve_nb.local.storage.FAULT_MODELS` into its
storage mirror (:func:`~kserve_nb.local.storage.seed_mirror`), each under its own
``gs://kserve-nb-faults/…`` URI and each wrapping the walkthrough's first model
(``…/sklearn/1.0/model``), so a fault model's only difference from the baseline is its fault.

Randomness is seeded: a revision process answers the same sequence of faults every time it
starts, and every revision process of one model directory the same one.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.metaestimators import available_if

# One lock for every instance: a fault draw is a few microseconds, and a per-instance lock would
# not survive pickling.
_LOCK = threading.Lock()


class InjectedFault(RuntimeError):
    """The failure a :class:`FaultyModel` raises for the requests it was told to fail."""


class FaultyModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A classifier that answers like ``base`` but slower, failing, or wrong, at set rates.

    Parameters
    ----------
    base:
        A fitted scikit-learn classifier (or call :meth:`fit`).
    latency_ms:
        Milliseconds added to every ``predict`` call.
    error_rate:
        Share of calls (requests) that raise :class:`InjectedFault` instead of answering.
    flip_rate:
        Share of predicted rows changed to another class of ``base.classes_``.
    seed:
        Seed of the fault draws.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.svm import SVC
    >>> X, y = load_iris(return_X_y=True)
    >>> m = FaultyModel(SVC().fit(X, y), flip_rate=1.0)
    >>> bool((m.predict(X) != m.base.predict(X)).all())
    True
    """

    _rng: random.Random | None = None  # the fault draws, created from ``seed`` on first use

    def __init__(
        self, base: Any = None, latency_ms: float = 0.0, error_rate: float = 0.0, flip_rate: float = 0.0, seed: int = 0
    ) -> None:
        self.base = base
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.flip_rate = flip_rate
        self.seed = seed

    # -- estimator API -------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> FaultyModel:
        """Fit a clone of ``base`` on ``X, y`` (faults apply to predictions only)."""
        self._check_params()
        self.base = clone(self.base).fit(X, y)
        self._rng = None
        return self

    @property
    def classes_(self) -> Any:
        """The wrapped model's classes."""
        return self.base.classes_

    def predict(self, X: Any) -> Any:
        """``base.predict(X)``, after the added latency, failing or flipping at the set rates."""
        self._before_answer()
        pred = np.asarray(self.base.predict(X))
        if self.flip_rate > 0 and len(pred):
            flips = self._draws(len(pred))
            pred = pred.copy()
            for i, (u, pick) in enumerate(flips):
                if u < self.flip_rate:
                    pred[i] = self._other(pred[i], pick)
        return pred

    def _has_proba(self) -> bool:
        return hasattr(self.base, "predict_proba")

    @available_if(_has_proba)  # type: ignore[untyped-decorator]  # scikit-learn ships no type information
    def predict_proba(self, X: Any) -> Any:
        """``base.predict_proba(X)``; a flipped row swaps its top class with another class."""
        self._before_answer()
        proba = np.array(self.base.predict_proba(X), dtype=float)
        if self.flip_rate > 0 and len(proba):
            classes = list(self.classes_)
            for i, (u, pick) in enumerate(self._draws(len(proba))):
                if u < self.flip_rate:
                    top = int(np.argmax(proba[i]))
                    other = classes.index(self._other(classes[top], pick))
                    proba[i, [top, other]] = proba[i, [other, top]]
        return proba

    # -- faults --------------------------------------------------------------------------------

    def _before_answer(self) -> None:
        self._check_params()  # a model built without fit() is checked here, on every call (cheap)
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)
        if self.error_rate > 0:
            with _LOCK:
                u = self._random().random()
            if u < self.error_rate:
                raise InjectedFault(
                    f"injected fault: this model fails {self.error_rate:.0%} of requests "
                    "(kserve-nb fault injection)"
                )

    def _draws(self, n: int) -> list[tuple[float, float]]:
        with _LOCK:
            rng = self._random()
            return [(rng.random(), rng.random()) for _ in range(n)]

    def _other(self, label: Any, pick: float) -> Any:
        others = [c for c in self.classes_ if c != label]
        return others[int(pick * len(others))] if others else label

    def _random(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(self.seed)  # noqa: S311 - reproducible fault injection, not security
        return self._rng

    def _check_params(self) -> None:
        for name in ("error_rate", "flip_rate"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be from 0 to 1, got {value!r}")
        if float(self.latency_ms) < 0:
            raise ValueError(f"latency_ms must be ≥ 0, got {self.latency_ms!r}")

    # -- pickling: every loaded copy starts its fault sequence from the seed --------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_rng", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._rng = None

