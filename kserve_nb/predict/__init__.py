"""Prediction payloads (:mod:`~kserve_nb.predict.protocol`) and the ingress client
(:mod:`~kserve_nb.predict.client`)."""

from __future__ import annotations

from kserve_nb.predict.client import PredictionClient, PredictionResult, Target
from kserve_nb.predict.protocol import (
    check_width,
    parse_v1_response,
    parse_v2_response,
    to_instances,
    v1_request,
    v2_request,
)

__all__ = [
    "PredictionClient",
    "PredictionResult",
    "Target",
    "check_width",
    "parse_v1_response",
    "parse_v2_response",
    "to_instances",
    "v1_request",
    "v2_request",
]
