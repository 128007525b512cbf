"""The client's view of the local cluster: its Kubernetes API plus what only it can answer.

``session.connect`` builds a :class:`LocalApiCluster` when it starts or finds the local cluster;
everything else in the client talks to it through :class:`~kserve_nb.cluster.Cluster`'s interface,
so nothing in the client branches on "local or real" to ask, e.g., whether a storageUri can be
served.
"""

from __future__ import annotations

import os
from typing import Any

from kserve_nb import errors
from kserve_nb.cluster import Cluster, ClusterRef, kubeconfig_client
from kserve_nb.local import storage
from kserve_nb.local.manager import LocalCluster


class LocalApiCluster(Cluster):
    """The Kubernetes API of a running local cluster (``local``), reached like any other cluster."""

    def __init__(self, api_client: Any, ref: ClusterRef, local: LocalCluster) -> None:
        super().__init__(api_client, ref)
        self.local = local

    @classmethod
    def attach(
        cls,
        local: LocalCluster,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        namespace: str | None = None,
    ) -> LocalApiCluster:
        """The API of ``local`` through ``kubeconfig``/``context`` (default: the kubeconfig it wrote)."""
        api_client, ref = kubeconfig_client(kubeconfig or local.kubeconfig, context, namespace, "local")
        return cls(api_client, ref, local)

    def preflight_storage_uri(self, uri: str) -> str:
        """The syntax check, then the model file must be in this cluster's storage mirror (or at
        the ``file://`` path): the local cluster never downloads, so a missing file would only
        surface as a failed revision."""
        uri = super().preflight_storage_uri(uri)
        try:
            storage.model_file(uri, self.local.state_dir)
        except storage.StorageError as err:
            raise errors.ValidationError(f"storageUri {uri}: {err}; nothing was applied") from err
        return uri
