"""Durations as people write them: ``30``, ``30s``, ``500ms``, ``2m``, ``1.5h``.

Light on purpose (no imports beyond the error tree): the magics' argument grammar uses it, and
building that must stay cheap.
"""

from __future__ import annotations

import math
import re
from typing import Any

from kserve_nb import errors

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, what: str = "value") -> float:
    """Seconds from a number or a text with a unit; a one-line ValidationError naming ``what``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise errors.ValidationError(f"{what} {value!r} is not a duration; write e.g. 30s, 500ms, 2m or 1h")
        unit = m.group(2).lower() if m.group(2) else None
        seconds = float(m.group(1)) * _UNIT_SECONDS[unit]
    if not math.isfinite(seconds) or seconds <= 0:
        raise errors.ValidationError(f"{what} must be a positive duration, got {value!r}")
    return seconds
