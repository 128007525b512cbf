"""Where the local cluster finds model files: ``storageUri`` resolution and the local mirror.

A real KServe pod runs a storage initializer that downloads ``spec.predictor.model.storageUri`` into
``/mnt/models``. The local cluster never touches the network, so:

- ``file:///abs/path`` and plain local paths (absolute, or relative to the daemon's cwd) are used
  in place;
- ``gs://bucket/p``, ``s3://bucket/p`` and ``http(s)://host/p`` are served from a local mirror at
  ``{state_dir}/storage/{scheme}/{bucket-or-host}/{p}``; anything missing there is an error that says
  where to copy the files.

:func:`seed_mirror` puts the two models of KServe's canary walkthrough into the mirror
(``gs://kfserving-examples/models/sklearn/1.0/model`` and ``…/model-2``), trained here on the iris
data set that ships inside scikit-learn, so the walkthrough runs offline; and next to them the
fault-injected candidates of :data:`FAULT_MODELS` (``gs://kserve-nb-faults/sklearn/…``, see
:mod:`kserve_nb.local.faults`), so a canary judge can be shown catching a bad model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Model file suffixes KServe's sklearn server accepts (``sklearnserver/model.py``).
MODEL_EXTENSIONS = (".joblib", ".pkl", ".pickle")

#: Schemes served from the local mirror directory.
MIRRORED_SCHEMES = ("gs", "s3", "https", "http")

#: Fault-injected candidates: mirror URI → :class:`~kserve_nb.local.faults.FaultyModel` parameters.
#: Each wraps the walkthrough's first model, so its fault is its only difference from it.
FAULT_MODELS: dict[str, dict[str, float]] = {
    "gs://kserve-nb-faults/sklearn/iris-errors": {"error_rate": 0.25},  # 25% of requests answer 500
    "gs://kserve-nb-faults/sklearn/iris-errors-3pct": {"error_rate": 0.03},
    "gs://kserve-nb-faults/sklearn/iris-slow": {"latency_ms": 50.0},  # +50 ms per request
    "gs://kserve-nb-faults/sklearn/iris-flip": {"flip_rate": 0.30},  # 30% of predictions changed
    "gs://kserve-nb-faults/sklearn/iris-control": {},  # no fault: the first model again, for A/A
}

#: Every seeded model, relative to the mirror root → what is written there: the walkthrough's
#: two models (``svc``, ``tree``) and the fault models (their URI).
SEED_MODELS = {
    "gs/kfserving-examples/models/sklearn/1.0/model/model.joblib": "svc",
    "gs/kfserving-examples/models/sklearn/1.0/model-2/model.joblib": "tree",
    # KServe's e2e "mixed type" model (house prices from string and number columns): it answers
    # iris rows with HTTP 500, which is how KServe's Standard-mode canary test tells the sides apart.
    "gs/kfserving-examples/models/sklearn/1.3/mixedtype/model.joblib": "mixedtype",
    **{uri.replace("://", "/", 1) + "/model.joblib": uri for uri in FAULT_MODELS},
}

# Bump when the seeded models change, so an old mirror is re-seeded.
_SEED_FORMAT = 3

_README = """\
This directory is a local mirror of remote model storage, kept by the kserve-nb local cluster.

The local cluster never downloads anything. A storageUri such as
    gs://bucket/path, s3://bucket/path, https://host/path
is read from
    {root}/<scheme>/<bucket-or-host>/<path>
so to serve your own model, copy its directory (holding exactly one .joblib, .pkl or
.pickle file) to the matching place here, or use a file:///absolute/path storageUri.

The two models of KServe's canary walkthrough were written here by kserve-nb
(gs://kfserving-examples/models/sklearn/1.0/model and .../model-2), trained
deterministically on scikit-learn's bundled iris data set. `.seed-stamp` records the
scikit-learn version they were trained with; they are re-trained when it changes.

Next to them, fault-injected candidates for showing a canary judge at work (each is the
first model wrapped in kserve_nb.local.faults.FaultyModel; serving them needs kserve-nb):
    gs://kserve-nb-faults/sklearn/iris-errors       25% of requests answer HTTP 500
    gs://kserve-nb-faults/sklearn/iris-errors-3pct   3% of requests answer HTTP 500
    gs://kserve-nb-faults/sklearn/iris-slow         +50 ms per request
    gs://kserve-nb-faults/sklearn/iris-flip         30% of predictions changed to another class
    gs://kserve-nb-faults/sklearn/iris-control      no fault (the first model again, for A/A)

And KServe's e2e model gs://kfserving-examples/models/sklearn/1.3/mixedtype: a pipeline
over ten named house-sale columns (strings and numbers) predicting the log sale price,
trained here on deterministic synthetic rows with the columns of KServe's model (its
predictions differ from KServe's). Iris rows make it answer HTTP 500, as KServe's does.
"""


class StorageError(Exception):
    """A ``storageUri`` cannot be served locally; ``message`` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def mirror_root(state_dir: Path) -> Path:
    """Return the root directory of the local storage mirror under ``state_dir``."""
    return Path(state_dir) / "storage"


def resolve_storage_uri(uri: str, state_dir: Path) -> Path:
    """Map a ``storageUri`` to an existing local path (a model directory or a model file).

    Parameters
    ----------
    uri:
        ``file:///abs/path``, a plain local path, or ``gs://``, ``s3://``, ``http(s)://`` URIs that
        are looked up in the mirror at ``{state_dir}/storage/{scheme}/{bucket-or-host}/{path}``.
    state_dir:
        The local cluster's state directory.

    Raises
    ------
    StorageError
        For unsupported schemes (``pvc://``, ``hf://``, ``oci://`` …) or a path that does not exist.
    """
    uri = uri.strip()
    if not uri:
        raise StorageError("storageUri is empty: set spec.predictor.model.storageUri")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _existing(uri, _file_uri_path(uri, parts.netloc, parts.path))
    if scheme in MIRRORED_SCHEMES:
        return _existing(uri, _mirror_path(uri, state_dir, scheme, parts.netloc, parts.path))
    if not scheme or _looks_like_windows_drive(scheme, uri):
        return _existing(uri, Path(uri).expanduser().resolve())
    raise StorageError(
        f"unsupported storageUri scheme '{scheme}://' in '{uri}': the local cluster supports "
        f"file:///absolute/path, plain local paths, and gs://, s3://, http:// and https:// URIs "
        f"served from its local mirror at {mirror_root(state_dir)}"
    )


def find_model_file(path: Path) -> Path:
    """Pick the model file the way KServe's sklearn server does.

    ``path`` may be a model file (``.joblib``, ``.pkl`` or ``.pickle``) or a directory holding exactly
    one such file at its top level.

    Raises
    ------
    StorageError
        When the file has another suffix, or the directory holds zero or several model files.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix in MODEL_EXTENSIONS:
            return path
        raise StorageError(
            f"Unsupported model file {path}: KServe's sklearn server loads one of "
            f"{', '.join(MODEL_EXTENSIONS)}"
        )
    if not path.is_dir():
        raise StorageError(f"Missing model file in model directory {path}: it does not exist")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MODEL_EXTENSIONS)
    if not found:
        raise StorageError(
            f"Missing model file in model directory {path}: expected exactly one "
            f"{', '.join(MODEL_EXTENSIONS)} file at its top level"
        )
    if len(found) > 1:
        names = [str(p) for p in found]
        raise StorageError(
            f"More than one model file is detected, Only one is allowed within model_dir: {names}"
        )
    return found[0]


def model_file(uri: str, state_dir: Path) -> Path:
    """The model file a ``storageUri`` names on this cluster: :func:`resolve_storage_uri`, then
    :func:`find_model_file` (what the model server will load). Raises :class:`StorageError`."""
    return find_model_file(resolve_storage_uri(uri, state_dir))


def seed_mirror(state_dir: Path) -> None:
    """Write the walkthrough's two sklearn models and the fault models into the local mirror (idempotent).

    Both are trained deterministically on ``sklearn.datasets.load_iris()``: ``model`` is an
    ``SVC(gamma="scale")`` like KServe's example model, ``model-2`` a depth-2 decision tree. Both
    predict ``[1, 1]`` for the walkthrough's ``iris-input.json`` and they disagree on 8 of the 150
    iris rows (5.3 %), so a canary comparison has something to find. Returns at once when the mirror
    was already seeded with this scikit-learn version.
    """
    root = mirror_root(state_dir)
    stamp = root / ".seed-stamp"
    expected = _seed_stamp()
    if stamp.is_file() and stamp.read_text() == expected and _seeds_present(root):
        return
    root.mkdir(parents=True, exist_ok=True)
    _atomic_write(root / "README.txt", _README.format(root=root).encode())
    models = _train_seed_models()
    for rel, kind in SEED_MODELS.items():
        _atomic_dump(models[kind], root / rel)
    _atomic_write(stamp, expected.encode())


# --- helpers -------------------------------------------------------------------------------


def _existing(uri: str, path: Path) -> Path:
    try:
        if path.exists():
            return path
    except ValueError:  # an embedded NUL byte (``%00``): no file system path has one
        raise StorageError(f"storageUri '{uri}' holds a NUL character: no model can live there") from None
    raise StorageError(
        f"storageUri '{uri}' not found: {path} does not exist. Copy your model dir to {path}, "
        f"or use a file:///absolute/path URI"
    )


def _file_uri_path(uri: str, netloc: str, path: str) -> Path:
    if netloc not in ("", "localhost"):
        raise StorageError(
            f"file URI '{uri}' names host '{netloc}': use file:///absolute/path (three slashes)"
        )
    if not path.startswith("/"):
        raise StorageError(f"file URI '{uri}' must hold an absolute path: file:///absolute/path")
    return Path(unquote(path))


def _mirror_path(uri: str, state_dir: Path, scheme: str, netloc: str, path: str) -> Path:
    if not netloc:
        raise StorageError(f"storageUri '{uri}' has no bucket or host: use {scheme}://bucket/path")
    # Decode first, then judge: ``..%2f`` is ``../`` to the file system. Then resolve (symlinks
    # too) and require the result to stay inside the mirror, whatever the URI spells; the refusal
    # names no path outside it, so it tells nothing about what exists there.
    segments = [s for s in unquote(path).split("/") if s]
    if any(s in ("..", ".") for s in segments) or netloc in ("..", "."):
        raise StorageError(f"storageUri '{uri}' may not contain '.' or '..' path segments (encoded or not)")
    root = mirror_root(state_dir).resolve()
    try:
        resolved = root.joinpath(scheme, netloc, *segments).resolve()
    except ValueError:  # an embedded NUL byte
        raise StorageError(f"storageUri '{uri}' holds a NUL character: no model can live there") from None
    if not resolved.is_relative_to(root):
        raise StorageError(
            f"storageUri '{uri}' leads outside the local storage mirror at {root}: copy the model into "
            f"the mirror, or use a file:///absolute/path URI"
        )
    return resolved


def _looks_like_windows_drive(scheme: str, uri: str) -> bool:
    # "C:\\models" parses with scheme "c"; treat single-letter schemes as local paths.
    return len(scheme) == 1 and uri[1:2] == ":"


def _seed_stamp() -> str:
    # Read the version from the package metadata: importing scikit-learn costs seconds, and the
    # stamp is checked on every start.
    from importlib.metadata import version

    return f"format={_SEED_FORMAT} sklearn={version('scikit-learn')}\n"


def _seeds_present(root: Path) -> bool:
    return all((root / rel).is_file() for rel in SEED_MODELS)


def _train_seed_models() -> dict[str, object]:
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    from kserve_nb.local.faults import FaultyModel

    x, y = load_iris(return_X_y=True)
    svc = SVC(gamma="scale", random_state=0).fit(x, y)
    models: dict[str, object] = {
        "svc": svc,
        "tree": DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, y),
    }
    models["mixedtype"] = _train_mixedtype_model()
    for i, (uri, params) in enumerate(FAULT_MODELS.items()):
        models[uri] = FaultyModel(
            svc,
            latency_ms=params.get("latency_ms", 0.0),
            error_rate=params.get("error_rate", 0.0),
            flip_rate=params.get("flip_rate", 0.0),
            seed=1000 + i,
        )
    return models


#: The columns of KServe's ``sklearn/1.3/mixedtype`` model (``sklearnserver/test_model.py``).
MIXEDTYPE_CATEGORIES = {
    "MSZoning": ["RL", "RM", "FV", "RH", "C (all)"],
    "LotShape": ["Reg", "IR1", "IR2", "IR3"],
    "Utilities": ["AllPub", "NoSeWa"],
    "Neighborhood": ["CollgCr", "Veenker", "Crawfor", "NoRidge", "Mitchel", "Somerst", "OldTown"],
    "SaleType": ["WD", "New", "COD", "ConLD"],
}
MIXEDTYPE_NUMBERS = ("LotArea", "YrSold", "OverallQual", "YearBuilt", "GarageArea")


def _train_mixedtype_model() -> object:
    """A column-transformer pipeline over named string and number columns, like KServe's mixedtype.

    Fitted on 400 deterministic synthetic sales whose log price grows with quality, area and age;
    it needs a table with those column names (the sklearn server builds one from ``instances`` given
    as objects), so a plain row of numbers fails to predict — an HTTP 500 from the model server.
    """
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.RandomState(13)
    n = 400
    frame = pd.DataFrame({name: rng.choice(values, n) for name, values in MIXEDTYPE_CATEGORIES.items()})
    frame["LotArea"] = rng.randint(1300, 21000, n)
    frame["YrSold"] = rng.randint(2006, 2011, n)
    frame["OverallQual"] = rng.randint(1, 11, n)
    frame["YearBuilt"] = rng.randint(1900, 2010, n)
    frame["GarageArea"] = rng.randint(0, 1000, n)
    log_price = (
        11.0
        + 0.1 * frame["OverallQual"]
        + 0.00002 * frame["LotArea"]
        + 0.004 * (frame["YearBuilt"] - 1900)
        + 0.0003 * frame["GarageArea"]
        + rng.normal(0, 0.05, n)
    )
    pipeline = Pipeline([
        ("columns", ColumnTransformer([
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(MIXEDTYPE_CATEGORIES)),
            ("numbers", StandardScaler(), list(MIXEDTYPE_NUMBERS)),
        ])),
        ("regressor", Ridge(alpha=1.0)),
    ])
    return pipeline.fit(frame, log_price)


def _atomic_dump(obj: object, dest: Path) -> None:
    import joblib

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        joblib.dump(obj, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
