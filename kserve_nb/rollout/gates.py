"""Gates: ``error_rate<=prev+0.01``, ``p95<=1.2*prev``, ``accuracy>=prev-0.02``, ``p99<=250ms``.

A gate compares one metric of the candidate revision with a limit that is either absolute or
linear in the same metric of the baseline (``prev``): ``candidate OP factor*prev + offset``. It is
judged on anytime-valid confidence sequences (:mod:`kserve_nb.analysis.sequential`), so a rollout
may check it after every interval for as long as it runs without inflating false alarms: a gate
*fails* only when the interval shows the condition is violated, *passes* only when it shows the
condition holds, and is *inconclusive* ("not enough data yet") in between.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from kserve_nb import errors
from kserve_nb.metrics.sample import RevisionSample

#: Metrics a gate can name: rates are fractions (``1%`` = 0.01), latencies milliseconds.
RATE_METRICS = ("error_rate", "success_rate", "accuracy")
QUANTILE_METRICS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
METRICS = RATE_METRICS + tuple(QUANTILE_METRICS)

_EXAMPLES = "e.g. 'error_rate<=prev+0.01', 'p95<=1.2*prev', 'accuracy>=prev-0.02', 'p99<=250ms'"
_GATE = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|<|>)\s*(.+?)\s*$")
_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:e-?[0-9]+)?"
_TERM = re.compile(
    rf"^(?:(?P<f1>{_NUMBER})\s*\*\s*prev|prev\s*\*\s*(?P<f2>{_NUMBER})|(?P<prev>prev)|(?P<num>{_NUMBER})\s*(?P<unit>%|ms|s)?)$"
)


@dataclass(frozen=True)
class Gate:
    """One parsed gate: ``metric op factor*prev + offset`` (``factor`` 0 for an absolute limit)."""

    metric: str
    op: str
    factor: float
    offset: float
    text: str

    @property
    def relative(self) -> bool:
        """Whether the limit depends on the baseline (``prev``)."""
        return self.factor != 0.0

    @classmethod
    def parse(cls, text: str) -> Gate:
        """Parse ``text``; a ValidationError names what is wrong and shows examples."""
        if not isinstance(text, str) or not text.strip():
            raise errors.ValidationError(f"a gate must be text, {_EXAMPLES}")
        m = _GATE.match(text.lower())
        if not m:
            raise errors.ValidationError(f"cannot read gate {text!r}: write METRIC OP LIMIT, {_EXAMPLES}")
        metric, op, rhs = m.groups()
        if metric not in METRICS:
            raise errors.ValidationError(
                f"unknown metric {metric!r} in gate {text!r}; use one of {', '.join(METRICS)}"
            )
        op = {"<": "<=", ">": ">="}.get(op, op)  # with continuous quantities the two read the same
        factor, offset = 0.0, 0.0
        # Split "a*prev + b - c" into signed terms.
        parts = re.split(r"(?<![0-9]e)([+-])", rhs.replace(" ", ""))  # keep 1e-3 whole
        signs, terms = ["+", *parts[1::2]], parts[0::2]
        if terms and terms[0] == "":  # a leading sign: "-0.01+prev"
            signs, terms = signs[1:], terms[1:]
        for sign, term in zip(signs, terms):
            t = _TERM.match(term)
            if not t:
                raise errors.ValidationError(f"cannot read {term!r} in gate {text!r}; {_EXAMPLES}")
            s = -1.0 if sign == "-" else 1.0
            if t.group("prev") or t.group("f1") or t.group("f2"):
                factor += s * float(t.group("f1") or t.group("f2") or 1.0)
            else:
                offset += s * _in_unit(float(t.group("num")), t.group("unit"), metric, text)
        if factor < 0:
            raise errors.ValidationError(f"gate {text!r}: the factor of prev must not be negative")
        return cls(metric, op, factor, offset, text.strip())

    def evaluate(self, candidate: RevisionSample, baseline: RevisionSample | None, alpha: float,
                 min_samples: int) -> Any:
        """Judge this gate on the counts since the release started; returns a ``sequential.Judgement``."""
        from kserve_nb.analysis import sequential as seq

        base = baseline if self.relative else None
        if self.relative and baseline is None:
            raise errors.ValidationError(f"gate {self.text!r} compares with prev, but there is no previous revision")
        if self.metric in QUANTILE_METRICS:
            return seq.judge_quantile(
                self.metric, QUANTILE_METRICS[self.metric], candidate.latency,
                base.latency if base is not None else None, self.op, self.factor, self.offset, alpha, min_samples,
            )
        return seq.judge_rate(
            self.metric, _counts(self.metric, candidate),
            _counts(self.metric, base) if base is not None else None,
            self.op, self.factor, self.offset, alpha, min_samples,
        )

    def __str__(self) -> str:
        return self.text


def parse_gates(texts: Any) -> tuple[Gate, ...]:
    """Gates from a string, or a list of strings (``None`` or empty: no gates)."""
    if texts is None:
        return ()
    if isinstance(texts, str):
        texts = [texts]
    return tuple(g if isinstance(g, Gate) else Gate.parse(g) for g in texts)


def _counts(metric: str, s: RevisionSample) -> tuple[int, int]:
    if metric == "error_rate":
        return s.errors, s.requests
    if metric == "success_rate":
        return s.requests - s.errors, s.requests
    return s.correct, s.labelled


def _in_unit(value: float, unit: str | None, metric: str, text: str) -> float:
    if metric in QUANTILE_METRICS:
        if unit == "%":
            raise errors.ValidationError(f"gate {text!r}: a latency limit is in ms or s, not %")
        return value * 1000.0 if unit == "s" else value
    if unit in ("ms", "s"):
        raise errors.ValidationError(f"gate {text!r}: {metric} is a fraction (0.01 or 1%), not a time")
    out = value / 100.0 if unit == "%" else value
    if not math.isfinite(out):
        raise errors.ValidationError(f"gate {text!r}: the limit must be a finite number")
    return out
