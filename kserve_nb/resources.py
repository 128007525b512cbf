"""Pure InferenceService vocabulary shared by the client and the local cluster.

Names, URLs and the ``kubectl get isvc`` printer columns exactly as KServe and Knative form them.
Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"

#: ``kubectl``'s name of the resource, as in ``inferenceservice.serving.kserve.io/NAME created``.
KUBECTL_RESOURCE = f"{KIND.lower()}.{GROUP}"

KNATIVE_GROUP = "serving.knative.dev"
KNATIVE_VERSION = "v1"
KNATIVE_API_VERSION = f"{KNATIVE_GROUP}/{KNATIVE_VERSION}"

TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
STOP_ANNOTATION = "serving.kserve.io/stop"
STORAGE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
COMPONENT_LABEL = "component"
REVISION_LABEL = "serving.knative.dev/revision"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
CONFIGURATION_GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
KNATIVE_SERVICE_LABEL = "serving.knative.dev/service"
ROLLOUT_DURATION_ANNOTATION = "serving.knative.dev/rollout-duration"
MIN_SCALE_ANNOTATION = "autoscaling.knative.dev/min-scale"
MAX_SCALE_ANNOTATION = "autoscaling.knative.dev/max-scale"

# Annotations KServe never copies from the isvc into the Knative revision template
# (constants.ServiceAnnotationDisallowedList).
TEMPLATE_ANNOTATION_DISALLOWED = frozenset(
    {
        MIN_SCALE_ANNOTATION,
        MAX_SCALE_ANNOTATION,
        STORAGE_URI_ANNOTATION,
        LAST_APPLIED_ANNOTATION,
        "modelFormat",
        # moved to the ksvc's own metadata, not the template
        ROLLOUT_DURATION_ANNOTATION,
    }
)

DEFAULT_DOMAIN = "example.com"
#: The kubeconfig context (and cluster, user) the local cluster writes, and its node's name.
LOCAL_CONTEXT = "kserve-nb-local"
DNS_LABEL_MAX = 63

# Deployment modes: the classic canary exists only in Knative mode.
KNATIVE_MODES = frozenset({"Knative", "Serverless"})
RAW_MODES = frozenset({"Standard", "RawDeployment"})


def predictor_name(isvc_name: str) -> str:
    """Knative Service / Route name of the predictor component: ``{isvc}-predictor``."""
    return f"{isvc_name}-predictor"


def revision_name(isvc_name: str, number: int) -> str:
    """Knative revision name: ``{isvc}-predictor-0000N``."""
    return f"{predictor_name(isvc_name)}-{number:05d}"


def revision_number(revision: str) -> int:
    """The N of ``…-predictor-0000N`` (0 when the name has no numeric suffix)."""
    tail = revision.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def predictor_host(isvc_name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """Host of the predictor's Knative route: ``{isvc}-predictor.{ns}.{domain}``."""
    return f"{predictor_name(isvc_name)}.{namespace}.{domain}"


def service_host(isvc_name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """Top-level host of the InferenceService: ``{isvc}.{ns}.{domain}``."""
    return f"{isvc_name}.{namespace}.{domain}"


def tag_host(tag: str, isvc_name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """Host of a tagged traffic target: ``{tag}-{isvc}-predictor.{ns}.{domain}``."""
    return f"{tag}-{predictor_name(isvc_name)}.{namespace}.{domain}"


def tag_label_too_long(isvc_name: str, tag: str = "latest") -> bool:
    """True when ``{tag}-{isvc}-predictor`` exceeds the 63-character DNS label limit (kserve#2428)."""
    return len(f"{tag}-{predictor_name(isvc_name)}") > DNS_LABEL_MAX


def cluster_local_host(name: str, namespace: str, cluster_domain: str = "cluster.local") -> str:
    """In-cluster host of a Service: ``{name}.{ns}.svc.{cluster_domain}``."""
    return f"{name}.{namespace}.svc.{cluster_domain}"


# The alphabet Kubernetes' rand.SafeEncodeString uses for pod-template-hash labels and generated
# name suffixes (no vowels, no look-alike digits), so emulated names look like a cluster's.
K8S_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def pod_template_hash(template_hash: str, length: int = 10) -> str:
    """A Kubernetes-looking ``pod-template-hash`` label of ``length`` characters for a template's hash.

    ``template_hash`` is :func:`kserve_nb.semantics.template_hash` of the pod (or revision) template;
    the label changes exactly when it does.
    """
    digest = hashlib.sha256(template_hash.encode()).digest()
    return "".join(K8S_NAME_ALPHABET[b % len(K8S_NAME_ALPHABET)] for b in digest[:length])


def deployment_mode(isvc: Mapping[str, Any]) -> str:
    """The isvc's deployment mode: status first, then annotation, else Knative (KServe's default config)."""
    status_mode = (isvc.get("status") or {}).get("deploymentMode")
    if status_mode:
        return str(status_mode)
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    if mode == "Serverless":
        return "Knative"
    if mode == "RawDeployment":
        return "Standard"
    return str(mode) if mode else "Knative"


def tag_routing_enabled(isvc: Mapping[str, Any]) -> bool:
    """Whether ``serving.kserve.io/enable-tag-routing`` is exactly the string ``"true"``."""
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return annotations.get(TAG_ROUTING_ANNOTATION) == "true"


def _traffic(isvc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = isvc.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    return list(predictor.get("traffic") or [])


def _first(entries: list[Mapping[str, Any]], pred: Any, field: str) -> Any:
    # The API server's table converter uses only the first JSONPath match.
    for entry in entries:
        if pred(entry):
            return entry.get(field)
    return None


def condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    """The status condition of type ``ctype``, or None."""
    conditions: list[Mapping[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond
    return None


def printer_columns(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """Values of KServe's ``kubectl get isvc`` printer columns (AGE excluded).

    Mirrors the CRD's ``additionalPrinterColumns`` JSONPaths: PREV/PREVROLLEDOUTREVISION come from the
    traffic entry tagged ``prev``, LATEST/LATESTREADYREVISION from the first ``latestRevision: true`` entry.
    Missing values are ``None`` (kubectl prints an empty cell).
    """
    traffic = _traffic(isvc)
    ready = condition(isvc, "Ready")
    is_prev = lambda e: e.get("tag") == "prev"  # noqa: E731
    is_latest = lambda e: e.get("latestRevision") is True  # noqa: E731
    return {
        "NAME": (isvc.get("metadata") or {}).get("name"),
        "URL": (isvc.get("status") or {}).get("url"),
        "READY": ready.get("status") if ready else None,
        "PREV": _first(traffic, is_prev, "percent"),
        "LATEST": _first(traffic, is_latest, "percent"),
        "PREVROLLEDOUTREVISION": _first(traffic, is_prev, "revisionName"),
        "LATESTREADYREVISION": _first(traffic, is_latest, "revisionName"),
    }


#: The header ``kubectl get isvc`` prints for :data:`ISVC_COLUMNS` (plus NAME), as the client's tables name them.
ISVC_TABLE_COLUMNS = (
    "NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE",
)

ISVC_COLUMNS = (
    ("URL", "string", ".status.url"),
    ("Ready", "string", ".status.conditions[?(@.type=='Ready')].status"),
    ("Prev", "integer", ".status.components.predictor.traffic[?(@.tag=='prev')].percent"),
    ("Latest", "integer", ".status.components.predictor.traffic[?(@.latestRevision==true)].percent"),
    (
        "PrevRolledoutRevision",
        "string",
        ".status.components.predictor.traffic[?(@.tag=='prev')].revisionName",
    ),
    (
        "LatestReadyRevision",
        "string",
        ".status.components.predictor.traffic[?(@.latestRevision==true)].revisionName",
    ),
    ("Age", "date", ".metadata.creationTimestamp"),
)
"""KServe's ``additionalPrinterColumns`` for InferenceService: (name, type, JSONPath)."""


def human_duration(seconds: float) -> str:
    """A duration the way ``kubectl get`` prints AGE (apimachinery ``HumanDuration``).

    About two significant figures: ``79s``, ``5m3s``, ``11m``, ``3h5m``, ``20h``, ``2d4h``, ``30d``,
    ``2y10d``, ``9y``. Up to a second in the future counts as ``0s``; further is ``<invalid>``.
    """
    whole = int(seconds)  # Go's int(d.Seconds()) truncates toward zero
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d" if rest == 0 else f"{days}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y" if rest == 0 else f"{years}y{rest}d"
    return f"{years}y"


def now_rfc3339() -> str:
    """The current UTC time in Kubernetes' RFC 3339 seconds format (``2026-12-02T09:50:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None when missing or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(timestamp: Any, now: datetime | None = None) -> str:
    """kubectl's AGE of an RFC 3339 timestamp (empty when missing or malformed)."""
    when = parse_time(timestamp)
    if when is None:
        return ""
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds())
