"""The request handlers (:class:`ApiServer`) bound to one store."""

from __future__ import annotations

import hmac
import platform
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from kserve_nb.local import api_discovery as discovery
from kserve_nb.local import openapi, tables, validation
from kserve_nb.local.admission import (
    AdmissionDenied,
    FieldError,
    default_inferenceservice,
    validate_inferenceservice,
    validate_object_meta,
)
from kserve_nb.local.apiserver.codec import (
    APPLY_PATCH,
    DISCOVERY_V2,
    DISCOVERY_V2BETA1,
    JSON,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    check_json,
    decode_body,
    json_response,
    negotiate,
    negotiate_openapi_v2,
    wants_discovery_v2,
)
from kserve_nb.local.apiserver.failures import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid_error,
    method_not_allowed,
    not_found,
    path_not_found,
    status_details,
    status_for,
    unsupported_media_type,
)
from kserve_nb.local.apiserver.proxy import EndpointSource, ServiceProxy, is_proxy_path
from kserve_nb.local.apiserver.requests import (
    ResourcePath,
    WriteOptions,
    generate_name,
    parse_resource_path,
    query_flag,
    strip_server_fields,
)
from kserve_nb.local.apiserver.selectors import Selection, parse_field_selector, parse_label_selector
from kserve_nb.local.apiserver.watch import OpenWatches, WatchStream
from kserve_nb.local.patch_formats import (
    PatchError,
    applied_fields,
    apply_merge,
    fields_v1,
    get_path,
    json_patch,
    parse_fields_v1,
    remove_path,
    strategic_merge_patch,
)
from kserve_nb.local.store import (
    CONFIGMAPS,
    INFERENCESERVICES,
    NAMESPACES,
    RESOURCE_TYPES,
    ResourceType,
    Store,
    StoreAlreadyExists,
    StoreConflict,
    StoreNotFound,
    created_object,
    updated_object,
)
from kserve_nb.patches import clone, merge_patch
from kserve_nb.resources import now_rfc3339

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}
MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's request size limit
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class ApiServer:
    """Request handlers bound to one store. Use :func:`create_app` to get a wired application.

    ``endpoints`` names the pods behind each Service for the service proxy (None: none has any).
    """

    def __init__(self, store: Store, token: str, endpoints: EndpointSource | None = None) -> None:
        self.store = store
        self._token = ("Bearer " + token).encode()
        self._documents = openapi.build_documents()
        self._watches = OpenWatches()
        self.proxy = ServiceProxy(store, endpoints)

    # ------------------------------------------------------------------ middleware

    def authorized(self, request: web.Request) -> bool:
        """Whether the request carries the bearer token (constant-time comparison)."""
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), self._token)

    async def on_shutdown(self, _app: web.Application) -> None:
        """End every open watch so the server can stop without waiting for clients; close the
        service proxy's connections."""
        self._watches.close()
        await self.proxy.close()

    # -------------------------------------------------------------------- dispatch

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Route one request."""
        path = request.path
        segments = [unquote(s) for s in path.split("/") if s]
        if is_proxy_path(segments):
            return await self.proxy.serve(request, segments)
        if request.method in ("GET", "HEAD"):
            fixed = self._fixed_route(path, segments, request)
            if fixed is not None:
                return fixed
        resource = parse_resource_path(segments)
        if resource is None:
            raise path_not_found()
        return await self._serve_resource(request, resource)

    def _fixed_route(self, path: str, segments: list[str], request: web.Request) -> web.StreamResponse | None:
        if path in ("/healthz", "/livez", "/readyz") or (segments and segments[0] in ("healthz", "livez", "readyz")):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return json_response(self._version())
        if path == "/api":
            v2 = wants_discovery_v2(request.headers.get("Accept"))
            if v2:
                content = DISCOVERY_V2 if v2 == "v2" else DISCOVERY_V2BETA1
                return json_response(discovery.aggregated_discovery(True, v2), content_type=content)
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
        if path == "/apis":
            v2 = wants_discovery_v2(request.headers.get("Accept"))
            if v2:
                content = DISCOVERY_V2 if v2 == "v2" else DISCOVERY_V2BETA1
                return json_response(discovery.aggregated_discovery(False, v2), content_type=content)
            return json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                  "groups": [discovery.api_group(g) for g in discovery.GROUPS]})
        if segments == ["api", "v1"]:
            return json_response(discovery.resource_list("", "v1"))
        if len(segments) == 2 and segments[0] == "apis":
            if segments[1] not in discovery.GROUPS:
                raise path_not_found()
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **discovery.api_group(segments[1])})
        if len(segments) == 3 and segments[0] == "apis":
            if (segments[1], segments[2]) not in discovery.BY_GROUP_VERSION:
                raise path_not_found()
            return json_response(discovery.resource_list(segments[1], segments[2]))
        if segments[:1] == ["openapi"]:
            return self._openapi(segments[1:], request.headers.get("Accept"))
        return None

    def _version(self) -> dict[str, Any]:
        machine = platform.machine().lower()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
        return {**KUBERNETES_VERSION, "gitCommit": "kserve-nb-local", "gitTreeState": "clean",
                "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3", "compiler": "gc",
                "platform": f"{platform.system().lower()}/{arch}"}

    def _openapi(self, rest: list[str], accept: str | None) -> web.StreamResponse:
        docs = self._documents
        if rest == ["v2"]:
            if negotiate_openapi_v2(accept):
                return web.Response(body=docs.v2, content_type=JSON)
            # Only protobuf wanted (kubectl's patcher): we have none, answer as a server without v2.
            raise path_not_found()
        if rest == ["v3"]:
            return json_response(docs.v3_root())
        if rest[:1] == ["v3"]:
            gv = "/".join(rest[1:])
            body = docs.v3.get(gv)
            if body is None:
                raise path_not_found()
            response = web.Response(body=body, content_type=JSON)
            response.headers["Cache-Control"] = "public, immutable"
            response.headers["Etag"] = f'"{docs.v3_hash[gv]}"'
            return response
        raise path_not_found()

    async def _serve_resource(self, request: web.Request, resource: ResourcePath) -> web.StreamResponse:
        method = request.method
        rt = resource.rt
        if resource.subresource is not None:
            if resource.subresource != "status" or not rt.has_status or not rt.user_writable:
                raise path_not_found()
            if method == "GET":
                return self._get(request, resource)
            if method == "PUT":
                return await self._replace(request, resource)
            if method == "PATCH":
                return await self._patch(request, resource)
            raise method_not_allowed()
        if resource.name is None:
            if method == "GET":
                if resource.watch or query_flag(request.query, "watch"):
                    return await self._watch(request, resource)
                return self._list(request, resource)
            if method == "POST" and rt.user_writable:
                return await self._create(request, resource)
            if method == "DELETE" and rt.user_writable:
                return await self._delete_collection(request, resource)
            raise method_not_allowed()
        if method == "GET":
            if resource.watch or query_flag(request.query, "watch"):
                return await self._watch(request, resource)
            return self._get(request, resource)
        if not rt.user_writable:
            raise method_not_allowed()
        if method == "PUT":
            return await self._replace(request, resource)
        if method == "PATCH":
            return await self._patch(request, resource)
        if method == "DELETE":
            return await self._delete(request, resource)
        raise method_not_allowed()

    # ------------------------------------------------------------------------ reads

    def _get(self, request: web.Request, resource: ResourcePath) -> web.Response:
        rt = resource.rt
        assert resource.name is not None
        obj = self.store.get(rt, resource.namespace if rt.namespaced else None, resource.name)
        if obj is None:
            raise not_found(rt, resource.name)
        return self._render(request, rt, [obj], single=True)

    def _selection(self, request: web.Request, resource: ResourcePath) -> Selection:
        params = request.query
        selection = Selection(parse_label_selector(params.get("labelSelector")),
                              parse_field_selector(params.get("fieldSelector"), resource.rt))
        if resource.name is not None:
            selection.fields.append(("metadata.name", True, resource.name))
        return selection

    def _list(self, request: web.Request, resource: ResourcePath) -> web.Response:
        rt = resource.rt
        selection = self._selection(request, resource)
        items, rv = self.store.list(rt, resource.namespace if rt.namespaced else None)
        items = [o for o in items if selection.matches(o)]
        return self._render(request, rt, items, single=False, resource_version=str(rv))

    def _render(self, request: web.Request, rt: ResourceType, items: list[dict[str, Any]], *,
                single: bool, resource_version: str | None = None) -> web.Response:
        form = negotiate(request.headers.get("Accept"))
        if form.form == "table":
            include = request.query.get("includeObject") or "Metadata"
            if include not in ("None", "Metadata", "Object"):
                raise bad_request(
                    f'includeObject: Unsupported value: "{include}": supported values: "None", "Metadata", "Object"'
                )
            rv = resource_version if not single else None
            table = tables.to_table(rt, items, include_object=include, resource_version=rv,
                                    api_version=form.api_version)
            return json_response(table, content_type=form.content_type)
        if form.form == "partial":
            partials = [tables.partial_object_metadata(o, form.api_version) for o in items]
            if single:
                return json_response(partials[0])
            return json_response({"kind": "PartialObjectMetadataList", "apiVersion": form.api_version,
                                  "metadata": {"resourceVersion": resource_version}, "items": partials})
        if single:
            return json_response(items[0])
        return json_response({"apiVersion": rt.api_version, "items": items, "kind": rt.kind + "List",
                              "metadata": {"continue": "", "resourceVersion": resource_version}})

    # ----------------------------------------------------------------------- writes

    async def _body(self, request: web.Request) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "RequestEntityTooLarge",
                           f"Request entity too large: limit is {MAX_BODY_BYTES}") from None
        return decode_body(raw, request.content_type)

    def _check_kind(self, rt: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            kind = validation.json_type(body)
            raise bad_request(f"couldn't get version/kind; json parse error: json: cannot unmarshal {kind} "
                              "into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; "
                              "Kind string \"json:\\\"kind,omitempty\\\"\" }")
        # A missing apiVersion or kind defaults to the URL's, as the API server's decoder does.
        api_version = body.get("apiVersion") or rt.api_version
        kind = body.get("kind") or rt.kind
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise bad_request("couldn't get version/kind; json parse error: json: cannot unmarshal non-string "
                              "into Go struct field .apiVersion of type string")
        if api_version != rt.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected "
                              f"API version ({rt.api_version})")
        if kind != rt.kind:
            version = api_version.rsplit("/", 1)[-1]
            raise bad_request(f'{kind} in version "{version}" cannot be handled as a {rt.kind}: no kind '
                              f'"{kind}" is registered for version "{rt.api_version}" in scheme '
                              '"pkg/runtime/scheme.go:100"')
        return {**body, "apiVersion": api_version, "kind": kind}

    def _schema_check(self, rt: ResourceType, obj: dict[str, Any], name: str,
                      options: WriteOptions) -> tuple[dict[str, Any], list[str]]:
        """Field validation: unknown fields by ``fieldValidation`` mode, then types (422 / 400)."""
        result = validation.validate(obj, rt)
        warnings: list[str] = []
        if result.unknown:
            texts = [f'unknown field "{path}"' for path in result.unknown]
            if options.field_validation == "Strict":
                raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                  f"strict decoding error: {', '.join(texts)}")
            if options.field_validation == "Warn":
                warnings = texts
        if result.errors:
            if rt.group:
                raise invalid_error(rt, name, result.errors)
            path, actual, expected = result.type_errors[0] if result.type_errors else (result.errors[0].field, "", "")
            if result.type_errors:
                raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                  + validation.go_type_error(rt.kind, path, actual, expected))
            raise invalid_error(rt, name, result.errors)
        return result.obj, warnings

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
               subresource: str | None) -> dict[str, Any]:
        """Object-meta validation (422) and type-specific admission; returns the object to store."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        rule = "label" if rt.key == NAMESPACES.key else "subdomain"
        errors = validate_object_meta(meta, name_rule=rule)
        if old is None and meta.get("resourceVersion"):
            meta.pop("resourceVersion", None)
        if errors:
            raise invalid_error(rt, name, errors)
        if rt.key == NAMESPACES.key:
            meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = name
            if old is None:
                obj["spec"] = {"finalizers": ["kubernetes"]}
                obj["status"] = {"phase": "Active"}
        elif rt.has_status and old is None:
            obj.pop("status", None)  # the status subresource: create ignores status
        if rt.key == INFERENCESERVICES.key and subresource is None:
            obj = default_inferenceservice(obj)
            try:
                validate_inferenceservice(obj, old)
            except AdmissionDenied as exc:
                raise ApiError(403, "Forbidden", exc.message) from None
        return obj

    def _prepare(self, rt: ResourceType, body: Any, *, namespace: str | None, url_name: str | None,
                 old: dict[str, Any] | None, options: WriteOptions, subresource: str | None = None,
                 managed_fields: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], list[str]]:
        # ``body`` is ours (freshly decoded or patched): no copy needed, _check_kind makes a shallow one.
        obj = self._check_kind(rt, body)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        elif not isinstance(meta, dict):
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                              f"json: cannot unmarshal {validation.json_type(meta)} into Go struct field "
                              f"{rt.kind}.metadata of type v1.ObjectMeta")
        strip_server_fields(meta)
        # managedFields are the server's: kept from the stored object unless an apply computed new ones.
        if managed_fields is not None:
            meta["managedFields"] = managed_fields
        elif old is not None and (old.get("metadata") or {}).get("managedFields"):
            meta["managedFields"] = old["metadata"]["managedFields"]
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if url_name is not None:
            body_name = meta.get("name")
            if body_name and body_name != url_name:
                raise bad_request(
                    f"the name of the object ({body_name}) does not match the name on the URL ({url_name})"
                )
            meta["name"] = url_name
        elif not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(str(meta["generateName"]))
        name = str(meta.get("name") or "")
        check_json(obj)  # a patch may deepen what it patches (a JSON patch adds below any path)
        obj, warnings = self._schema_check(rt, obj, name, options)
        return self._admit(rt, obj, old, subresource), warnings

    async def _create(self, request: web.Request, resource: ResourcePath) -> web.Response:
        rt = resource.rt
        options = WriteOptions.parse(request.query)
        body = await self._body(request)
        obj, warnings = self._prepare(rt, body, namespace=resource.namespace, url_name=None, old=None, options=options)
        return self._store_create(resource, obj, options, warnings)

    def _store_create(self, resource: ResourcePath, obj: dict[str, Any], options: WriteOptions,
                      warnings: list[str]) -> web.Response:
        rt = resource.rt
        name = obj["metadata"]["name"]
        if rt.namespaced:
            if resource.namespace is None:
                raise method_not_allowed()
            if self.store.get(NAMESPACES, None, resource.namespace) is None:
                raise not_found(NAMESPACES, resource.namespace)
        if options.dry_run:
            if self.store.get(rt, resource.namespace, name) is not None:
                raise already_exists(rt, name)
            return json_response(created_object(rt, obj), status=201, warnings=warnings)
        try:
            created = self.store.create(rt, obj)
        except StoreAlreadyExists:
            raise already_exists(rt, name) from None
        return json_response(created, status=201, warnings=warnings)

    def _existing(self, resource: ResourcePath) -> dict[str, Any]:
        rt = resource.rt
        assert resource.name is not None
        old = self.store.get(rt, resource.namespace if rt.namespaced else None, resource.name)
        if old is None:
            raise not_found(rt, resource.name)
        return old

    def _store_update(self, resource: ResourcePath, obj: dict[str, Any], old: dict[str, Any],
                      options: WriteOptions) -> dict[str, Any]:
        rt = resource.rt
        assert resource.name is not None
        sent_rv = obj["metadata"].get("resourceVersion")
        if sent_rv not in (None, "") and str(sent_rv) != old["metadata"]["resourceVersion"]:
            raise conflict(rt, resource.name)
        if options.dry_run:
            return updated_object(rt, old, obj, resource.subresource)
        try:
            return self.store.update(rt, obj, subresource=resource.subresource)
        except (StoreNotFound, StoreConflict) as exc:
            raise status_for(rt, resource.name, exc) from None

    async def _replace(self, request: web.Request, resource: ResourcePath) -> web.Response:
        rt = resource.rt
        options = WriteOptions.parse(request.query)
        body = await self._body(request)
        old = self._existing(resource)
        obj, warnings = self._prepare(rt, body, namespace=resource.namespace, url_name=resource.name, old=old,
                                      options=options, subresource=resource.subresource)
        if rt.group and not obj["metadata"].get("resourceVersion"):
            # Custom resources do not allow unconditional updates.
            missing = FieldError(
                "metadata.resourceVersion", "FieldValueInvalid", "Invalid value: 0x0: must be specified for an update"
            )
            raise invalid_error(rt, str(resource.name), [missing])
        updated = self._store_update(resource, obj, old, options)
        return json_response(updated, warnings=warnings)

    async def _patch(self, request: web.Request, resource: ResourcePath) -> web.Response:
        rt = resource.rt
        options = WriteOptions.parse(request.query)
        ctype = request.content_type
        accepted = openapi.patch_content_types(rt)
        if ctype not in accepted or (ctype == APPLY_PATCH and resource.subresource is not None):
            raise unsupported_media_type([t for t in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
                                          if t in accepted])
        if ctype == APPLY_PATCH:
            return await self._apply(request, resource, options)
        if query_flag(request.query, "force"):
            raise bad_request("force: Invalid value: true: may not be specified for non-apply patch")
        raw = await request.read()
        try:
            patch = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        check_json(patch)
        old = self._existing(resource)
        try:
            if ctype == JSON_PATCH:
                patched = json_patch(old, patch)
            elif ctype == MERGE_PATCH:
                patched = merge_patch(old, patch)
            else:
                patched = strategic_merge_patch(old, patch)
        except PatchError as exc:
            if exc.bad_request:
                raise bad_request(exc.message) from None
            # A real server says only this; the cause (our addition) tells which operation failed.
            cause = {"reason": "FieldValueInvalid", "field": exc.path, "message": exc.message}
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request",
                           {"causes": [cause]}) from None
        if patched is None:
            raise bad_request("the patch removed the whole object")
        obj, warnings = self._prepare(rt, patched, namespace=resource.namespace, url_name=resource.name, old=old,
                                      options=options, subresource=resource.subresource)
        updated = self._store_update(resource, obj, old, options)
        return json_response(updated, warnings=warnings)

    async def _apply(self, request: web.Request, resource: ResourcePath, options: WriteOptions) -> web.Response:
        """Server-side apply (``application/apply-patch+yaml``), with ownership tracked per Apply manager.

        Fields the manager applied before and no longer applies are removed unless another Apply
        manager owns them; changing a field another Apply manager owns is a conflict unless
        ``force=true``. Writers using update/patch are not tracked as owners (a simplification).
        """
        rt = resource.rt
        name = str(resource.name)
        manager = request.query.get("fieldManager", "")
        if not manager:
            raise bad_request("fieldManager: Required value: is required for apply patch")
        raw = await request.read()
        try:
            config = orjson.loads(raw)
            check_json(config)
        except orjson.JSONDecodeError:
            config = decode_body(raw, "application/yaml")
        config = self._check_kind(rt, config)
        old = self.store.get(rt, resource.namespace if rt.namespaced else None, name)
        entries = [e for e in ((old or {}).get("metadata") or {}).get("managedFields") or [] if isinstance(e, dict)]
        mine: set[tuple[str, ...]] = set()
        others: dict[int, set[tuple[str, ...]]] = {}
        for index, entry in enumerate(entries):
            if entry.get("operation") != "Apply":
                continue
            fields = parse_fields_v1(entry.get("fieldsV1"))
            if entry.get("manager") == manager:
                mine = fields
            else:
                others[index] = fields
        wanted = applied_fields(config)
        conflicts = self._apply_conflicts(old, config, wanted, others)
        if conflicts and not query_flag(request.query, "force"):
            raise self._conflict_error(rt, name, entries, conflicts)
        for index, path in conflicts:  # forced: the fields change hands
            others[index].discard(path)
        result = apply_merge(old or {}, config)
        for path in mine - wanted:
            if not any(path in fields for fields in others.values()):
                remove_path(result, path)
        # Other managers keep their entries (minus fields taken by force; emptied Apply entries go).
        managed = [dict(entry, fieldsV1=fields_v1(others[i])) if i in others else entry
                   for i, entry in enumerate(entries)
                   if not (entry.get("operation") == "Apply" and entry.get("manager") == manager)]
        managed = [e for e in managed if not (e.get("operation") == "Apply" and not e.get("fieldsV1"))]
        managed.append({"manager": manager, "operation": "Apply", "apiVersion": rt.api_version,
                        "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": fields_v1(wanted)})
        obj, warnings = self._prepare(rt, result, namespace=resource.namespace, url_name=name, old=old,
                                      options=options, managed_fields=managed)
        if old is None:
            return self._store_create(resource, obj, options, warnings)
        return json_response(self._store_update(resource, obj, old, options), warnings=warnings)

    @staticmethod
    def _apply_conflicts(old: dict[str, Any] | None, config: dict[str, Any], wanted: set[tuple[str, ...]],
                         others: dict[int, set[tuple[str, ...]]]) -> list[tuple[int, tuple[str, ...]]]:
        """(entry index, field) pairs the apply would change although another Apply manager owns them."""
        if old is None:
            return []
        conflicts = []
        for index, fields in others.items():
            for path in sorted(wanted & fields):
                if get_path(old, path) != get_path(config, path):
                    conflicts.append((index, path))
        return conflicts

    def _conflict_error(self, rt: ResourceType, name: str, entries: list[Any],
                        conflicts: list[tuple[int, tuple[str, ...]]]) -> ApiError:
        """409 for an apply that would change fields another Apply manager owns (SSA's wording)."""
        by_manager: dict[str, list[str]] = {}
        causes = []
        for index, path in conflicts:
            manager = f'"{entries[index].get("manager", "")}"'
            field = "." + ".".join(path)
            by_manager.setdefault(manager, []).append(field)
            causes.append({"reason": "FieldManagerConflict", "message": f"conflict with {manager}", "field": field})
        if len(conflicts) == 1:
            message = f"Apply failed with 1 conflict: conflict with {next(iter(by_manager))}: {causes[0]['field']}"
        else:
            parts = []
            for manager in sorted(by_manager):
                parts.append(f"conflicts with {manager}:")
                parts += [f"- {field}" for field in by_manager[manager]]
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(parts)
        return ApiError(409, "Conflict", message, {"causes": causes})

    # ---------------------------------------------------------------------- deletes

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            options: dict[str, Any] = {}
        else:
            options = decode_body(raw, request.content_type)
            _check_delete_options(options)
        dry = list(request.query.getall("dryRun", [])) + list(options.get("dryRun") or [])
        if any(d != "All" for d in dry if d):
            raise bad_request(f"Invalid dry run value: {dry}")
        policy = options.get("propagationPolicy") or request.query.get("propagationPolicy")
        if policy not in (None, "", "Orphan", "Background", "Foreground"):
            raise bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                              '"Foreground", "Background", "Orphan", "nil"')
        options["_dry_run"] = any(dry)
        return options

    async def _delete(self, request: web.Request, resource: ResourcePath) -> web.Response:
        rt = resource.rt
        name = str(resource.name)
        options = await self._delete_options(request)
        old = self._existing(resource)
        preconditions = options.get("preconditions") or {}
        uid = preconditions.get("uid")
        if uid and uid != old["metadata"].get("uid"):
            raise conflict(rt, name, f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                                     f"{old['metadata'].get('uid')}")
        want_rv = preconditions.get("resourceVersion")
        if want_rv and want_rv != old["metadata"].get("resourceVersion"):
            raise conflict(rt, name, f"the ResourceVersion in the precondition ({want_rv}) does not match the "
                                     f"ResourceVersion in record ({old['metadata'].get('resourceVersion')}). "
                                     "The object might have been modified")
        if rt.key == NAMESPACES.key and name in PROTECTED_NAMESPACES:
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           status_details(rt, name))
        if options["_dry_run"]:
            deleted = old
        else:
            if rt.key == NAMESPACES.key:
                self._empty_namespace(name)
            try:
                deleted = self.store.delete(rt, resource.namespace if rt.namespaced else None, name)
            except StoreNotFound:
                raise not_found(rt, name) from None
        return json_response(self._deleted_body(rt, deleted))

    def _deleted_body(self, rt: ResourceType, deleted: dict[str, Any]) -> dict[str, Any]:
        meta = deleted.get("metadata") or {}
        if rt.key == CONFIGMAPS.key:
            # Built-in types without ReturnDeletedObject answer a Success Status.
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": meta.get("name"), "kind": rt.plural, "uid": meta.get("uid")}}
        if rt.key == NAMESPACES.key:
            out = clone(deleted)
            out["metadata"]["deletionTimestamp"] = now_rfc3339()
            out["status"] = {"phase": "Terminating"}
            return out
        return deleted

    def _empty_namespace(self, namespace: str) -> None:
        """Delete every namespaced object in ``namespace`` (isvcs first, so the controller sees them go)."""
        order = sorted((rt for rt in RESOURCE_TYPES if rt.namespaced),
                       key=lambda rt: rt.key != INFERENCESERVICES.key)
        for rt in order:
            items, _ = self.store.list(rt, namespace)
            for item in items:
                try:
                    self.store.delete(rt, namespace, item["metadata"]["name"])
                except StoreNotFound:
                    pass

    async def _delete_collection(self, request: web.Request, resource: ResourcePath) -> web.Response:
        rt = resource.rt
        options = await self._delete_options(request)
        selection = self._selection(request, resource)
        items, _ = self.store.list(rt, resource.namespace if rt.namespaced else None)
        deleted = []
        for item in items:
            if not selection.matches(item):
                continue
            name = item["metadata"]["name"]
            if rt.key == NAMESPACES.key and name in PROTECTED_NAMESPACES:
                continue
            if not options["_dry_run"]:
                if rt.key == NAMESPACES.key:
                    self._empty_namespace(name)
                item = self.store.delete(rt, item["metadata"].get("namespace") if rt.namespaced else None, name)
            deleted.append(item)
        return json_response({"apiVersion": rt.api_version, "kind": rt.kind + "List", "items": deleted,
                              "metadata": {"resourceVersion": str(self.store.resource_version)}})

    # ------------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, resource: ResourcePath) -> web.StreamResponse:
        return await WatchStream(self.store, self._watches, request, resource, self._selection(request, resource)).run()


# DeleteOptions fields and the Go types their JSON must decode into.
_DELETE_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,), "apiVersion": (str,), "gracePeriodSeconds": (int,), "orphanDependents": (bool,),
    "propagationPolicy": (str,), "dryRun": (list,), "preconditions": (dict,),
    "ignoreStoreReadErrorWithClusterBreakingPotential": (bool,),
}
_GO_TYPES: dict[type, str] = {str: "string", int: "int64", bool: "bool", list: "[]string", dict: "v1.Preconditions"}


def _check_delete_options(options: Any) -> None:
    """Type-check a DeleteOptions body the way Go's decoder would (400 naming the field)."""
    def go_kind(value: Any) -> str:
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, (int, float)):
            return "number"
        kinds: dict[type, str] = {str: "string", list: "array", dict: "object"}
        return kinds.get(type(value), "null")

    def mismatch(field: str, value: Any, expected: str) -> ApiError:
        return bad_request(f"json: cannot unmarshal {go_kind(value)} into Go struct field "
                           f"DeleteOptions.{field} of type {expected}")

    if not isinstance(options, dict):
        raise bad_request(f"json: cannot unmarshal {go_kind(options)} into Go value of type v1.DeleteOptions")
    for field, types in _DELETE_OPTION_TYPES.items():
        value = options.get(field)
        if value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise mismatch(field, value, _GO_TYPES[types[0]])
    for item in options.get("dryRun") or []:
        if not isinstance(item, str):
            raise mismatch("dryRun", item, "string")
    for field in ("uid", "resourceVersion"):
        value = (options.get("preconditions") or {}).get(field)
        if value is not None and not isinstance(value, str):
            raise mismatch(f"preconditions.{field}", value, "string")
