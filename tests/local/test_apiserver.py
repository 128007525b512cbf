"""The local API server over real HTTPS with raw httpx calls: semantics, errors, watch, tables.

Pure helpers (human durations, JSONPath, pod cells, patches, admission) are tested table-driven
at the end of the module.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import yaml

try:  # the helper sits beside this file; import it whether or not tests/ is a package
    from tests.local.conftest_api import LocalApi, canary_status, isvc_manifest, pod_manifest
except ImportError:  # pragma: no cover - depends on how pytest put this directory on sys.path
    from conftest_api import LocalApi, canary_status, isvc_manifest, pod_manifest  # type: ignore[no-redef]

from kserve_nb import patches
from kserve_nb.local import admission, patch_formats, tables, validation
from kserve_nb.local.apiserver import negotiate, parse_label_selector, parse_resource_path
from kserve_nb.local.store import CONFIGMAPS, INFERENCESERVICES, NAMESPACES, PODS, REVISIONS
from kserve_nb.resources import human_duration

NS = "kserve-test"
ISVC_PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"
TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                "g=meta.k8s.io,application/json")
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def api(tmp_path: Any) -> Iterator[LocalApi]:
    server = LocalApi(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(api: LocalApi) -> Iterator[httpx.Client]:
    with api.client() as client:
        response = client.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": NS}})
        assert response.status_code == 201, response.text
        yield client


def create_isvc(http: httpx.Client, **kwargs: Any) -> dict[str, Any]:
    response = http.post(ISVC_PATH, json=isvc_manifest(**kwargs))
    assert response.status_code == 201, response.text
    return response.json()


def assert_status(response: httpx.Response, code: int, reason: str, message: str | None = None) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == code, response.text
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason
    if message is not None:
        assert body["message"] == message
    return body


# ============================================================================ auth, meta


def test_requests_without_the_bearer_token_are_unauthorized(api: LocalApi) -> None:
    for token in ("", "wrong-token", api.token + "x"):
        with api.client(token=token) as client:
            for path in ("/version", "/healthz", "/api", f"{ISVC_PATH}", "/openapi/v3"):
                body = assert_status(client.get(path), 401, "Unauthorized", "Unauthorized")
                assert "details" not in body
    with api.client(headers={"Authorization": f"Basic {api.token}"}, token="") as client:
        assert client.get("/version").status_code == 401


def test_version_and_health_endpoints(api: LocalApi) -> None:
    with api.client() as client:
        version = client.get("/version").json()
        assert version["gitVersion"] == "v1.32.0" and version["major"] == "1" and version["minor"] == "32"
        for path in ("/healthz", "/livez", "/readyz"):
            response = client.get(path)
            assert response.status_code == 200 and response.text == "ok"


def test_default_namespaces_exist_and_are_active(api: LocalApi) -> None:
    with api.client() as client:
        names = [n["metadata"]["name"] for n in client.get("/api/v1/namespaces").json()["items"]]
        assert names == ["default", "kube-public", "kube-system"]
        ns = client.get("/api/v1/namespaces/default").json()
        assert ns["status"] == {"phase": "Active"}
        assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "default"}


def test_legacy_discovery_lists_resources_with_verbs_and_short_names(api: LocalApi) -> None:
    with api.client() as client:
        assert client.get("/api").json()["versions"] == ["v1"]
        groups = {g["name"]: g for g in client.get("/apis").json()["groups"]}
        assert groups["serving.kserve.io"]["preferredVersion"]["version"] == "v1beta1"
        assert "serving.knative.dev" in groups
        core = {r["name"]: r for r in client.get("/api/v1").json()["resources"]}
        assert core["pods"]["verbs"] == ["get", "list", "watch"]
        assert core["namespaces"]["namespaced"] is False and core["namespaces"]["shortNames"] == ["ns"]
        assert core["configmaps"]["shortNames"] == ["cm"]
        kserve = client.get("/apis/serving.kserve.io/v1beta1").json()
        assert kserve["groupVersion"] == "serving.kserve.io/v1beta1"
        isvc = {r["name"]: r for r in kserve["resources"]}
        assert isvc["inferenceservices"]["shortNames"] == ["isvc"]
        assert isvc["inferenceservices"]["categories"] == ["all"]
        assert isvc["inferenceservices"]["singularName"] == "inferenceservice"
        assert isvc["inferenceservices/status"]["verbs"] == ["get", "patch", "update"]
        assert client.get("/apis/serving.kserve.io").json()["kind"] == "APIGroup"
        assert_status(client.get("/apis/nope.example.com/v1"), 404, "NotFound")


def test_aggregated_discovery_v2_is_served_with_its_content_type(api: LocalApi) -> None:
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    with api.client() as client:
        response = client.get("/apis", headers={"Accept": accept})
        assert (
            response.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        )
        body = response.json()
        assert body["kind"] == "APIGroupDiscoveryList" and body["apiVersion"] == "apidiscovery.k8s.io/v2"
        groups = {g["metadata"]["name"]: g for g in body["items"]}
        resource = groups["serving.kserve.io"]["versions"][0]["resources"][0]
        assert resource["resource"] == "inferenceservices" and resource["scope"] == "Namespaced"
        assert resource["responseKind"] == {
            "group": "serving.kserve.io",
            "version": "v1beta1",
            "kind": "InferenceService",
        }
        assert resource["subresources"][0]["subresource"] == "status"
        core = client.get("/api", headers={"Accept": accept}).json()["items"][0]
        assert {r["resource"] for r in core["versions"][0]["resources"]} == {"namespaces", "configmaps", "pods",
                                                                        "services", "events"}


def test_openapi_v3_advertises_field_validation_and_no_strategic_merge_for_crds(api: LocalApi) -> None:
    with api.client() as client:
        root = client.get("/openapi/v3").json()["paths"]
        url = root["apis/serving.kserve.io/v1beta1"]["serverRelativeURL"]
        assert "?hash=" in url
        doc = client.get(url).json()
        item = doc["paths"]["/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/{name}"]
        patch = item["patch"]
        assert patch["x-kubernetes-group-version-kind"] == {"group": "serving.kserve.io", "version": "v1beta1",
                                                            "kind": "InferenceService"}
        assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
        assert set(patch["requestBody"]["content"]) == {"application/apply-patch+yaml", "application/json-patch+json",
                                                        "application/merge-patch+json"}
        schema = doc["components"]["schemas"]["io.kserve.serving.v1beta1.InferenceService"]
        cap = schema["properties"]["spec"]["properties"]["predictor"]["properties"]["canaryTrafficPercent"]
        assert cap == {"type": "integer", "format": "int64", "description": cap["description"]}
        assert "maximum" not in cap  # KServe does not range-check it
        core = client.get(root["api/v1"]["serverRelativeURL"]).json()
        cm_patch = core["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
        assert "application/strategic-merge-patch+json" in cm_patch["requestBody"]["content"]
        swagger = client.get("/openapi/v2").json()
        assert swagger["swagger"] == "2.0"
        assert "io.kserve.serving.v1beta1.InferenceService" in swagger["definitions"]
        protobuf_only = client.get(
            "/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}
        )
        assert protobuf_only.status_code == 404


def test_unknown_paths_and_subresources_are_404(http: httpx.Client) -> None:
    for path in ("/nope", "/api/v2", f"{ISVC_PATH}/x/scale", "/apis/serving.kserve.io/v1beta1/foos",
                 "/api/v1/namespaces/a/b/c/d/e"):
        assert_status(http.get(path), 404, "NotFound", "the server could not find the requested resource")


# ============================================================================== create


def test_create_returns_201_with_server_fields_and_get_returns_it(http: httpx.Client) -> None:
    created = create_isvc(http)
    meta = created["metadata"]
    assert meta["namespace"] == NS and meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["resourceVersion"].isdigit()
    assert "status" not in created
    got = http.get(f"{ISVC_PATH}/sklearn-iris").json()
    assert got == created


def test_create_accepts_a_yaml_body(http: httpx.Client) -> None:
    body = yaml.safe_dump(isvc_manifest(canary=10)) + "\n# a comment\n"
    response = http.post(ISVC_PATH, content=body, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_yaml_timestamps_stay_strings(http: httpx.Client) -> None:
    body = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: when\ndata:\n  at: 2024-01-01T00:00:00Z\n")
    response = http.post(f"/api/v1/namespaces/{NS}/configmaps", content=body,
                         headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["at"] == "2024-01-01T00:00:00Z"


def test_status_in_a_create_body_is_ignored(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["status"] = canary_status()
    response = http.post(ISVC_PATH, json=body)
    assert response.status_code == 201 and "status" not in response.json()


def test_create_into_a_missing_namespace_is_404(http: httpx.Client) -> None:
    response = http.post("/apis/serving.kserve.io/v1beta1/namespaces/nope/inferenceservices", json=isvc_manifest())
    body = assert_status(response, 404, "NotFound", 'namespaces "nope" not found')
    assert body["details"] == {"name": "nope", "kind": "namespaces"}


def test_create_existing_is_409_already_exists(http: httpx.Client) -> None:
    create_isvc(http)
    body = assert_status(http.post(ISVC_PATH, json=isvc_manifest()), 409, "AlreadyExists",
                         'inferenceservices.serving.kserve.io "sklearn-iris" already exists')
    assert body["details"] == {"name": "sklearn-iris", "group": "serving.kserve.io", "kind": "inferenceservices"}


def test_get_missing_is_404_with_details(http: httpx.Client) -> None:
    body = assert_status(http.get(f"{ISVC_PATH}/nope"), 404, "NotFound",
                         'inferenceservices.serving.kserve.io "nope" not found')
    assert body["details"] == {"name": "nope", "group": "serving.kserve.io", "kind": "inferenceservices"}
    assert_status(http.get(f"/api/v1/namespaces/{NS}/configmaps/nope"), 404, "NotFound", 'configmaps "nope" not found')


def test_namespace_mismatch_between_body_and_url_is_400(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["metadata"]["namespace"] = "other"
    assert_status(http.post(ISVC_PATH, json=body), 400, "BadRequest",
                  "the namespace of the provided object does not match the namespace sent on the request")


def test_wrong_kind_or_api_version_is_400(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["apiVersion"] = "serving.kserve.io/v1alpha1"
    assert_status(http.post(ISVC_PATH, json=body), 400, "BadRequest",
                  "the API version in the data (serving.kserve.io/v1alpha1) does not match the expected API "
                  "version (serving.kserve.io/v1beta1)")
    body = isvc_manifest()
    body["kind"] = "Pod"
    response = assert_status(http.post(ISVC_PATH, json=body), 400, "BadRequest")
    assert response["message"].startswith('Pod in version "v1beta1" cannot be handled as a InferenceService')
    body = isvc_manifest()
    del body["kind"], body["apiVersion"]  # both default to the URL's, as in Kubernetes
    created = http.post(ISVC_PATH, json=body).json()
    assert (created["apiVersion"], created["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")


def test_malformed_bodies_are_400(http: httpx.Client) -> None:
    for content, ctype in (
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[1,2]", "application/json"),
        (b'"a string"', "application/json"),
        (b"a: [unclosed", "application/yaml"),
        (b"a: 1\n---\nb: 2\n", "application/yaml"),
        (b"\xff\xfe", "application/json"),
    ):
        response = http.post(ISVC_PATH, content=content, headers={"Content-Type": ctype})
        assert_status(response, 400, "BadRequest")
    response = http.post(ISVC_PATH, content=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert_status(response, 415, "UnsupportedMediaType")


def test_missing_name_is_422_and_generate_name_is_honoured(http: httpx.Client) -> None:
    body = isvc_manifest()
    del body["metadata"]["name"]
    assert_status(http.post(ISVC_PATH, json=body), 422, "Invalid",
                  'InferenceService.serving.kserve.io "" is invalid: metadata.name: Required value: name or '
                  "generateName is required")
    body["metadata"]["generateName"] = "iris-"
    created = http.post(ISVC_PATH, json=body).json()
    assert created["metadata"]["name"].startswith("iris-") and len(created["metadata"]["name"]) == 10


def test_names_must_be_dns_subdomains_then_kserve_dns1035_labels(http: httpx.Client) -> None:
    body = assert_status(http.post(ISVC_PATH, json=isvc_manifest("Bad_Name")), 422, "Invalid")
    assert body["message"].startswith('InferenceService.serving.kserve.io "Bad_Name" is invalid: metadata.name: '
                                      'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of')
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    # A valid subdomain that is not a DNS-1035 label passes the API server but not KServe's webhook.
    body = assert_status(http.post(ISVC_PATH, json=isvc_manifest("1abc")), 403, "Forbidden")
    assert body["message"] == (
        'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: the '
        'InferenceService "1abc" is invalid: a InferenceService name must consist of lower case alphanumeric '
        "characters or '-', and must start with alphabetical character. (e.g. \"my-name\" or \"abc-123\", regex "
        "used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
    assert http.post(f"/api/v1/namespaces/{NS}/configmaps",
                     json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a.b"}}).status_code == 201
    assert_status(http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": "a.b"}}), 422, "Invalid")


def test_invalid_labels_are_422(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["metadata"]["labels"] = {"ok": "bad value!"}
    response = assert_status(http.post(ISVC_PATH, json=body), 422, "Invalid")
    assert 'metadata.labels: Invalid value: "bad value!": a valid label must be' in response["message"]


def test_legacy_framework_predictor_is_rewritten_into_model(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["spec"]["predictor"] = {"sklearn": {"storageUri": "gs://bucket/model"}, "canaryTrafficPercent": 10}
    created = http.post(ISVC_PATH, json=body).json()
    assert created["spec"]["predictor"] == {
        "canaryTrafficPercent": 10,
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://bucket/model"},
    }


def test_predictor_needs_exactly_one_implementation(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["spec"]["predictor"] = {"canaryTrafficPercent": 10}
    response = assert_status(http.post(ISVC_PATH, json=body), 403, "Forbidden")
    assert response["message"].endswith(
        "exactly one of [SKLearn, XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, PMML, LightGBM, Paddle, "
        "Model, WorkerSpec, PodSpec] must be specified in PredictorSpec")
    body["spec"]["predictor"] = {"model": {"modelFormat": {"name": "sklearn"}},
                                 "containers": [{"name": "kserve-container", "image": "x"}]}
    assert_status(http.post(ISVC_PATH, json=body), 403, "Forbidden")
    body["spec"]["predictor"] = {"containers": [{"name": "custom", "image": "x"}]}
    assert http.post(ISVC_PATH, json=body).status_code == 201


def test_replica_bounds_are_validated_by_the_webhook(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["spec"]["predictor"].update({"minReplicas": 3, "maxReplicas": 2})
    response = assert_status(http.post(ISVC_PATH, json=body), 403, "Forbidden")
    assert response["message"].endswith("'MinReplicas' cannot be greater than MaxReplicas")


def test_missing_storage_uri_and_out_of_range_canary_are_accepted_like_kserve(http: httpx.Client) -> None:
    body = isvc_manifest(canary=150)
    del body["spec"]["predictor"]["model"]["storageUri"]
    response = http.post(ISVC_PATH, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["predictor"]["canaryTrafficPercent"] == 150


# ========================================================================== validation


def test_strict_field_validation_rejects_unknown_fields(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["spec"]["predictor"]["foo"] = 1
    body["spec"]["predictor"]["model"]["bar"] = {"x": 1}
    response = http.post(ISVC_PATH, params={"fieldValidation": "Strict"}, json=body)
    assert_status(response, 400, "BadRequest",
                  'InferenceService in version "v1beta1" cannot be handled as a InferenceService: strict decoding '
                  'error: unknown field "spec.predictor.foo", unknown field "spec.predictor.model.bar"')


def test_warn_field_validation_prunes_unknown_fields_with_a_warning_header(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["spec"]["predictor"]["foo"] = 1
    body["spec"]["predictor"]["containers"] = [{"name": "c", "image": "i", "bogus": True}]
    body["spec"]["predictor"].pop("model")
    response = http.post(ISVC_PATH, json=body)  # default: Warn
    assert response.status_code == 201, response.text
    assert response.headers.get_list("Warning") == [
        '299 - "unknown field \\"spec.predictor.containers[0].bogus\\""',
        '299 - "unknown field \\"spec.predictor.foo\\""',
    ] or sorted(response.headers.get_list("Warning")) == sorted(
        [
            '299 - "unknown field \\"spec.predictor.foo\\""',
            '299 - "unknown field \\"spec.predictor.containers[0].bogus\\""',
        ]
    )
    predictor = response.json()["spec"]["predictor"]
    assert "foo" not in predictor and predictor["containers"] == [{"name": "c", "image": "i"}]
    body["metadata"]["name"] = "ignored"
    response = http.post(ISVC_PATH, params={"fieldValidation": "Ignore"}, json=body)
    assert response.status_code == 201 and "Warning" not in response.headers
    assert_status(http.post(ISVC_PATH, params={"fieldValidation": "Loud"}, json=body), 400, "BadRequest")


def test_preserve_unknown_fields_keep_arbitrary_content(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["spec"]["transformer"] = {"containers": [{"name": "t", "image": "x", "anything": {"goes": 1}}]}
    body["spec"]["predictor"]["affinity"] = {"nodeAffinity": {"whatever": True}}
    response = http.post(ISVC_PATH, params={"fieldValidation": "Strict"}, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["transformer"]["containers"][0]["anything"] == {"goes": 1}


def test_wrong_types_are_422_invalid_with_causes(http: httpx.Client) -> None:
    body = isvc_manifest()
    body["spec"]["predictor"]["canaryTrafficPercent"] = "abc"
    response = assert_status(http.post(ISVC_PATH, json=body), 422, "Invalid",
                             'InferenceService.serving.kserve.io "sklearn-iris" is invalid: '
                             'spec.predictor.canaryTrafficPercent: Invalid value: "string": '
                             'spec.predictor.canaryTrafficPercent in body must be of type integer: "string"')
    assert response["details"] == {
        "name": "sklearn-iris", "group": "serving.kserve.io", "kind": "InferenceService",
        "causes": [{"reason": "FieldValueInvalid", "field": "spec.predictor.canaryTrafficPercent",
                    "message": 'Invalid value: "string": spec.predictor.canaryTrafficPercent in body must be of '
                               'type integer: "string"'}],
    }
    body["spec"]["predictor"]["canaryTrafficPercent"] = 10
    body["spec"]["predictor"]["scaleMetric"] = "latency"
    body["spec"]["predictor"]["minReplicas"] = 1.5
    response = assert_status(http.post(ISVC_PATH, json=body), 422, "Invalid")
    assert response["message"].startswith('InferenceService.serving.kserve.io "sklearn-iris" is invalid: [')
    fields = {c["field"]: c["reason"] for c in response["details"]["causes"]}
    assert fields == {"spec.predictor.minReplicas": "FieldValueInvalid",
                      "spec.predictor.scaleMetric": "FieldValueNotSupported"}
    body = isvc_manifest()
    del body["spec"]["predictor"]["model"]["modelFormat"]
    response = assert_status(http.post(ISVC_PATH, json=body), 422, "Invalid")
    assert response["details"]["causes"][0] == {"reason": "FieldValueRequired", "message": "Required value",
                                                "field": "spec.predictor.model.modelFormat"}


def test_core_type_errors_are_400_like_go_decoding(http: httpx.Client) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}}
    response = assert_status(http.post(f"/api/v1/namespaces/{NS}/configmaps", json=body), 400, "BadRequest")
    assert response["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot '
                                   "unmarshal number into Go struct field ConfigMap.data.a of type string")


def test_integral_floats_count_as_integers(http: httpx.Client) -> None:
    response = http.post(ISVC_PATH, json=isvc_manifest(canary=10.0))  # type: ignore[arg-type]
    assert response.status_code == 201 and response.json()["spec"]["predictor"]["canaryTrafficPercent"] == 10


# ===================================================================== update and patch


def test_replace_requires_resource_version_for_custom_resources(http: httpx.Client) -> None:
    create_isvc(http)
    body = isvc_manifest(canary=20)
    assert_status(http.put(f"{ISVC_PATH}/sklearn-iris", json=body), 422, "Invalid",
                  'InferenceService.serving.kserve.io "sklearn-iris" is invalid: metadata.resourceVersion: '
                  "Invalid value: 0x0: must be specified for an update")


def test_replace_with_stale_resource_version_is_409_conflict(http: httpx.Client) -> None:
    created = create_isvc(http)
    stale = created["metadata"]["resourceVersion"]
    http.patch(f"{ISVC_PATH}/sklearn-iris", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    body = isvc_manifest(canary=20)
    body["metadata"]["resourceVersion"] = stale
    response = assert_status(
        http.put(f"{ISVC_PATH}/sklearn-iris", json=body),
        409,
        "Conflict",
        'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "sklearn-iris": '
        "the object has been modified; please apply your changes to the latest version and try again",
    )
    assert response["details"] == {"name": "sklearn-iris", "group": "serving.kserve.io", "kind": "inferenceservices"}


def test_replace_bumps_generation_and_keeps_status(api: LocalApi, http: httpx.Client) -> None:
    created = create_isvc(http)
    write_status(api, canary_status())
    body = isvc_manifest(canary=20)
    body["metadata"]["resourceVersion"] = http.get(f"{ISVC_PATH}/sklearn-iris").json()["metadata"]["resourceVersion"]
    body["status"] = {"url": "http://ignored"}
    replaced = http.put(f"{ISVC_PATH}/sklearn-iris", json=body).json()
    assert replaced["metadata"]["generation"] == 2
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["status"]["url"] == "http://sklearn-iris.kserve-test.example.com"
    assert replaced["spec"]["predictor"]["canaryTrafficPercent"] == 20


def test_replace_with_a_different_name_is_400_and_missing_object_404(http: httpx.Client) -> None:
    created = create_isvc(http)
    body = isvc_manifest("other")
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    assert_status(http.put(f"{ISVC_PATH}/sklearn-iris", json=body), 400, "BadRequest",
                  "the name of the object (other) does not match the name on the URL (sklearn-iris)")
    assert_status(http.put(f"{ISVC_PATH}/other", json=body), 404, "NotFound")


def test_merge_patch_null_removes_a_field(http: httpx.Client) -> None:
    create_isvc(http, canary=10)
    patched = http.patch(f"{ISVC_PATH}/sklearn-iris", json={"spec": {"predictor": {"canaryTrafficPercent": None}}},
                         headers=MERGE)
    assert patched.status_code == 200, patched.text
    assert "canaryTrafficPercent" not in patched.json()["spec"]["predictor"]
    assert patched.json()["metadata"]["generation"] == 2
    # A metadata-only patch does not bump the generation.
    labelled = http.patch(f"{ISVC_PATH}/sklearn-iris", json={"metadata": {"labels": {"team": "a"}}}, headers=MERGE)
    assert labelled.json()["metadata"]["generation"] == 2


def test_merge_patch_with_stale_resource_version_is_409(http: httpx.Client) -> None:
    create_isvc(http)
    patch = {"metadata": {"resourceVersion": "1"}, "spec": {"predictor": {"canaryTrafficPercent": 5}}}
    assert_status(http.patch(f"{ISVC_PATH}/sklearn-iris", json=patch, headers=MERGE), 409, "Conflict")


def test_merge_patch_of_a_missing_object_is_404(http: httpx.Client) -> None:
    assert_status(http.patch(f"{ISVC_PATH}/nope", json={}, headers=MERGE), 404, "NotFound")


def test_json_patch_supports_every_operation(http: httpx.Client) -> None:
    create_isvc(http, canary=10)
    ops = [
        {"op": "test", "path": "/spec/predictor/canaryTrafficPercent", "value": 10},
        {"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": 50},
        {"op": "add", "path": "/metadata/labels", "value": {"a": "1"}},
        {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
        {"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/d"},
        {"op": "move", "from": "/metadata/labels/d", "path": "/metadata/labels/e"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "add", "path": "/spec/predictor/containers", "value": []},
        {"op": "add", "path": "/spec/predictor/containers/-", "value": {"name": "side", "image": "busybox"}},
    ]
    response = http.patch(f"{ISVC_PATH}/sklearn-iris", json=ops, headers=JSONPATCH)
    assert response.status_code == 200, response.text
    obj = response.json()
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 50
    assert obj["metadata"]["labels"] == {"b/c": "2", "e": "1"}
    assert obj["spec"]["predictor"]["containers"] == [{"name": "side", "image": "busybox"}]


def test_json_patch_failures(http: httpx.Client) -> None:
    create_isvc(http, canary=10)
    failing_test = [{"op": "test", "path": "/spec/predictor/canaryTrafficPercent", "value": 11}]
    body = assert_status(http.patch(f"{ISVC_PATH}/sklearn-iris", json=failing_test, headers=JSONPATCH), 422,
                         "Invalid", "the server rejected our request due to an error in our request")
    assert (
        body["details"]["causes"][0]["message"]
        == "testing value /spec/predictor/canaryTrafficPercent failed: test failed"
    )
    missing = [{"op": "remove", "path": "/spec/predictor/nothing"}]
    assert_status(http.patch(f"{ISVC_PATH}/sklearn-iris", json=missing, headers=JSONPATCH), 422, "Invalid")
    not_a_list = {"op": "add"}
    assert_status(http.patch(f"{ISVC_PATH}/sklearn-iris", json=not_a_list, headers=JSONPATCH), 400, "BadRequest",
                  "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    bad_op = [{"op": "frobnicate", "path": "/spec"}]
    assert_status(http.patch(f"{ISVC_PATH}/sklearn-iris", json=bad_op, headers=JSONPATCH), 422, "Invalid")
    # A JSON patch that produces an invalid object is caught by validation.
    wrong_type = [{"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": "ten"}]
    assert_status(http.patch(f"{ISVC_PATH}/sklearn-iris", json=wrong_type, headers=JSONPATCH), 422, "Invalid")
    assert http.get(f"{ISVC_PATH}/sklearn-iris").json()["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_strategic_merge_patch_on_a_crd_is_415(http: httpx.Client) -> None:
    create_isvc(http)
    accepted = ("the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
    for ctype in ("application/strategic-merge-patch+json", "text/plain"):
        response = http.patch(f"{ISVC_PATH}/sklearn-iris", content=b"{}", headers={"Content-Type": ctype})
        assert_status(response, 415, "UnsupportedMediaType", accepted)
    response = http.patch(f"{ISVC_PATH}/sklearn-iris/status", content=b"{}",
                          headers={"Content-Type": "application/apply-patch+yaml"}, params={"fieldManager": "m"})
    assert_status(response, 415, "UnsupportedMediaType")


APPLY = {"Content-Type": "application/apply-patch+yaml"}


def test_server_side_apply_creates_updates_and_removes_fields_it_stops_applying(http: httpx.Client) -> None:
    path = f"{ISVC_PATH}/sklearn-iris"
    response = http.patch(path, params={"fieldManager": "me"}, headers=APPLY,
                          content=yaml.safe_dump(isvc_manifest(canary=10)))
    assert response.status_code == 201, response.text
    entry = response.json()["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"], entry["fieldsType"]) == ("me", "Apply", "FieldsV1")
    assert entry["fieldsV1"]["f:spec"]["f:predictor"]["f:canaryTrafficPercent"] == {}
    # A merge patch by someone else keeps the apply ownership record.
    http.patch(path, json={"metadata": {"labels": {"team": "a"}}}, headers=MERGE)
    applied = http.patch(path, params={"fieldManager": "me"}, headers=APPLY, json=isvc_manifest())
    assert applied.status_code == 200, applied.text
    obj = applied.json()
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert obj["metadata"]["labels"] == {"team": "a"} and obj["metadata"]["generation"] == 2
    assert_status(http.patch(path, headers=APPLY, json=isvc_manifest()), 400, "BadRequest",
                  "fieldManager: Required value: is required for apply patch")
    assert_status(http.patch(path, params={"force": "true"}, headers=MERGE, json={}), 400, "BadRequest")


def test_server_side_apply_conflicts_between_managers(http: httpx.Client) -> None:
    path = f"{ISVC_PATH}/sklearn-iris"
    http.patch(path, params={"fieldManager": "alice"}, headers=APPLY, json=isvc_manifest(canary=10))
    same_value = http.patch(path, params={"fieldManager": "bob"}, headers=APPLY, json=isvc_manifest(canary=10))
    assert same_value.status_code == 200  # co-ownership, no conflict
    body = assert_status(
        http.patch(path, params={"fieldManager": "carol"}, headers=APPLY, json=isvc_manifest(canary=50)),
        409,
        "Conflict",
    )
    assert body["message"] == ('Apply failed with 2 conflicts: conflicts with "alice":\n'
                               '- .spec.predictor.canaryTrafficPercent\nconflicts with "bob":\n'
                               '- .spec.predictor.canaryTrafficPercent')
    assert body["details"]["causes"][0] == {"reason": "FieldManagerConflict", "message": 'conflict with "alice"',
                                            "field": ".spec.predictor.canaryTrafficPercent"}
    forced = http.patch(path, params={"fieldManager": "carol", "force": "true"}, headers=APPLY,
                        json=isvc_manifest(canary=50))
    assert forced.json()["spec"]["predictor"]["canaryTrafficPercent"] == 50
    # alice no longer owns the field: dropping it from her configuration leaves carol's value alone.
    after = http.patch(path, params={"fieldManager": "alice"}, headers=APPLY, json=isvc_manifest()).json()
    assert after["spec"]["predictor"]["canaryTrafficPercent"] == 50


def test_strategic_merge_patch_on_a_configmap(http: httpx.Client) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    http.post(
        path, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    )
    patch = {"data": {"a": None, "c": "3"}, "metadata": {"$setElementOrder/finalizers": []}}
    response = http.patch(f"{path}/c", json=patch, headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"b": "2", "c": "3"}
    assert "$setElementOrder/finalizers" not in response.json()["metadata"]


def test_status_subresource_writes_only_status(api: LocalApi, http: httpx.Client) -> None:
    created = create_isvc(http, canary=10)
    body = dict(created, status=canary_status())
    body["spec"] = {"predictor": {"model": {"modelFormat": {"name": "xgboost"}}}}
    response = http.put(f"{ISVC_PATH}/sklearn-iris/status", json=body)
    assert response.status_code == 200, response.text
    obj = response.json()
    assert obj["status"]["url"] == "http://sklearn-iris.kserve-test.example.com"
    assert obj["spec"] == created["spec"] and obj["metadata"]["generation"] == 1
    patched = http.patch(f"{ISVC_PATH}/sklearn-iris/status", json={"status": {"observedGeneration": 7}},
                         headers=MERGE).json()
    assert patched["status"]["observedGeneration"] == 7 and patched["status"]["url"]
    got = http.get(f"{ISVC_PATH}/sklearn-iris/status").json()
    assert got["status"]["observedGeneration"] == 7
    # A status write does not skip validation of the deploymentMode rule (status first, then annotation).
    assert_status(http.post(f"{ISVC_PATH}/sklearn-iris/status", json=body), 405, "MethodNotAllowed")


def test_deployment_mode_cannot_change_after_status_records_it(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http)
    write_status(api, canary_status())
    patch = {"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}}
    body = assert_status(http.patch(f"{ISVC_PATH}/sklearn-iris", json=patch, headers=MERGE), 403, "Forbidden")
    # KServe's mutating webhook has already rewritten the legacy RawDeployment to Standard.
    assert body["message"] == ('admission webhook "inferenceservice.kserve-webhook-server.validator" denied the '
                               "request: update rejected: deploymentMode cannot be changed from 'Knative' to "
                               "'Standard'")
    patch["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "Knative"
    assert http.patch(f"{ISVC_PATH}/sklearn-iris", json=patch, headers=MERGE).status_code == 200


def test_dry_run_validates_without_storing(http: httpx.Client) -> None:
    response = http.post(ISVC_PATH, params={"dryRun": "All"}, json=isvc_manifest())
    assert response.status_code == 201 and response.json()["metadata"]["uid"]
    assert http.get(f"{ISVC_PATH}/sklearn-iris").status_code == 404
    create_isvc(http, canary=10)
    response = http.patch(f"{ISVC_PATH}/sklearn-iris", params={"dryRun": "All"},
                          json={"spec": {"predictor": {"canaryTrafficPercent": 90}}}, headers=MERGE)
    assert response.json()["spec"]["predictor"]["canaryTrafficPercent"] == 90
    assert response.json()["metadata"]["generation"] == 2
    assert http.get(f"{ISVC_PATH}/sklearn-iris").json()["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert http.delete(f"{ISVC_PATH}/sklearn-iris", params={"dryRun": "All"}).status_code == 200
    assert http.get(f"{ISVC_PATH}/sklearn-iris").status_code == 200
    assert_status(http.post(ISVC_PATH, params={"dryRun": "Some"}, json=isvc_manifest("x")), 400, "BadRequest")


# =============================================================================== delete


def test_delete_returns_the_deleted_custom_resource(http: httpx.Client) -> None:
    created = create_isvc(http)
    response = http.request("DELETE", f"{ISVC_PATH}/sklearn-iris",
                            json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
    assert response.status_code == 200
    assert response.json()["metadata"]["uid"] == created["metadata"]["uid"]
    assert_status(http.get(f"{ISVC_PATH}/sklearn-iris"), 404, "NotFound")
    assert_status(http.delete(f"{ISVC_PATH}/sklearn-iris"), 404, "NotFound")


def test_delete_of_a_configmap_returns_a_success_status(http: httpx.Client) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    created = http.post(path, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}).json()
    uid = created["metadata"]["uid"]
    body = http.delete(f"{path}/c").json()
    assert body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"] == {"name": "c", "kind": "configmaps", "uid": uid}


def test_delete_preconditions(http: httpx.Client) -> None:
    created = create_isvc(http)
    stale = {"preconditions": {"resourceVersion": "1"}}
    assert_status(http.request("DELETE", f"{ISVC_PATH}/sklearn-iris", json=stale), 409, "Conflict")
    wrong_uid = {"preconditions": {"uid": "nope"}}
    assert_status(http.request("DELETE", f"{ISVC_PATH}/sklearn-iris", json=wrong_uid), 409, "Conflict")
    good = {
        "preconditions": {"uid": created["metadata"]["uid"], "resourceVersion": created["metadata"]["resourceVersion"]}
    }
    assert http.request("DELETE", f"{ISVC_PATH}/sklearn-iris", json=good).status_code == 200
    assert_status(
        http.request("DELETE", f"{ISVC_PATH}/x", content=b"{bad", headers={"Content-Type": "application/json"}),
        400,
        "BadRequest",
    )


def test_deleting_a_namespace_removes_everything_in_it(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http)
    http.post(
        f"/api/v1/namespaces/{NS}/configmaps", json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    )
    api.call(api.store.create, PODS, pod_manifest("sklearn-iris-predictor-00001-deployment-abc"))
    response = http.delete(f"/api/v1/namespaces/{NS}")
    assert response.status_code == 200 and response.json()["status"]["phase"] == "Terminating"
    assert_status(http.get(f"/api/v1/namespaces/{NS}"), 404, "NotFound", f'namespaces "{NS}" not found')
    for rt in (INFERENCESERVICES, CONFIGMAPS, PODS):
        assert api.call(api.store.list, rt, NS)[0] == []


def test_protected_namespaces_cannot_be_deleted(http: httpx.Client) -> None:
    for name in ("default", "kube-system", "kube-public"):
        assert_status(http.delete(f"/api/v1/namespaces/{name}"), 403, "Forbidden",
                      f'namespaces "{name}" is forbidden: this namespace may not be deleted')


def test_read_only_resources_refuse_writes_with_405(api: LocalApi, http: httpx.Client) -> None:
    api.call(api.store.create, PODS, pod_manifest("p1"))
    pod_path = f"/api/v1/namespaces/{NS}/pods"
    rev_path = f"/apis/serving.knative.dev/v1/namespaces/{NS}/revisions"
    for method, path in (("POST", pod_path), ("PUT", f"{pod_path}/p1"), ("PATCH", f"{pod_path}/p1"),
                         ("DELETE", f"{pod_path}/p1"), ("POST", rev_path), ("DELETE", f"{rev_path}/r")):
        response = http.request(method, path, json={}, headers=MERGE if method == "PATCH" else {})
        assert_status(
            response, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )
    assert http.get(f"{pod_path}/p1").json()["metadata"]["name"] == "p1"
    assert [p["metadata"]["name"] for p in http.get("/api/v1/pods").json()["items"]] == ["p1"]
    assert http.get(rev_path).json() == {
        "apiVersion": "serving.knative.dev/v1",
        "items": [],
        "kind": "RevisionList",
        "metadata": {"continue": "", "resourceVersion": http.get(rev_path).json()["metadata"]["resourceVersion"]},
    }


# ================================================================================= list


def test_list_kinds_resource_versions_and_all_namespaces(http: httpx.Client) -> None:
    http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    create_isvc(http, name="a")
    http.post("/apis/serving.kserve.io/v1beta1/namespaces/other/inferenceservices", json=isvc_manifest("b"))
    listed = http.get(ISVC_PATH).json()
    assert listed["kind"] == "InferenceServiceList" and listed["apiVersion"] == "serving.kserve.io/v1beta1"
    assert listed["metadata"]["resourceVersion"].isdigit()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    everywhere = http.get("/apis/serving.kserve.io/v1beta1/inferenceservices", params={"limit": 1, "continue": ""})
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere.json()["items"]] == [
        (NS, "a"), ("other", "b")]
    assert http.get("/apis/serving.kserve.io/v1beta1/namespaces/missing/inferenceservices").json()["items"] == []


def test_label_and_field_selectors(http: httpx.Client) -> None:
    labels = {"a": {"app": "iris", "tier": "gold"}, "b": {"app": "iris"}, "c": {"app": "wine", "tier": "silver"}}
    for name, value in labels.items():
        body = isvc_manifest(name)
        body["metadata"]["labels"] = value
        http.post(ISVC_PATH, json=body)

    def names(**params: str) -> list[str]:
        response = http.get(ISVC_PATH, params=params)
        assert response.status_code == 200, response.text
        return [i["metadata"]["name"] for i in response.json()["items"]]

    assert names(labelSelector="app=iris") == ["a", "b"]
    assert names(labelSelector="app==iris,tier") == ["a"]
    assert names(labelSelector="app!=iris") == ["c"]
    assert names(labelSelector="!tier") == ["b"]
    assert names(labelSelector="tier in (gold, silver)") == ["a", "c"]
    assert names(labelSelector="tier notin (gold)") == ["b", "c"]
    assert names(fieldSelector="metadata.name=b") == ["b"]
    assert names(fieldSelector="metadata.name!=b,metadata.namespace=kserve-test") == ["a", "c"]
    assert_status(http.get(ISVC_PATH, params={"fieldSelector": "spec.foo=1"}), 400, "BadRequest",
                  "field label not supported: spec.foo")
    assert_status(http.get(ISVC_PATH, params={"labelSelector": "a b c"}), 400, "BadRequest")


# ================================================================================ tables


def write_status(api: LocalApi, status: dict[str, Any], name: str = "sklearn-iris") -> dict[str, Any]:
    return api.write_status(NS, name, status)


def test_isvc_table_uses_kserve_printer_columns(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http)
    write_status(api, canary_status())
    response = http.get(ISVC_PATH, headers={"Accept": TABLE_ACCEPT})
    assert response.headers["Content-Type"] == "application/json;as=Table;v=v1;g=meta.k8s.io"
    table = response.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "URL", "Ready", "Prev", "Latest", "PrevRolledoutRevision", "LatestReadyRevision", "Age"]
    assert [c["type"] for c in table["columnDefinitions"]] == [
        "string", "string", "string", "integer", "integer", "string", "string", "date"]
    cells = table["rows"][0]["cells"]
    assert cells[:7] == ["sklearn-iris", "http://sklearn-iris.kserve-test.example.com", "True", 90, 10,
                         "sklearn-iris-predictor-00001", "sklearn-iris-predictor-00002"]
    assert cells[7].endswith("s")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"]["name"] == "sklearn-iris"


def test_isvc_table_missing_values_are_null_cells(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http)
    write_status(api, canary_status(prev=None, latest=(100, 1)))
    row = http.get(f"{ISVC_PATH}/sklearn-iris", headers={"Accept": TABLE_ACCEPT}).json()["rows"][0]
    assert row["cells"][:7] == ["sklearn-iris", "http://sklearn-iris.kserve-test.example.com", "True", None, 100,
                                None, "sklearn-iris-predictor-00001"]


def test_table_include_object_options(http: httpx.Client) -> None:
    create_isvc(http)
    full = http.get(ISVC_PATH, params={"includeObject": "Object"}, headers={"Accept": TABLE_ACCEPT}).json()
    assert full["rows"][0]["object"]["kind"] == "InferenceService"
    bare = http.get(ISVC_PATH, params={"includeObject": "None"}, headers={"Accept": TABLE_ACCEPT}).json()
    assert "object" not in bare["rows"][0]
    beta = http.get(ISVC_PATH, headers={"Accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"}).json()
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    partial = http.get(
        ISVC_PATH, headers={"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}
    ).json()
    assert partial["kind"] == "PartialObjectMetadataList" and partial["items"][0]["metadata"]["name"] == "sklearn-iris"


def test_pod_namespace_and_configmap_tables(api: LocalApi, http: httpx.Client) -> None:
    api.call(api.store.create, PODS, pod_manifest("sklearn-iris-predictor-00001-deployment-7965bcc66-grdbq"))
    api.call(api.store.create, PODS, pod_manifest("crashy", ready=False, waiting_reason="CrashLoopBackOff", restarts=3,
                                                  last_finished=_ago(90)))
    pods = http.get(f"/api/v1/namespaces/{NS}/pods", headers={"Accept": TABLE_ACCEPT}).json()
    assert [c["name"] for c in pods["columnDefinitions"]] == [
        "Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    assert [c["priority"] for c in pods["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    rows = {r["cells"][0]: r["cells"] for r in pods["rows"]}
    assert rows["sklearn-iris-predictor-00001-deployment-7965bcc66-grdbq"][1:4] == ["2/2", "Running", "0"]
    assert rows["sklearn-iris-predictor-00001-deployment-7965bcc66-grdbq"][5:] == [
        "127.0.0.1",
        "local",
        "<none>",
        "<none>",
    ]
    assert rows["crashy"][1:3] == ["0/2", "CrashLoopBackOff"]
    assert rows["crashy"][3] in ("3 (90s ago)", "3 (91s ago)", "3 (92s ago)")
    namespaces = http.get("/api/v1/namespaces", headers={"Accept": TABLE_ACCEPT}).json()
    assert [r["cells"][:2] for r in namespaces["rows"]] == [["default", "Active"], ["kserve-test", "Active"],
                                                            ["kube-public", "Active"], ["kube-system", "Active"]]
    http.post(f"/api/v1/namespaces/{NS}/configmaps", json={"apiVersion": "v1", "kind": "ConfigMap",
                                                           "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})
    cms = http.get(f"/api/v1/namespaces/{NS}/configmaps", headers={"Accept": TABLE_ACCEPT}).json()
    assert cms["rows"][0]["cells"][:2] == ["c", 2]


def test_revision_table_uses_knative_columns(api: LocalApi, http: httpx.Client) -> None:
    revision = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {
            "name": "sklearn-iris-predictor-00001",
            "namespace": NS,
            "labels": {
                "serving.knative.dev/configuration": "sklearn-iris-predictor",
                "serving.knative.dev/configurationGeneration": "1",
            },
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "actualReplicas": 1, "desiredReplicas": 1},
    }
    api.call(api.store.create, REVISIONS, revision)
    table = http.get(f"/apis/serving.knative.dev/v1/namespaces/{NS}/revisions", headers={"Accept": TABLE_ACCEPT}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Config Name", "Generation", "Ready", "Reason", "Actual Replicas", "Desired Replicas"]
    assert table["rows"][0]["cells"] == [
        "sklearn-iris-predictor-00001",
        "sklearn-iris-predictor",
        "1",
        "True",
        None,
        1,
        1,
    ]


def _ago(seconds: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ================================================================================ watch


class WatchReader:
    """Reads a watch stream on a thread, collecting decoded events."""

    def __init__(
        self, client: httpx.Client, path: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.status = 0
        self._thread = threading.Thread(target=self._run, args=(client, path, params, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, client: httpx.Client, path: str, params: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            with client.stream("GET", path, params={"watch": "true", **params}, headers=headers) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line:
                        self.events.append(json.loads(line))
        except httpx.HTTPError:
            pass
        finally:
            self.done.set()

    def wait_for(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.events) >= count, self.events
        return self.events

    def join(self, timeout: float = 5) -> None:
        assert self.done.wait(timeout), "watch did not end"


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


def test_watch_sends_existing_objects_then_live_changes(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http, name="a")
    with api.client() as watch_client:
        reader = WatchReader(watch_client, ISVC_PATH, {"timeoutSeconds": 1})
        reader.wait_for(1)
        create_isvc(http, name="b")
        http.patch(f"{ISVC_PATH}/a", json={"spec": {"predictor": {"canaryTrafficPercent": 5}}}, headers=MERGE)
        http.delete(f"{ISVC_PATH}/b")
        events = reader.wait_for(4)
        assert summary(events) == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
        assert events[2]["object"]["spec"]["predictor"]["canaryTrafficPercent"] == 5
        reader.join()  # timeoutSeconds ends the stream


def test_watch_resumes_from_a_resource_version(http: httpx.Client, api: LocalApi) -> None:
    first = create_isvc(http, name="a")
    create_isvc(http, name="b")
    http.patch(f"{ISVC_PATH}/a", json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE)
    with api.client() as watch_client:
        reader = WatchReader(watch_client, ISVC_PATH, {"resourceVersion": first["metadata"]["resourceVersion"],
                                                       "timeoutSeconds": 1})
        reader.join()
    assert summary(reader.events) == [("ADDED", "b"), ("MODIFIED", "a")]


def test_watch_from_a_compacted_resource_version_sends_410_expired(api: LocalApi, http: httpx.Client) -> None:
    for name in ("a", "b", "c"):
        create_isvc(http, name=name)
    api.call(api.store._db.execute, "DELETE FROM events WHERE rv <= ?", (api.store.resource_version - 1,))
    with api.client() as watch_client:
        reader = WatchReader(watch_client, ISVC_PATH, {"resourceVersion": "2"})
        reader.join()
    assert reader.status == 200 and len(reader.events) == 1
    event = reader.events[0]
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


def test_watch_with_field_and_label_selectors(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http, name="a")
    create_isvc(http, name="b")
    with api.client() as c1, api.client() as c2:
        by_name = WatchReader(c1, ISVC_PATH, {"fieldSelector": "metadata.name=b", "timeoutSeconds": 1})
        by_label = WatchReader(c2, ISVC_PATH, {"labelSelector": "canary=yes", "timeoutSeconds": 1})
        by_name.wait_for(1)
        time.sleep(0.1)
        http.patch(f"{ISVC_PATH}/a", json={"metadata": {"labels": {"canary": "yes"}}}, headers=MERGE)
        http.patch(f"{ISVC_PATH}/b", json={"metadata": {"labels": {"other": "1"}}}, headers=MERGE)
        http.patch(f"{ISVC_PATH}/a", json={"metadata": {"labels": {"canary": None}}}, headers=MERGE)
        by_name.join()
        by_label.join()
    assert summary(by_name.events) == [("ADDED", "b"), ("MODIFIED", "b")]
    # Entering the selection is an ADDED, leaving it a DELETED, as a real server reports.
    assert summary(by_label.events) == [("ADDED", "a"), ("DELETED", "a")]


def test_watch_of_a_single_object_url_and_bookmarks(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http, name="a")
    create_isvc(http, name="b")
    with api.client() as watch_client:
        reader = WatchReader(watch_client, f"{ISVC_PATH}/a",
                             {"timeoutSeconds": 1, "allowWatchBookmarks": "true", "sendInitialEvents": "true",
                              "resourceVersionMatch": "NotOlderThan"})
        reader.join()
    assert [e["type"] for e in reader.events] == ["ADDED", "BOOKMARK"]
    assert reader.events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_table_watch_sends_headers_only_first(api: LocalApi, http: httpx.Client) -> None:
    create_isvc(http, name="a")
    with api.client() as watch_client:
        reader = WatchReader(watch_client, ISVC_PATH, {"timeoutSeconds": 1}, headers={"Accept": TABLE_ACCEPT})
        reader.wait_for(1)
        http.patch(f"{ISVC_PATH}/a", json={"spec": {"predictor": {"canaryTrafficPercent": 5}}}, headers=MERGE)
        reader.join()
    first, second = reader.events
    assert first["object"]["kind"] == "Table" and len(first["object"]["columnDefinitions"]) == 8
    assert second["type"] == "MODIFIED" and second["object"]["columnDefinitions"] is None
    assert second["object"]["rows"][0]["cells"][0] == "a"


def test_watch_ends_on_server_shutdown(tmp_path: Any) -> None:
    api = LocalApi(tmp_path)
    client = api.client()
    reader = WatchReader(client, "/api/v1/namespaces", {})
    reader.wait_for(3)
    started = time.monotonic()
    api.stop()
    reader.join(5)
    assert time.monotonic() - started < 5
    client.close()


def test_disconnected_watchers_are_released(api: LocalApi) -> None:
    with api.client() as client, client.stream("GET", "/api/v1/namespaces", params={"watch": "1"}) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 5
    while api.call(lambda: len(api.store._subscribers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.call(lambda: len(api.store._subscribers)) == 0


def test_invalid_watch_parameters_are_400(http: httpx.Client) -> None:
    assert_status(http.get(ISVC_PATH, params={"watch": "true", "resourceVersion": "abc"}), 400, "BadRequest")
    assert_status(http.get(ISVC_PATH, params={"watch": "true", "timeoutSeconds": "x"}), 400, "BadRequest")


# ========================================================================= protobuf


def _pb_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def test_protobuf_bodies_of_core_types_are_decoded(http: httpx.Client) -> None:
    # What `kubectl create configmap c --from-literal=a=b` sends.
    meta = _pb_field(1, b"c") + _pb_field(2, b"")
    entry = _pb_field(1, b"a") + _pb_field(2, b"b")
    configmap = _pb_field(1, meta) + _pb_field(2, entry)
    type_meta = _pb_field(1, b"v1") + _pb_field(2, b"ConfigMap")
    body = b"k8s\x00" + _pb_field(1, type_meta) + _pb_field(2, configmap)
    response = http.post(f"/api/v1/namespaces/{NS}/configmaps", content=body,
                         headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert response.status_code == 201, response.text
    assert response.json()["data"] == {"a": "b"} and "generateName" not in response.json()["metadata"]
    assert_status(http.post(f"/api/v1/namespaces/{NS}/configmaps", content=b"k8s\x00\xff",
                            headers={"Content-Type": "application/vnd.kubernetes.protobuf"}), 400, "BadRequest")


# ============================================================================ robustness


def _mutations(rng: random.Random) -> Iterator[tuple[bytes, str]]:
    valid = isvc_manifest()
    junk_values: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "x" * 300, [], {}, [None], {"": None}, "\u0000",
                              {"$ref": "#/x"}, [[[]]]]
    paths = [("metadata",), ("metadata", "name"), ("metadata", "labels"), ("metadata", "annotations"),
             ("metadata", "namespace"), ("metadata", "generateName"), ("spec",), ("spec", "predictor"),
             ("spec", "predictor", "model"), ("spec", "predictor", "model", "modelFormat"),
             ("spec", "predictor", "canaryTrafficPercent"), ("spec", "predictor", "containers"),
             ("apiVersion",), ("kind",), ("status",), ("spec", "predictor", "sklearn")]
    for _ in range(150):
        body = json.loads(json.dumps(valid))
        path = rng.choice(paths)
        node = body
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = rng.choice(junk_values)
        try:
            raw = orjson.dumps(body)
        except TypeError:
            raw = json.dumps(body).encode()
        yield raw, "application/json"
    for _ in range(60):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        yield raw, rng.choice(["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"])
    yield b"k8s\x00" + bytes(rng.randrange(256) for _ in range(40)), "application/vnd.kubernetes.protobuf"
    yield b"!!python/object/apply:os.system ['true']", "application/yaml"
    yield b"a: !!binary aGVsbG8=", "application/yaml"
    yield b"{1: 2, [1]: 3}", "application/yaml"


def test_fuzzed_bodies_never_cause_a_500(http: httpx.Client) -> None:
    rng = random.Random(20240611)
    create_isvc(http, name="target")
    for raw, ctype in _mutations(rng):
        for method, path, extra in (("POST", ISVC_PATH, {}),
                                    ("PUT", f"{ISVC_PATH}/target", {}),
                                    ("PATCH", f"{ISVC_PATH}/target", {"Content-Type": "application/merge-patch+json"}),
                                    ("PATCH", f"{ISVC_PATH}/target", {"Content-Type": "application/json-patch+json"}),
                                    ("PATCH", f"{ISVC_PATH}/target?fieldManager=fuzz",
                                     {"Content-Type": "application/apply-patch+yaml"})):
            headers = {"Content-Type": ctype, **extra}
            response = http.request(method, path, content=raw, headers=headers)
            assert response.status_code < 500, (method, raw, response.text)
            if response.status_code >= 400:
                assert response.json()["kind"] == "Status"


def test_fuzzed_json_patch_operations_never_cause_a_500(http: httpx.Client) -> None:
    rng = random.Random(7)
    create_isvc(http, name="target", canary=10)
    pointers = [
        "",
        "/",
        "/spec",
        "/spec/predictor/-",
        "/metadata/labels/a",
        "/spec/predictor/containers/0",
        "/spec/predictor/containers/-",
        "/x~2y",
        "/spec/predictor/canaryTrafficPercent",
        "no-slash",
        "/metadata/name",
        "/kind",
        "/apiVersion",
        "/metadata/namespace",
        "/spec/predictor/model/modelFormat/name",
    ]
    for _ in range(300):
        op: dict[str, Any] = {"op": rng.choice(["add", "remove", "replace", "move", "copy", "test", "bogus", 3])}
        if rng.random() < 0.9:
            op["path"] = rng.choice(pointers + [7])
        if rng.random() < 0.7:
            op["value"] = rng.choice([None, 1, "x", [], {}, {"a": [1]}])
        if rng.random() < 0.4:
            op["from"] = rng.choice(pointers)
        response = http.patch(f"{ISVC_PATH}/target", json=[op], headers=JSONPATCH)
        assert response.status_code < 500, (op, response.text)


def test_unexpected_exceptions_become_a_generic_500_status(api: LocalApi, http: httpx.Client,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.store, "list", explode)
    body = assert_status(http.get(ISVC_PATH), 500, "InternalError", "Internal error occurred: unexpected server error")
    assert "secret" not in json.dumps(body)


def test_oversized_bodies_are_413(http: httpx.Client) -> None:
    response = http.post(ISVC_PATH, content=b" " * (3 * 1024 * 1024 + 10), headers={"Content-Type": "application/json"})
    assert_status(response, 413, "RequestEntityTooLarge")


# ===================================================================== pure helpers


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(-5, "<invalid>"), (-1.5, "0s"), (0, "0s"), (79, "79s"), (119, "119s"), (120, "2m"), (183, "3m3s"),
     (599, "9m59s"), (600, "10m"), (660, "11m"), (10799, "179m"), (10800, "3h"), (11100, "3h5m"),
     (8 * 3600 - 1, "7h59m"), (8 * 3600, "8h"), (47 * 3600 + 3599, "47h"), (48 * 3600, "2d"), (52 * 3600, "2d4h"),
     (8 * 86400 - 1, "7d23h"), (8 * 86400, "8d"), (729 * 86400, "729d"), (730 * 86400, "2y"), (731 * 86400, "2y1d"),
     (8 * 365 * 86400 - 86400, "7y364d"), (8 * 365 * 86400, "8y"), (20 * 365 * 86400, "20y")],
)
def test_human_duration_matches_kubernetes(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [(".status.url", ["u"]), (".status.conditions[?(@.type=='Ready')].status", ["True"]),
     (".status.components.predictor.traffic[?(@.latestRevision==true)].percent", [10, 20]),
     (".status.components.predictor.traffic[?(@.tag=='prev')].revisionName", ["r1"]),
     (".metadata.labels['serving\\.knative\\.dev/configuration']", ["cfg"]), (".status.nothing", []),
     (".status.components.predictor.traffic[0].percent", [10]), ("{.status.url}", ["u"])],
)
def test_jsonpath_subset(path: str, expected: list[Any]) -> None:
    obj = {"metadata": {"labels": {"serving.knative.dev/configuration": "cfg"}},
           "status": {"url": "u", "conditions": [{"type": "Ready", "status": "True"}],
                      "components": {"predictor": {"traffic": [
                          {"latestRevision": True, "percent": 10, "revisionName": "r2"},
                          {"latestRevision": False, "percent": 90, "revisionName": "r1", "tag": "prev"},
                          {"latestRevision": True, "percent": 20, "revisionName": "r3"}]}}}}
    assert tables.compile_jsonpath(path)(obj) == expected


def test_isvc_first_match_only_and_date_cells() -> None:
    now = datetime(2024, 1, 1, 1, 0, 0, tzinfo=UTC)
    obj: dict[str, Any] = {"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:49:00Z"},
                           "status": {"components": {"predictor": {"traffic": [
               {"latestRevision": True, "percent": 30, "revisionName": "r3"},
               {"latestRevision": True, "percent": 70, "revisionName": "r2"}]}}}}
    row = tables.row(INFERENCESERVICES, obj, now)
    assert row["cells"] == ["x", None, None, None, 30, None, "r3", "11m"]
    obj["metadata"]["creationTimestamp"] = "garbage"
    assert tables.row(INFERENCESERVICES, obj, now)["cells"][-1] == "<invalid>"


@pytest.mark.parametrize(
    ("status", "meta", "expected"),
    [
        ({"phase": "Pending"}, {}, ["0/1", "Pending", "0"]),
        (
            {
                "phase": "Running",
                "containerStatuses": [{"name": "c", "ready": True, "restartCount": 2, "state": {"running": {}}}],
            },
            {},
            ["1/1", "Running", "2"],
        ),
        (
            {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "c",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            },
            {},
            ["0/1", "ContainerCreating", "0"],
        ),
        (
            {"phase": "Failed", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 2}}}]},
            {},
            ["0/1", "ExitCode:2", "0"],
        ),
        (
            {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True, "state": {"running": {}}}]},
            {"deletionTimestamp": "2024-01-01T00:00:00Z"},
            ["1/1", "Terminating", "0"],
        ),
        (
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "storage-initializer", "state": {"waiting": {"reason": "PodInitializing"}}}
                ],
            },
            {},
            ["0/1", "Init:0/1", "0"],
        ),
        (
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "storage-initializer",
                        "restartCount": 1,
                        "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    }
                ],
            },
            {},
            ["0/1", "Init:Error", "1"],
        ),
        (
            {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "c",
                        "ready": False,
                        "restartCount": 4,
                        "lastState": {"terminated": {"finishedAt": "2024-01-01T00:58:00Z"}},
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    }
                ],
            },
            {},
            ["0/1", "CrashLoopBackOff", "4 (2m ago)"],
        ),
    ],
)
def test_pod_cells_follow_the_kubectl_printer(
    status: dict[str, Any], meta: dict[str, Any], expected: list[str]
) -> None:
    now = datetime(2024, 1, 1, 1, 0, 0, tzinfo=UTC)
    init = [{"name": "storage-initializer"}] if "initContainerStatuses" in status else []
    pod = {"metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z", **meta},
           "spec": {"containers": [{"name": "c"}], "initContainers": init}, "status": status}
    cells, _ = tables.pod_cells(pod, now)
    assert cells[1:4] == expected
    assert cells[4] == "60m"


def test_merge_patch_rfc7386_examples() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert patches.merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert patches.merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert patches.merge_patch({"a": "foo"}, "bar") == "bar"
    assert patches.merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}}  # inputs untouched


def test_json_patch_rfc6902_details() -> None:
    doc = {"foo": ["bar", "baz"], "a~b": 1, "c/d": 2}
    added = patch_formats.json_patch(doc, [{"op": "add", "path": "/foo/1", "value": "qux"}])
    assert added["foo"] == ["bar", "qux", "baz"]
    assert patch_formats.json_patch(doc, [{"op": "test", "path": "/a~0b", "value": 1.0}]) == doc
    assert patch_formats.json_patch(doc, [{"op": "test", "path": "/c~1d", "value": 2}]) == doc
    assert patch_formats.json_patch(doc, [{"op": "replace", "path": "", "value": {"x": 1}}]) == {"x": 1}
    with pytest.raises(patch_formats.PatchError):
        patch_formats.json_patch(doc, [{"op": "test", "path": "/a~0b", "value": True}])
    with pytest.raises(patch_formats.PatchError):
        patch_formats.json_patch(doc, [{"op": "add", "path": "/foo/5", "value": 1}])
    with pytest.raises(patch_formats.PatchError):
        patch_formats.json_patch(doc, [{"op": "move", "from": "/foo", "path": "/foo/0"}])
    with pytest.raises(patch_formats.PatchError):
        patch_formats.json_patch(doc, [{"op": "add", "path": "/foo/01", "value": 1}])


def test_defaulter_rewrites_each_legacy_framework() -> None:
    for framework in admission.LEGACY_FRAMEWORKS:
        isvc = {"metadata": {"name": "m"}, "spec": {"predictor": {framework: {"storageUri": "s3://b/m"}}}}
        model = admission.default_inferenceservice(isvc)["spec"]["predictor"]["model"]
        assert model["modelFormat"] == {"name": framework} and model["storageUri"] == "s3://b/m"
        assert model.get("protocolVersion") == ("v2" if framework in ("triton", "onnx", "huggingface") else None)
    modelmesh = {"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"}},
                 "spec": {"predictor": {"sklearn": {}}}}
    assert admission.default_inferenceservice(modelmesh) == modelmesh


def test_selectors_and_negotiation_helpers() -> None:
    reqs = parse_label_selector("a=b, c in (d,e),!f,g")
    assert [r.op for r in reqs] == ["=", "in", "!exists", "exists"]
    assert negotiate(TABLE_ACCEPT).form == "table"
    assert negotiate("application/vnd.kubernetes.protobuf,application/json").form == "json"
    assert negotiate(None).form == "json"
    target = parse_resource_path(["api", "v1", "namespaces", "x", "status"])
    assert target is not None and target.rt == NAMESPACES and target.name == "x" and target.subresource == "status"
    target = parse_resource_path(["api", "v1", "namespaces", "x", "configmaps"])
    assert target is not None and target.rt == CONFIGMAPS and target.namespace == "x" and target.name is None
    assert parse_resource_path(["api", "v1", "watch", "namespaces", "x", "pods"]).watch  # type: ignore[union-attr]


def test_schema_validation_reports_paths_inside_arrays() -> None:
    obj = isvc_manifest()
    obj["spec"]["predictor"]["containers"] = [{"name": "a", "image": 3, "env": [{"name": "X", "value": 1, "nope": 2}]}]
    result = validation.validate(obj, INFERENCESERVICES)
    assert result.unknown == ["spec.predictor.containers[0].env[0].nope"]
    assert [e.field for e in result.errors] == ["spec.predictor.containers[0].image",
                                                "spec.predictor.containers[0].env[0].value"]
