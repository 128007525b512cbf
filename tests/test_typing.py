"""The package type-checks under ``mypy --strict`` and the code passes ruff (both are part of the
test suite, so the annotations stay true and the lint rules in pyproject.toml stay kept)."""

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


def test_code_passes_ruff() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "kserve_nb", "tests", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
