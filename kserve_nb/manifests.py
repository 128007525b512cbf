"""Manifests in and out: build an InferenceService, parse and check what a user applies.

Pure (no I/O): the façade (``Session.apply``, ``Service.deploy``) and the checks of every release
step share these, so a percent or a storageUri is judged the same way wherever it comes from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

import yaml

from kserve_nb import errors
from kserve_nb import resources as r

#: storageUri schemes KServe's storage initializer downloads from (a plain absolute path works too).
SUPPORTED_SCHEMES = ("gs", "s3", "https", "http", "pvc", "hf", "oci", "hdfs", "webhdfs", "file")

#: ``(apiVersion, kind)`` of what :func:`validate_document` accepts.
SUPPORTED_KINDS = frozenset({("v1", "Namespace"), ("v1", "ConfigMap"), (r.API_VERSION, r.KIND)})

#: A manifest as the façade accepts it: YAML/JSON text, one object, or several.
Manifest = str | Mapping[str, Any] | Iterable[Mapping[str, Any]]


def check_percent(percent: Any) -> int:
    """``percent`` as an int 0..100, or a ValidationError saying what is allowed."""
    if isinstance(percent, bool) or not isinstance(percent, int):
        if isinstance(percent, float) and percent.is_integer():
            percent = int(percent)
        elif isinstance(percent, str) and percent.strip().isdigit():
            percent = int(percent.strip())
        else:
            raise errors.ValidationError(f"canary percent must be a whole number from 0 to 100, got {percent!r}")
    if not 0 <= percent <= 100:
        raise errors.ValidationError(f"canary percent must be from 0 to 100, got {percent}")
    return int(percent)


def check_storage_uri(uri: Any) -> str:
    """Syntax check of a storageUri (scheme KServe's storage initializer knows, or a path); the
    URI stripped of surrounding blanks."""
    if not isinstance(uri, str) or not uri.strip():
        raise errors.ValidationError("storageUri must be a non-empty string such as gs://bucket/model")
    text = uri.strip()
    if text.startswith("/"):
        return text
    scheme = urlparse(text).scheme
    if scheme not in SUPPORTED_SCHEMES:
        raise errors.ValidationError(
            f"storageUri {text!r} has no supported scheme; use one of "
            + ", ".join(s + "://" for s in SUPPORTED_SCHEMES)
            + " or an absolute path"
        )
    return text


def isvc_manifest(
    name: str,
    namespace: str,
    storage_uri: str,
    *,
    model_format: str = "sklearn",
    tag_routing: bool = False,
    canary_percent: int | None = None,
) -> dict[str, Any]:
    """A minimal Knative-mode InferenceService manifest."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if tag_routing:
        meta["annotations"] = {r.TAG_ROUTING_ANNOTATION: "true"}
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": model_format}, "storageUri": storage_uri}}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {"apiVersion": r.API_VERSION, "kind": r.KIND, "metadata": meta, "spec": {"predictor": predictor}}


def parse_manifest(manifest: Manifest) -> list[dict[str, Any]]:
    """Documents of a YAML/JSON text, a dict, or a list of dicts (safe-loaded; empty docs dropped)."""
    if isinstance(manifest, Mapping):
        docs: list[Any] = [manifest]
    elif isinstance(manifest, str):
        try:
            docs = [d for d in yaml.safe_load_all(manifest) if d is not None]
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise errors.ValidationError(f"malformed YAML{where}: {problem}; nothing was applied") from err
    else:
        docs = list(manifest)
    if not docs:
        raise errors.ValidationError("the manifest is empty; nothing was applied")
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        if isinstance(doc, Mapping) and doc.get("kind") == "List":
            out.extend(json.loads(json.dumps(item)) for item in doc.get("items") or [])
        elif not isinstance(doc, Mapping):
            raise errors.ValidationError(
                f"document {i + 1} is a {type(doc).__name__}, not a Kubernetes object; nothing was applied"
            )
        else:
            out.append(json.loads(json.dumps(doc, default=str)))
    return out


def validate_document(doc: Mapping[str, Any]) -> None:
    """Client-side checks so a bad manifest fails before anything is sent."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not api_version or not kind:
        raise errors.ValidationError("every document needs apiVersion and kind; nothing was applied")
    if (api_version, kind) not in SUPPORTED_KINDS:
        if kind == r.KIND:
            raise errors.ValidationError(
                f"InferenceService apiVersion must be {r.API_VERSION}, got {api_version}; nothing was applied"
            )
        raise errors.ValidationError(
            f"{kind} ({api_version}) is not handled here; use kubectl apply for it. "
            "kserve-nb applies InferenceService, Namespace and ConfigMap; nothing was applied"
        )
    name = (doc.get("metadata") or {}).get("name")
    if not name:
        raise errors.ValidationError(f"{kind} needs metadata.name; nothing was applied")
    if kind != r.KIND:
        return
    predictor = (doc.get("spec") or {}).get("predictor")
    if not isinstance(predictor, Mapping):
        raise errors.ValidationError(f"InferenceService {name} needs spec.predictor; nothing was applied")
    if "canaryTrafficPercent" in predictor:
        value = predictor["canaryTrafficPercent"]
        try:
            if isinstance(value, str):  # the API types it as an integer: "10" is rejected there too
                raise errors.ValidationError(f"canaryTrafficPercent must be an integer, got the string {value!r}")
            check_percent(value)
        except errors.ValidationError as err:
            raise errors.ValidationError(f"InferenceService {name}: {err}; nothing was applied") from err
