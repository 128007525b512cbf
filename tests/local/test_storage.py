"""storageUri resolution, model-file discovery and the seeded walkthrough models."""

from __future__ import annotations

import os
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

from kserve_nb.local.storage import (
    SEED_MODELS,
    StorageError,
    find_model_file,
    mirror_root,
    resolve_storage_uri,
    seed_mirror,
)

WALKTHROUGH_INPUT = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state_dir = tmp_path_factory.mktemp("state")
    seed_mirror(state_dir)
    return state_dir


def _model_dir(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    for name in names:
        (d / name).write_bytes(b"x")
    return d


# --- resolve_storage_uri ------------------------------------------------------------------


def test_file_uri_resolves_to_the_absolute_path(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, "model.joblib")
    assert resolve_storage_uri(f"file://{d}", tmp_path / "state") == d


def test_plain_absolute_and_relative_paths_are_used_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _model_dir(tmp_path, "model.joblib")
    assert resolve_storage_uri(str(d), tmp_path / "state") == d
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_uri("m", tmp_path / "state") == d


@pytest.mark.parametrize(
    ("uri", "relative"),
    [
        ("gs://bucket/models/a", "gs/bucket/models/a"),
        ("s3://bucket/models/a", "s3/bucket/models/a"),
        ("https://example.com/models/a/model.joblib", "https/example.com/models/a/model.joblib"),
        ("http://example.com:8080/a", "http/example.com:8080/a"),
    ],
)
def test_remote_schemes_resolve_into_the_mirror(tmp_path: Path, uri: str, relative: str) -> None:
    target = mirror_root(tmp_path) / relative
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert resolve_storage_uri(uri, tmp_path) == target


def test_missing_mirror_path_says_where_to_copy_the_model(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as err:
        resolve_storage_uri("gs://my-bucket/models/iris", tmp_path)
    expected = mirror_root(tmp_path) / "gs" / "my-bucket" / "models" / "iris"
    message = err.value.message
    assert "gs://my-bucket/models/iris" in message
    assert str(expected) in message
    assert "Copy your model dir to" in message and "file://" in message


def test_missing_local_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        resolve_storage_uri(f"file://{tmp_path}/nope", tmp_path)


@pytest.mark.parametrize("uri", ["pvc://claim/model", "hf://org/model", "oci://registry/model:1"])
def test_unsupported_schemes_list_what_is_supported(tmp_path: Path, uri: str) -> None:
    with pytest.raises(StorageError) as err:
        resolve_storage_uri(uri, tmp_path)
    message = err.value.message
    assert uri in message
    for supported in ("file://", "gs://", "s3://", "https://"):
        assert supported in message


@pytest.mark.parametrize("uri", ["gs://bucket/../../etc", "s3://bucket/a/./b", "file://otherhost/x"])
def test_uris_that_would_escape_or_name_a_host_are_rejected(tmp_path: Path, uri: str) -> None:
    with pytest.raises(StorageError):
        resolve_storage_uri(uri, tmp_path)


# --- find_model_file -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.joblib", "m.pkl", "clf.pickle"])
def test_a_directory_with_one_model_file_yields_it(tmp_path: Path, name: str) -> None:
    d = _model_dir(tmp_path, name, "README.md")
    assert find_model_file(d) == d / name


def test_a_model_file_path_is_used_directly(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, "model.joblib")
    assert find_model_file(d / "model.joblib") == d / "model.joblib"


def test_an_empty_model_directory_is_reported_like_kserve(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, "notes.txt")
    with pytest.raises(StorageError, match="Missing model file in model directory"):
        find_model_file(d)


def test_two_model_files_are_reported_like_kserve(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, "a.joblib", "b.pkl")
    with pytest.raises(StorageError, match="More than one model file is detected, Only one is allowed"):
        find_model_file(d)


def test_a_file_with_another_suffix_is_rejected(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, "model.onnx")
    with pytest.raises(StorageError, match=r"\.joblib"):
        find_model_file(d / "model.onnx")


def test_model_files_in_subdirectories_are_not_considered(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    (d / "sub").mkdir()
    (d / "sub" / "model.joblib").write_bytes(b"x")
    with pytest.raises(StorageError, match="Missing model file"):
        find_model_file(d)


# --- seed_mirror -------------------------------------------------------------------------------


def _load(state_dir: Path, uri: str) -> object:
    return joblib.load(find_model_file(resolve_storage_uri(uri, state_dir)))


def test_seed_writes_both_walkthrough_models_and_a_readme(seeded: Path) -> None:
    root = mirror_root(seeded)
    for rel in SEED_MODELS:
        assert (root / rel).is_file()
    assert "local mirror" in (root / "README.txt").read_text()
    assert not [p for p in root.rglob("*.tmp")], "no temporary files are left behind"


def test_both_seeded_models_answer_the_walkthrough_input_with_versicolor(seeded: Path) -> None:
    for uri in (MODEL_1, MODEL_2):
        model = _load(seeded, uri)
        assert model.predict(WALKTHROUGH_INPUT).tolist() == [1, 1], uri  # type: ignore[attr-defined]


def test_seeded_models_are_different_and_disagree_on_a_few_iris_rows(seeded: Path) -> None:
    m1, m2 = _load(seeded, MODEL_1), _load(seeded, MODEL_2)
    assert type(m1) is not type(m2)
    x, _ = load_iris(return_X_y=True)
    disagreement = float(np.mean(m1.predict(x) != m2.predict(x)))  # type: ignore[attr-defined]
    assert 0.03 <= disagreement <= 0.15


def test_seed_is_idempotent_and_fast_once_seeded(seeded: Path) -> None:
    files = [mirror_root(seeded) / rel for rel in SEED_MODELS]
    before = [f.stat().st_mtime_ns for f in files]
    started = time.perf_counter()
    seed_mirror(seeded)
    assert time.perf_counter() - started < 0.05
    assert [f.stat().st_mtime_ns for f in files] == before


def test_seed_retrains_when_the_stamp_is_stale(tmp_path: Path) -> None:
    seed_mirror(tmp_path)
    stamp = mirror_root(tmp_path) / ".seed-stamp"
    stamp.write_text("format=0 sklearn=0.0\n")
    model = mirror_root(tmp_path) / next(iter(SEED_MODELS))
    os.utime(model, ns=(0, 0))
    seed_mirror(tmp_path)
    assert model.stat().st_mtime_ns != 0
    assert stamp.read_text() != "format=0 sklearn=0.0\n"
