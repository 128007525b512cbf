"""User configuration: a traitlets ``Configurable``, set with ``%config KServeNb.<name> = …``."""

from __future__ import annotations

from traitlets import Bool, Enum, Float, Int, Unicode
from traitlets.config import Configurable


class KServeNb(Configurable):
    """Settings of the kserve-nb extension (all optional)."""

    namespace = Unicode(None, allow_none=True, help="Namespace to act in (default: the context's).").tag(config=True)
    context = Unicode(None, allow_none=True, help="kubeconfig context to use.").tag(config=True)
    kubeconfig = Unicode(None, allow_none=True, help="Path of the kubeconfig file.").tag(config=True)
    ingress = Unicode(
        None,
        allow_none=True,
        help="Base URL of the ingress gateway, e.g. http://10.0.0.5:80 (default: $INGRESS_HOST:$INGRESS_PORT).",
    ).tag(config=True)
    prometheus = Unicode(
        None, allow_none=True,
        help="Base URL of the Prometheus with the cluster's metrics, e.g. http://10.0.0.7:9090 (default: "
        "$PROMETHEUS_URL; else the local cluster's own, or a well-known Prometheus Service through the API server).",
    ).tag(config=True)
    local_state_dir = Unicode(
        None,
        allow_none=True,
        help="State dir of the embedded local cluster (default: $KSERVE_NB_HOME or the user data dir).",
    ).tag(config=True)
    wait_timeout = Float(300.0, help="Seconds a release step waits for its intended state.").tag(config=True)
    poll_interval = Float(
        0.0, help="Seconds between status polls while waiting (0: 0.05 locally, 1.0 on real clusters)."
    ).tag(
        config=True
    )
    protocol = Enum(["v1", "v2"], "v1", help="Default inference protocol.").tag(config=True)
    concurrency = Int(32, help="Concurrent requests of send/compare.").tag(config=True)
    request_timeout = Float(30.0, help="Seconds one prediction request may take.").tag(config=True)
    verify_tls = Bool(True, help="Verify TLS certificates of the ingress (keep on for real clusters).").tag(config=True)
    max_step = Int(100, help="Largest traffic change one panel slider move may apply.").tag(config=True)
    confirm_above = Int(50, help="Panel asks for confirmation before setting the canary above this percent.").tag(
        config=True
    )
