"""The local cluster's Kubernetes API server: the HTTP layer over :class:`~kserve_nb.local.store.Store`.

It serves the subset of the Kubernetes API that ``kubectl`` 1.32, the official ``kubernetes``
Python client and KServe's SDK use for InferenceServices (serving.kserve.io/v1beta1), Knative
revisions and services (read-only), the Standard-mode Deployments, Services and Gateway API
HTTPRoutes (read-only), pods and events (read-only), configmaps and namespaces:

- discovery (legacy and aggregated v2), ``/version``, health endpoints, OpenAPI v2 and v3;
- create/get/list/watch/replace/patch/delete, the ``status`` subresource, dry-run;
- JSON merge patch, JSON patch, strategic merge patch for core types (CRDs answer 415 as a real
  server does), server-side apply (ownership tracked per Apply manager), JSON, YAML and (for
  ``kubectl create namespace|configmap``) protobuf bodies, server-side field validation;
- ``meta.k8s.io`` Table output for ``kubectl get`` (also on watches);
- Kubernetes ``Status`` errors with the reasons and message texts of a real cluster, and KServe's
  admission (defaulting the legacy predictor form, validating names and predictors);
- the Services' ``proxy`` subresource (``/api/v1/namespaces/{ns}/services/{[scheme:]name[:port]}/proxy/…``)
  to a ready pod of the Service: the model-server processes the controller reports
  (:class:`~kserve_nb.local.apiserver.proxy.EndpointSource`).

Every request needs ``Authorization: Bearer <token>``; serve it over TLS (:func:`self_signed_tls`),
because kubectl sends a kubeconfig's token only over HTTPS. The controller watches the store; the
API server asks it one thing only, which pods stand behind a Service (for the service proxy).
Entry point: :func:`create_app`.

Modules: ``failures`` (Kubernetes ``Status`` errors), ``selectors``, ``codec`` (content types,
bodies, protobuf), ``requests`` (URLs, query parameters, write helpers), ``server`` (handlers),
``watch``, ``proxy`` (the service proxy), ``tls`` (CA and kubeconfig), ``app`` (middlewares, routes).
"""

from kserve_nb.local.apiserver.app import create_app, ensure_default_namespaces
from kserve_nb.local.apiserver.codec import negotiate
from kserve_nb.local.apiserver.failures import ApiError
from kserve_nb.local.apiserver.requests import parse_resource_path
from kserve_nb.local.apiserver.selectors import parse_label_selector
from kserve_nb.local.apiserver.server import ApiServer
from kserve_nb.local.apiserver.tls import TlsMaterial, kubeconfig, self_signed_tls

__all__ = [
    "ApiError",
    "ApiServer",
    "TlsMaterial",
    "create_app",
    "ensure_default_namespaces",
    "kubeconfig",
    "negotiate",
    "parse_label_selector",
    "parse_resource_path",
    "self_signed_tls",
]
