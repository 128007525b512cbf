"""How long ``%load_ext kserve_nb`` takes, next to importing pandas and plotly.

Run: ``.venv/bin/python benchmarks/bench_load_ext.py [--repeat 7]``

Each sample is a fresh interpreter (so nothing is already imported). It builds a real
``InteractiveShell`` first (not timed: every kernel has one), then times
``import kserve_nb; kserve_nb.load_ipython_extension(shell)``; the reference samples time
``import pandas, plotly`` (plus ``plotly.graph_objects``, what a first figure needs). Prints the
median and minimum of each, their ratio, and any heavy module the extension pulled in.

Target: loading the extension costs a small fraction of the heavy imports (ratio well under 0.1)
and imports none of pandas, plotly, numpy, kubernetes, httpx, yaml.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

HEAVY = ("pandas", "plotly", "numpy", "kubernetes", "httpx", "yaml", "aiohttp", "scipy")

SETUP = "from IPython.core.interactiveshell import InteractiveShell\nshell = InteractiveShell.instance()\n"
CASES = {
    "load_ext kserve_nb": "import kserve_nb\nkserve_nb.load_ipython_extension(shell)\n",
    "import pandas, plotly": "import pandas, plotly, plotly.graph_objects\n",
}
TEMPLATE = """
import json, sys, time
{setup}
t0 = time.perf_counter()
{body}
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def sample(body: str) -> dict[str, object]:
    """One fresh-interpreter timing of ``body`` (after the shell setup)."""
    code = TEMPLATE.format(setup=SETUP, body=body, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(repeat: int) -> None:
    results: dict[str, list[float]] = {}
    heavy: dict[str, set[str]] = {}
    for _ in range(repeat):
        for name, body in CASES.items():  # interleaved, so drift hits both alike
            out = sample(body)
            results.setdefault(name, []).append(float(out["seconds"]))  # type: ignore[arg-type]
            heavy.setdefault(name, set()).update(out["heavy"])  # type: ignore[arg-type]
    print(f"{'case':<24}{'median ms':>12}{'min ms':>10}   heavy modules loaded")
    for name, times in results.items():
        mods = ", ".join(sorted(heavy[name])) or "none"
        print(f"{name:<24}{statistics.median(times) * 1e3:>12.1f}{min(times) * 1e3:>10.1f}   {mods}")
    ext, ref = (statistics.median(results[n]) for n in CASES)
    print(f"ratio load_ext / (pandas + plotly): {ext / ref:.3f}  ({repeat} fresh interpreters each)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh interpreters per case")
    main(parser.parse_args().repeat)
