"""The package type-checks (mypy is part of the test suite, so the annotations stay true)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_package_type_checks_with_mypy() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "kserve_nb"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
