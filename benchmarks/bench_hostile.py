"""What a YAML request body costs the local API server's event loop: ours vs plain PyYAML.

Run: ``.venv/bin/python benchmarks/bench_hostile.py [--repeat 5]``

The API server, the controller and the gateway share one event loop, so decoding a body is time
every other request waits. For each body this times ``decode_body`` (the API server's decoder:
libyaml events, a composer that bounds depth and alias expansion) next to plain PyYAML:
its pure-Python ``SafeLoader`` plus the JSON conversion, and prints medians and the ratio:

- an ordinary InferenceService manifest (both decode it; ours should not be slower);
- a small alias bomb (7 levels of 9 aliases, ~240 bytes): PyYAML expands 4.8 million strings,
  ours refuses it;
- a flow sequence nested 5,000 deep: PyYAML's scanner looks ahead quadratically, ours refuses it.

Target: the hostile bodies cost milliseconds at most (a ratio far below 0.01), the ordinary one no
more than PyYAML's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import yaml

from kserve_nb.local.apiserver.codec import _jsonable, decode_body
from kserve_nb.local.apiserver.failures import ApiError

MANIFEST = yaml.safe_dump({
    "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
    "metadata": {"name": "sklearn-iris", "namespace": "kserve-test",
                 "annotations": {"serving.kserve.io/enable-tag-routing": "true"}},
    "spec": {"predictor": {"canaryTrafficPercent": 10, "model": {
        "modelFormat": {"name": "sklearn"}, "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model-2"}}},
}).encode()
BOMB = ("".join(f"{n}: &{n} [{','.join(['*' + p] * 9) if p else ','.join(['x'] * 9)}]\n"
                for p, n in zip([""] + list("abcdef"), "abcdefg"))).encode()
DEEP = ("[" * 5000 + "]" * 5000).encode()


def pyyaml(body: bytes) -> Any:
    """The decoder before: PyYAML's SafeLoader, then the same JSON conversion."""
    try:
        return _jsonable(yaml.load(body, Loader=yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError, ApiError) as exc:
        return exc


def ours(body: bytes) -> Any:
    try:
        return decode_body(body, "application/yaml")
    except ApiError as exc:
        return exc


def median_seconds(fn: Callable[[bytes], Any], body: bytes, repeat: int) -> tuple[float, str]:
    times, outcome = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(body)
        times.append(time.perf_counter() - started)
        outcome = f"refused ({type(result).__name__})" if isinstance(result, Exception) else "decoded"
    return statistics.median(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'body':<27} {'bytes':>6}  {'PyYAML SafeLoader':<36} {'decode_body':<31} {'ratio':>7}")
    for name, body, repeat in (("InferenceService manifest", MANIFEST, 200 * args.repeat),
                               ("alias bomb (9**7)", BOMB, args.repeat), ("flow nested 5,000 deep", DEEP, args.repeat)):
        before, what_before = median_seconds(pyyaml, body, repeat)
        after, what_after = median_seconds(ours, body, repeat)
        print(f"{name:<27} {len(body):>6}  {before * 1e3:>9.2f} ms {what_before:<23} "
              f"{after * 1e3:>8.3f} ms {what_after:<19} {after / before:>7.4f}")


if __name__ == "__main__":
    main()
