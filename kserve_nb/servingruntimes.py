"""KServe's ServingRuntime selection for a predictor's ``model`` (pure; used by the local controller).

The local cluster holds the ClusterServingRuntimes KServe installs (``config/runtimes``), as data:
their supported model formats (name, version, ``autoSelect``, ``priority``) and protocol versions.
:func:`select_runtime` plays KServe's ``reconcileModel``: a named ``model.runtime`` must exist and
support the model's format (and protocol version, when one is given); an unnamed one is
auto-selected among the runtimes whose format entry has ``autoSelect`` and that serve the model's
protocol (``v1`` unless set), the highest ``priority`` first. A failure carries KServe's exact
``modelStatus`` reason and message and the error its controller reports in an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: (format name, version or None, autoSelect, priority or None)
Format = tuple[str, "str | None", bool, "int | None"]


@dataclass(frozen=True)
class ClusterServingRuntime:
    """The parts of a ClusterServingRuntime spec that runtime selection reads."""

    name: str
    formats: tuple[Format, ...]
    protocols: tuple[str, ...]
    multi_node: bool = False

    def supports_protocol(self, protocol: str) -> bool:
        """``IsProtocolVersionSupported``: a runtime listing no protocols serves v1 only."""
        return protocol in (self.protocols or ("v1",))

    def priority(self, fmt: str) -> int | None:
        """``GetPriority``: the priority of the first entry for ``fmt`` that has one."""
        for name, _version, _auto, prio in self.formats:
            if name == fmt and prio is not None:
                return prio
        return None


# ClusterServingRuntimes KServe 0.21 ships (config/runtimes/kustomization.yaml), in that order.
CLUSTER_SERVING_RUNTIMES: tuple[ClusterServingRuntime, ...] = (
    ClusterServingRuntime("kserve-tensorflow-serving",
                          (("tensorflow", "1", True, 2), ("tensorflow", "2", True, 2)), ("v1", "grpc-v1")),
    ClusterServingRuntime("kserve-sklearnserver", (("sklearn", "1", True, 1),), ("v1", "v2")),
    ClusterServingRuntime("kserve-predictiveserver",
                          (("sklearn", "1", False, 3), ("xgboost", "2", False, 3), ("lightgbm", "4", False, 3)),
                          ("v1", "v2")),
    ClusterServingRuntime("kserve-mlserver", (
        ("sklearn", "0", True, 2), ("sklearn", "1", True, 2), ("xgboost", "1", True, 2), ("xgboost", "2", True, 2),
        ("lightgbm", "3", True, 2), ("lightgbm", "4", True, 2), ("mlflow", "1", True, 1), ("mlflow", "2", True, 1),
    ), ("v2",)),
    ClusterServingRuntime("kserve-xgbserver", (("xgboost", "2", True, 1),), ("v1", "v2")),
    ClusterServingRuntime("kserve-tritonserver", (
        ("tensorrt", "8", True, 1), ("tensorflow", "1", True, 1), ("tensorflow", "2", True, 1),
        ("onnx", "1", True, 1), ("pytorch", "1", False, None), ("triton", "2", True, 1),
    ), ("v2", "grpc-v2")),
    ClusterServingRuntime("kserve-pmmlserver", (("pmml", "3", True, 1), ("pmml", "4", True, 1)), ("v1", "v2")),
    ClusterServingRuntime("kserve-paddleserver", (("paddle", "2", True, 1),), ("v1", "v2")),
    ClusterServingRuntime("kserve-lgbserver", (("lightgbm", "4", True, 1),), ("v1", "v2")),
    ClusterServingRuntime("kserve-torchserve", (("pytorch", "1", True, 2),), ("v1", "v2", "grpc-v2")),
    ClusterServingRuntime("kserve-huggingfaceserver", (("huggingface", "1", True, 1),), ("v2", "v1")),
    ClusterServingRuntime("kserve-huggingfaceserver-multinode", (("huggingface", "1", True, 2),), ("v2", "v1"),
                          multi_node=True),
    ClusterServingRuntime("kserve-autogluonserver", (("autogluon", "1", True, 1),), ("v1", "v2")),
    ClusterServingRuntime("kserve-vllmserver", (("vLLM", "1", True, 1),), ()),
)
BY_NAME = {rt.name: rt for rt in CLUSTER_SERVING_RUNTIMES}

# GetProtocolVersionInt: the lowest of a runtime's protocols decides its place in the list.
_PROTOCOL_RANK = {"v1": 1, "v2": 2, "grpc-v1": 3, "grpc-v2": 4}


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime the predictor runs on (``status.clusterServingRuntimeName``)."""

    name: str
    protocol: str  # the model's protocolVersion, or the runtime's first when none is given


@dataclass(frozen=True)
class RuntimeFailure:
    """Why no runtime serves the predictor: ``modelStatus.lastFailureInfo`` and the event text."""

    reason: str  # RuntimeNotRecognized | NoSupportingRuntime
    message: str  # lastFailureInfo.message
    error: str  # the reconcile error KServe's controller reports (Warning InternalError event)


def _format_label(fmt: Mapping[str, Any]) -> str:
    version = fmt.get("version")
    return f"mt:{fmt.get('name')}" + (f":{version}" if version is not None else "")


def _supports(runtime: ClusterServingRuntime, fmt: Mapping[str, Any], named: bool) -> bool:
    # RuntimeSupportsModel: with a named runtime every format entry counts, else only autoSelect ones.
    labels = set()
    for name, version, auto, _prio in runtime.formats:
        if named or auto:
            labels.add(f"mt:{name}")
            if version is not None:
                labels.add(f"mt:{name}:{version}")
    return _format_label(fmt) in labels


def _protocol_rank(runtime: ClusterServingRuntime) -> int:
    return min((_PROTOCOL_RANK.get(p, 0) for p in runtime.protocols), default=0)


def _go_format(fmt: Mapping[str, Any]) -> str:
    # How Go's %v prints a ModelFormat{Name string; Version *string}: a nil version is <nil>; a set
    # one prints as a pointer address there, shown here as the version itself (an address says nothing).
    version = fmt.get("version")
    shown = "<nil>" if version is None else version
    return f"{{{fmt.get('name', '')} {shown}}}"


def select_runtime(model: Mapping[str, Any], multi_node: bool = False) -> RuntimeChoice | RuntimeFailure:
    """KServe's runtime lookup for ``spec.predictor.model`` (``reconcileModel``)."""
    fmt = model.get("modelFormat") or {}
    protocol = model.get("protocolVersion")
    named = model.get("runtime")
    if named:
        runtime = BY_NAME.get(str(named))
        if runtime is None:
            return RuntimeFailure("RuntimeNotRecognized", "Waiting for runtime to become available",
                                  f"No ServingRuntimes or ClusterServingRuntimes with the name: {named}")
        if protocol is not None and not runtime.supports_protocol(str(protocol)):
            return RuntimeFailure(
                "NoSupportingRuntime",
                "Specified runtime does not support specified protocol version",
                f"specified runtime {named} does not support specified protocol version",
            )
        if not _supports(runtime, fmt, named=True):
            return RuntimeFailure(
                "NoSupportingRuntime",
                "Specified runtime does not support specified framework/version",
                f"specified runtime {named} does not support specified framework/version",
            )
        return RuntimeChoice(runtime.name, str(protocol) if protocol else _default_protocol(runtime))
    wanted = str(protocol) if protocol else "v1"
    candidates = [rt for rt in CLUSTER_SERVING_RUNTIMES
                  if rt.multi_node == multi_node and _supports(rt, fmt, named=False) and rt.supports_protocol(wanted)]
    # Listed by protocol rank then name (they share a creation time), then stably by priority, highest first.
    candidates.sort(key=lambda rt: (_protocol_rank(rt), rt.name))
    name = str(fmt.get("name", ""))
    with_priority = [rt for rt in candidates if rt.priority(name) is not None]
    with_priority.sort(key=lambda rt: -(rt.priority(name) or 0))
    ordered = with_priority + [rt for rt in candidates if rt.priority(name) is None]
    if not ordered:
        return RuntimeFailure("NoSupportingRuntime", "No runtime found to support specified framework/version",
                              f"no runtime found to support predictor with model type: {_go_format(fmt)}")
    return RuntimeChoice(ordered[0].name, str(protocol) if protocol else _default_protocol(ordered[0]))


def _default_protocol(runtime: ClusterServingRuntime) -> str:
    ranked = sorted(runtime.protocols, key=lambda p: _PROTOCOL_RANK.get(p, 0))
    return ranked[0] if ranked else "v1"
