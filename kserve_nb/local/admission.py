"""Admission for the local API server, as pure functions.

Two layers, in the order a real cluster applies them:

1. The API server's own object-meta validation (names, labels), producing ``field errors`` that
   become a 422 ``Invalid`` Status: :func:`validate_object_meta`.
2. KServe's webhooks for InferenceService: the mutating defaulter (:func:`default_inferenceservice`,
   which rewrites the legacy ``spec.predictor.sklearn`` form into ``spec.predictor.model``) and the
   validator (:func:`validate_inferenceservice`). A validator rejection is what a real cluster
   returns for a denied webhook: 403 Forbidden, message
   ``admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: …``.

KServe deliberately does *not* range-check ``canaryTrafficPercent`` and does not require a
``storageUri``; neither do we.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kserve_nb import semantics_standard as ss
from kserve_nb.patches import clone
from kserve_nb.resources import DEPLOYMENT_MODE_ANNOTATION

VALIDATOR_WEBHOOK = "inferenceservice.kserve-webhook-server.validator"
DEFAULTER_WEBHOOK = "inferenceservice.kserve-webhook-server.defaulter"

# ----------------------------------------------------------------------- field errors


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error`` of apimachinery: rendered as ``<field>: <type>: <detail>``."""

    field: str
    reason: str  # StatusCause reason: FieldValueInvalid, FieldValueRequired, ...
    message: str  # the text after "<field>: "

    def render(self) -> str:
        """The error as the API server prints it."""
        return f"{self.field}: {self.message}"

    def cause(self) -> dict[str, str]:
        """The ``StatusCause`` of this error."""
        return {"reason": self.reason, "message": self.message, "field": self.field}


def invalid(field: str, value: Any, detail: str) -> FieldError:
    """``field.Invalid``: ``Invalid value: "<value>": <detail>``."""
    return FieldError(field, "FieldValueInvalid", f"Invalid value: {_go_repr(value)}: {detail}")


def required(field: str, detail: str = "") -> FieldError:
    """``field.Required``."""
    return FieldError(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def not_supported(field: str, value: Any, allowed: list[str]) -> FieldError:
    """``field.NotSupported``."""
    choices = ", ".join(f'"{a}"' for a in allowed)
    return FieldError(field, "FieldValueNotSupported",
                      f"Unsupported value: {_go_repr(value)}: supported values: {choices}")


def too_long(field: str, value: Any, limit: int) -> FieldError:
    """``field.TooLong``."""
    return FieldError(field, "FieldValueTooLong", f"Too long: may not be more than {limit} bytes")


def _go_repr(value: Any) -> str:
    # Go's %#v-ish rendering used by field.Invalid: strings quoted, numbers bare.
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


# --------------------------------------------------------------------- name validation

DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + "(\\." + DNS1123_LABEL + ")*"
DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_RE = re.compile(f"^{DNS1123_LABEL}$")
_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN}$")
_DNS1035_RE = re.compile(f"^{DNS1035_LABEL}$")

_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE = re.compile(f"^{_QUALIFIED_NAME}$")
_LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE}$")


def _name_errors(value: str, limit: int, pattern: Any, explanation: str) -> list[str]:
    # One shape for all of apimachinery's name validators: a length limit, then a regex.
    errors = []
    if len(value) > limit:
        errors.append(f"must be no more than {limit} characters")
    if not pattern.match(value):
        errors.append(explanation)
    return errors


def dns1123_label_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1123 label (empty list when it is)."""
    return _name_errors(
        value, 63, _LABEL_RE,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
        "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
        f"used for validation is '{DNS1123_LABEL}')",
    )


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1123 subdomain (empty list when it is)."""
    return _name_errors(
        value, 253, _SUBDOMAIN_RE,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
        "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
        f"for validation is '{DNS1123_SUBDOMAIN}')",
    )


def dns1035_label_errors(value: str) -> list[str]:
    """Why ``value`` is not an RFC 1035 label (empty list when it is)."""
    return _name_errors(
        value, 63, _DNS1035_RE,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
        f"'abc-123', regex used for validation is '{DNS1035_LABEL}')",
    )


def _qualified_name_errors(key: str) -> list[str]:
    errors: list[str] = []
    prefix, _, name = key.rpartition("/")
    if "/" in key:
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_NAME_RE.match(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
            f"for validation is '{_QUALIFIED_NAME}')"
        )
    return errors


def _label_value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
            f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
        )
    return errors


def validate_object_meta(meta: Mapping[str, Any], *, name_rule: str = "subdomain") -> list[FieldError]:
    """The API server's ``ValidateObjectMeta``: name format, label and annotation keys/values.

    ``name_rule`` is ``subdomain`` (most types, custom resources) or ``label`` (namespaces).
    """
    errors: list[FieldError] = []
    name = meta.get("name")
    if not name:
        errors.append(required("metadata.name", "name or generateName is required"))
    else:
        checker = dns1123_label_errors if name_rule == "label" else dns1123_subdomain_errors
        errors += [invalid("metadata.name", name, msg) for msg in checker(str(name))]
    for key, value in (meta.get("labels") or {}).items():
        errors += [invalid("metadata.labels", key, msg) for msg in _qualified_name_errors(key)]
        errors += [invalid("metadata.labels", value, msg) for msg in _label_value_errors(str(value))]
    annotations = meta.get("annotations") or {}
    total = 0
    for key, value in annotations.items():
        errors += [invalid("metadata.annotations", key, msg) for msg in _qualified_name_errors(key.lower())]
        total += len(key) + len(str(value))
    if total > 256 * 1024:
        errors.append(too_long("metadata.annotations", "", 256 * 1024))
    return errors


# -------------------------------------------------------------- InferenceService defaulting

# Legacy framework keys the defaulter rewrites, in the order of KServe's setPredictorModelDefaults.
LEGACY_FRAMEWORKS = (
    "sklearn",
    "tensorflow",
    "xgboost",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
)
# Frameworks whose legacy form defaults protocolVersion to v2 (assignTritonRuntime & co).
_V2_BY_DEFAULT = frozenset({"triton", "onnx", "huggingface"})

# Field names of KServe's PredictorSpec that count as implementations, as ExactlyOneErrorFor names them
# (all struct fields but the inlined ComponentExtensionSpec).
PREDICTOR_IMPLEMENTATION_FIELDS = (
    "SKLearn", "XGBoost", "Tensorflow", "PyTorch", "Triton", "ONNX", "HuggingFace", "PMML",
    "LightGBM", "Paddle", "Model", "WorkerSpec", "PodSpec",
)
_PREDICTOR_JSON_KEYS = ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
                        "huggingface", "pmml", "lightgbm", "paddle", "model")
KSERVE_CONTAINER = "kserve-container"


def default_inferenceservice(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """KServe's mutating defaulter (the parts that change what a user sees).

    The first legacy framework key found under ``spec.predictor`` becomes
    ``model: {modelFormat: {name: <framework>}, …}`` and is removed; triton/onnx/huggingface get
    ``protocolVersion: v2`` when none is given, and so does a ``model`` whose format is triton.
    The legacy mode annotations are rewritten to their current names (``RawDeployment`` →
    ``Standard``, ``Serverless`` → ``Knative``), as ``DefaultInferenceService`` does, so that
    ``validateCanarySpecs`` — which reads the annotation literally — sees ``Standard``.
    ``spec.canary`` entries are not defaulted (KServe defaults only the components).
    ModelMesh predictors are left alone, as in KServe. Returns a new object.
    """
    out = clone(isvc)
    annotations = (out.get("metadata") or {}).get("annotations") or {}
    if ss.default_mode_annotation(out) is not None:
        annotations[DEPLOYMENT_MODE_ANNOTATION] = ss.STANDARD
    elif annotations.get(DEPLOYMENT_MODE_ANNOTATION) == "Serverless":
        annotations[DEPLOYMENT_MODE_ANNOTATION] = "Knative"
    if annotations.get(DEPLOYMENT_MODE_ANNOTATION) == "ModelMesh":
        return out
    predictor = (out.get("spec") or {}).get("predictor")
    if not isinstance(predictor, dict):
        return out
    for framework in LEGACY_FRAMEWORKS:
        legacy = predictor.get(framework)
        if isinstance(legacy, dict):
            converted = clone(legacy)
            if framework in _V2_BY_DEFAULT and "protocolVersion" not in converted:
                converted["protocolVersion"] = "v2"
            converted["modelFormat"] = {"name": framework}
            predictor["model"] = converted
            del predictor[framework]
            break
    defaulted = predictor.get("model")
    if (
        isinstance(defaulted, dict)
        and "protocolVersion" not in defaulted
        and (defaulted.get("modelFormat") or {}).get("name") == "triton"
    ):
        defaulted["protocolVersion"] = "v2"
    return out


# -------------------------------------------------------------- InferenceService validation


class AdmissionDenied(Exception):
    """A validating webhook rejected the object (the API server answers 403 Forbidden)."""

    def __init__(self, message: str, webhook: str = VALIDATOR_WEBHOOK) -> None:
        super().__init__(message)
        self.webhook = webhook
        self.message = f'admission webhook "{webhook}" denied the request: {message}'


def predictor_implementations(predictor: Mapping[str, Any]) -> list[str]:
    """The implementations a predictor specifies (JSON keys), as KServe counts them."""
    found = [key for key in _PREDICTOR_JSON_KEYS if predictor.get(key) is not None]
    containers = predictor.get("containers") or []
    if containers:
        named = any(isinstance(c, dict) and c.get("name") == KSERVE_CONTAINER for c in containers)
        # Extra containers beside a model are a collocated transformer, not another implementation.
        if named or not found:
            found.append("containers")
    return found


def _exactly_one_message(component: str) -> str:
    return f"exactly one of [{', '.join(PREDICTOR_IMPLEMENTATION_FIELDS)}] must be specified in {component}"


def _validate_name(name: str) -> None:
    if not _DNS1035_RE.match(name):
        raise AdmissionDenied(
            f'the InferenceService "{name}" is invalid: a InferenceService name must consist of lower '
            "case alphanumeric characters or '-', and must start with alphabetical character. "
            f'(e.g. "my-name" or "abc-123", regex used for validation is \'{DNS1035_LABEL}\')'
        )


def _validate_extension(component: Mapping[str, Any]) -> None:
    concurrency = component.get("containerConcurrency")
    if isinstance(concurrency, int) and concurrency < 0:
        raise AdmissionDenied("parallelism cannot be less than 0")
    min_replicas = component.get("minReplicas", 1)
    max_replicas = component.get("maxReplicas", 0)
    if not isinstance(min_replicas, int):
        min_replicas = 1
    if not isinstance(max_replicas, int):
        max_replicas = 0
    if min_replicas < 0:
        raise AdmissionDenied("'MinReplicas' cannot be less than 0")
    if max_replicas < 0:
        raise AdmissionDenied("'MaxReplicas' cannot be less than 0")
    if min_replicas > max_replicas and max_replicas != 0:
        raise AdmissionDenied("'MinReplicas' cannot be greater than MaxReplicas")


def _parse_mode(mode: str) -> str:
    return {"Serverless": "Knative", "RawDeployment": "Standard"}.get(mode, mode)


def validate_inferenceservice(
    isvc: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> None:
    """KServe's validating webhook (create when ``old`` is None, else update).

    Raises :class:`AdmissionDenied` with KServe's message. Checks, in KServe's order: the
    deploymentMode annotation matches ``status.deploymentMode`` of the stored object (update); a
    changed ``predictor.name`` comes with a model change (update); the name is a DNS-1035 label;
    the predictor names no container ``name`` inside a model; exactly one predictor
    implementation; replica and concurrency bounds for each component; then the Standard-mode
    ``spec.canary`` rules (:func:`kserve_nb.semantics_standard.validate_canaries`).
    """
    meta = isvc.get("metadata") or {}
    name = str(meta.get("name") or "")
    if old is not None and not meta.get("deletionTimestamp"):
        status_mode = _parse_mode(str((old.get("status") or {}).get("deploymentMode") or ""))
        annotation_mode = (meta.get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION)
        if status_mode and annotation_mode is not None and annotation_mode != status_mode:
            raise AdmissionDenied(
                f"update rejected: deploymentMode cannot be changed from '{status_mode}' to '{annotation_mode}'"
            )
    if old is not None:
        renamed = ss.validate_name_change(isvc, old)
        if renamed is not None:
            raise AdmissionDenied(renamed)
    _validate_name(name)
    spec = isvc.get("spec") or {}
    predictor = spec.get("predictor") or {}
    for key in _PREDICTOR_JSON_KEYS:
        impl = predictor.get(key)
        if isinstance(impl, dict) and impl.get("name"):
            raise AdmissionDenied("the 'name' field is not allowed in standard predictor")
    if len(predictor_implementations(predictor)) != 1:
        raise AdmissionDenied(_exactly_one_message("PredictorSpec"))
    _validate_extension(predictor)
    for component in ("transformer", "explainer"):
        if isinstance(spec.get(component), dict):
            _validate_extension(spec[component])
    canary_error = ss.validate_canaries(isvc)
    if canary_error is not None:
        raise AdmissionDenied(canary_error)
