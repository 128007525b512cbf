"""SQLite object store of the local cluster: Kubernetes object semantics on one file.

What it guarantees, like etcd behind a real API server:

- a cluster-wide monotonic ``resourceVersion`` (one counter, bumped by every write);
- ``uid``, ``creationTimestamp`` and ``generation`` set by the server; ``generation`` is bumped only
  when ``spec`` changes (metadata-only and status writes leave it alone, as for CRDs with a status
  subresource);
- optimistic concurrency: a write carrying a stale ``resourceVersion`` raises :class:`StoreConflict`;
- a durable event log, so a watch can resume from any recent ``resourceVersion`` and a restart after
  ``kill -9`` loses nothing (WAL journal; each write is one transaction).

All methods are synchronous and meant to be called from the API server's event-loop thread; SQLite
answers in microseconds here, so there is nothing to gain from a thread pool.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kserve_nb import resources
from kserve_nb.patches import clone

# Keep this many events for watch resumption; older resourceVersions answer 410 Gone.
EVENT_RETENTION = 20_000


def _private_file(path: Path) -> None:
    """Create ``path`` (if missing) readable by its owner only, or tighten it to that."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def tighten_state_dir(state_dir: Path) -> None:
    """Keep a state dir private to its owner: 0700 for it and its directories, 0600 for its own
    files and its logs (objects, secrets, model output). Creation modes cover a new state dir;
    this tightens one made looser (by an older version, a restored backup, or by hand).

    Symbolic links are left alone (chmod would follow them out of the state dir), as are the files
    inside other directories (the storage mirror holds the user's own model trees).
    """
    def chmod(path: Path, mode: int) -> None:
        try:
            if not path.is_symlink():
                os.chmod(path, mode)
        except OSError:  # not ours (someone else's file in our dir): nothing we may change
            pass

    state_dir = Path(state_dir)
    chmod(state_dir, 0o700)
    for entry in state_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            chmod(entry, 0o700)
        elif entry.is_file():
            chmod(entry, 0o600)
    logs = state_dir / "logs"
    if logs.is_dir() and not logs.is_symlink():
        for root, dirs, files in os.walk(logs):
            for name in dirs:
                chmod(Path(root) / name, 0o700)
            for name in files:
                chmod(Path(root) / name, 0o600)


@dataclass(frozen=True)
class ResourceType:
    """A REST resource the local API server serves."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # False for objects the controller owns (pods, revisions): users may read but not write them.
    user_writable: bool = True
    has_status: bool = True
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    # Connect subresources served besides the object itself: (name, kind, verbs), e.g. a Service's
    # ``proxy`` (the API server's service proxy); listed in discovery as Kubernetes lists them.
    connect: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Unique key used in the store tables: ``plural.group``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


READ_ONLY_VERBS = ("get", "list", "watch")
# API groups compiled into kube-apiserver (the rest are CRDs): they differ in OpenAPI naming and
# accept strategic merge patches.
BUILTIN_GROUPS = frozenset({"", "apps"})


def is_builtin(rt: ResourceType) -> bool:
    """Whether ``rt`` is a built-in Kubernetes kind (not a custom resource)."""
    return rt.group in BUILTIN_GROUPS


NAMESPACES = ResourceType(
    "", "v1", "namespaces", "Namespace", "namespace", namespaced=False, short_names=("ns",),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
)
CONFIGMAPS = ResourceType(
    "", "v1", "configmaps", "ConfigMap", "configmap", short_names=("cm",), has_status=False
)
PODS = ResourceType(
    "", "v1", "pods", "Pod", "pod", short_names=("po",), categories=("all",),
    user_writable=False, verbs=READ_ONLY_VERBS,
)
INFERENCESERVICES = ResourceType(
    resources.GROUP, resources.VERSION, resources.PLURAL, resources.KIND, resources.KIND.lower(),
    short_names=("isvc",), categories=("all",),
)
REVISIONS = ResourceType(
    resources.KNATIVE_GROUP, resources.KNATIVE_VERSION, "revisions", "Revision", "revision", short_names=("rev",),
    categories=("all", "knative", "serving"), user_writable=False, verbs=READ_ONLY_VERBS,
)
# The Knative Service KServe creates per component, derived from the isvc (read-only here).
KSERVICES = ResourceType(
    resources.KNATIVE_GROUP, resources.KNATIVE_VERSION, "services", "Service", "service",
    short_names=("kservice", "ksvc"), categories=("all", "knative", "serving"),
    user_writable=False, verbs=READ_ONLY_VERBS,
)
# core/v1 Events the controller records (read-only for users).
EVENTS = ResourceType(
    "", "v1", "events", "Event", "event", short_names=("ev",), has_status=False,
    user_writable=False, verbs=READ_ONLY_VERBS,
)
# Standard (RawDeployment) mode: the predictor Deployments and Services and the Gateway API
# HTTPRoutes KServe creates per isvc (read-only here: the controller writes them).
DEPLOYMENTS = ResourceType(
    "apps", "v1", "deployments", "Deployment", "deployment", short_names=("deploy",), categories=("all",),
    user_writable=False, verbs=READ_ONLY_VERBS,
)
SERVICES = ResourceType(
    "", "v1", "services", "Service", "service", short_names=("svc",), categories=("all",),
    user_writable=False, verbs=READ_ONLY_VERBS,
    connect=(("proxy", "ServiceProxyOptions", ("create", "delete", "get", "patch", "update")),),
)
HTTPROUTES = ResourceType(
    "gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", "httproute", categories=("gateway-api",),
    user_writable=False, verbs=READ_ONLY_VERBS,
)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    NAMESPACES,
    CONFIGMAPS,
    PODS,
    SERVICES,
    EVENTS,
    DEPLOYMENTS,
    INFERENCESERVICES,
    REVISIONS,
    KSERVICES,
    HTTPROUTES,
)


class StoreError(Exception):
    """Base of store errors; the API server maps each subclass to a Kubernetes Status."""


class StoreNotFound(StoreError):
    pass


class StoreAlreadyExists(StoreError):
    pass


class StoreConflict(StoreError):
    """Stale resourceVersion on update/delete."""


class StoreGone(StoreError):
    """A watch asked for a resourceVersion older than the retained event log."""


def created_object(rt: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` as a create stores it: server-set metadata filled in (resourceVersion aside).

    Pure, so the API server's dry runs answer with exactly what a real create would store.
    """
    new = clone(dict(obj))
    meta = new.setdefault("metadata", {})
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = resources.now_rfc3339()
    meta.pop("resourceVersion", None)
    meta.pop("deletionTimestamp", None)
    if rt.group:  # CRDs (and our Knative types) carry a generation
        meta["generation"] = 1
    new["apiVersion"] = rt.api_version
    new["kind"] = rt.kind
    return new


def updated_object(
    rt: ResourceType, old: Mapping[str, Any], obj: Mapping[str, Any], subresource: str | None
) -> dict[str, Any]:
    """``obj`` as a replace of ``old`` stores it (pure; also what a dry-run replace answers).

    The main resource keeps the stored ``status``; ``subresource="status"`` keeps everything but
    ``status``. Server-owned metadata survives; ``generation`` goes up when ``spec`` changed.
    """
    old_meta = old["metadata"]
    if subresource == "status":
        new = clone(dict(old))
        if "status" in obj:
            new["status"] = clone(obj["status"])
        else:
            new.pop("status", None)
    else:
        new = clone(dict(obj))
        meta = new.setdefault("metadata", {})
        if rt.has_status:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if rt.group and new.get("spec") != old.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
    new["apiVersion"] = rt.api_version
    new["kind"] = rt.kind
    new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
    return new


@dataclass
class WatchEvent:
    """One change: ``type`` is ADDED, MODIFIED or DELETED; ``obj`` the object after the change."""

    rv: int
    type: str
    resource: str  # ResourceType.key
    namespace: str
    obj: dict[str, Any]


@dataclass
class _Subscriber:
    queue: asyncio.Queue[WatchEvent]
    resource: str | None
    namespace: str | None
    closed: bool = field(default=False)


class Store:
    """Kubernetes-style object store on SQLite. See the module docstring for its guarantees."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(self.path)  # before SQLite opens it: its -wal and -shm files copy its mode
        for companion in ("-wal", "-shm"):
            if self.path.with_name(self.path.name + companion).exists():
                _private_file(self.path.with_name(self.path.name + companion))
        # isolation_level=None: we manage transactions explicitly with BEGIN IMMEDIATE.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against process crashes (kill -9), which is what we promise.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS objects (
                resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                rv INTEGER NOT NULL, body TEXT NOT NULL,
                PRIMARY KEY (resource, namespace, name));
            CREATE TABLE IF NOT EXISTS events (
                rv INTEGER PRIMARY KEY, type TEXT NOT NULL, resource TEXT NOT NULL,
                namespace TEXT NOT NULL, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS private (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )
        row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        self._rv = int(row[0]) if row else 1
        self._subscribers: list[_Subscriber] = []

    # ------------------------------------------------------------------ reads

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion written."""
        return self._rv

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None."""
        row = self._db.execute(
            "SELECT body FROM objects WHERE resource=? AND namespace=? AND name=?",
            (rt.key, namespace or "", name),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: Mapping[str, str | None] | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Objects of ``rt`` (in ``namespace``, or everywhere when None), sorted by namespace and name.

        ``label_selector`` maps label keys to a required value, or to None for "key exists".
        Returns the items and the list's resourceVersion.
        """
        if namespace:
            rows = self._db.execute(
                "SELECT body FROM objects WHERE resource=? AND namespace=? ORDER BY namespace, name",
                (rt.key, namespace),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT body FROM objects WHERE resource=? ORDER BY namespace, name", (rt.key,)
            ).fetchall()
        items = [json.loads(r[0]) for r in rows]
        if label_selector:
            items = [o for o in items if matches_labels(o, label_selector)]
        return items, self._rv

    # ----------------------------------------------------------------- writes

    def create(self, rt: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new object; server-set metadata is filled in. Raises StoreAlreadyExists."""
        meta = obj.get("metadata") or {}
        name = meta["name"]
        namespace = meta.get("namespace", "") if rt.namespaced else ""
        if self.get(rt, namespace, name) is not None:
            raise StoreAlreadyExists(name)
        new = created_object(rt, obj)
        return self._write(rt, "ADDED", namespace, name, new)

    def update(
        self,
        rt: ResourceType,
        obj: Mapping[str, Any],
        *,
        check_rv: bool = True,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object.

        The main resource keeps the stored ``status`` (status subresource semantics); ``subresource
        ="status"`` keeps everything but ``status``. ``generation`` goes up when ``spec`` changed.
        A ``metadata.resourceVersion`` that does not match raises StoreConflict (when ``check_rv``).
        """
        meta = obj.get("metadata") or {}
        name = meta["name"]
        namespace = meta.get("namespace", "") if rt.namespaced else ""
        old = self.get(rt, namespace, name)
        if old is None:
            raise StoreNotFound(name)
        sent_rv = meta.get("resourceVersion")
        if check_rv and sent_rv not in (None, "") and str(sent_rv) != old["metadata"]["resourceVersion"]:
            raise StoreConflict(name)
        new = updated_object(rt, old, obj, subresource)
        if new == old:
            return old  # a no-op write bumps nothing and emits no event, as in Kubernetes
        return self._write(rt, "MODIFIED", namespace, name, new)

    def delete(
        self, rt: ResourceType, namespace: str | None, name: str, *, expect_rv: str | None = None
    ) -> dict[str, Any]:
        """Delete and return the object (with a fresh resourceVersion). Raises StoreNotFound."""
        ns = namespace or ""
        old = self.get(rt, ns, name)
        if old is None:
            raise StoreNotFound(name)
        if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
            raise StoreConflict(name)
        return self._write(rt, "DELETED", ns, name, old)

    def _write(
        self, rt: ResourceType, etype: str, namespace: str, name: str, obj: dict[str, Any]
    ) -> dict[str, Any]:
        rv = self._rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        body = json.dumps(obj, separators=(",", ":"), sort_keys=True)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if etype == "DELETED":
                db.execute(
                    "DELETE FROM objects WHERE resource=? AND namespace=? AND name=?",
                    (rt.key, namespace, name),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO objects(resource, namespace, name, rv, body) VALUES (?,?,?,?,?)",
                    (rt.key, namespace, name, rv, body),
                )
            db.execute(
                "INSERT INTO events(rv, type, resource, namespace, body) VALUES (?,?,?,?,?)",
                (rv, etype, rt.key, namespace, body),
            )
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('rv', ?)", (str(rv),))
            if rv % 1000 == 0:
                db.execute("DELETE FROM events WHERE rv <= ?", (rv - EVENT_RETENTION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._rv = rv
        stored: dict[str, Any] = json.loads(body)
        self._publish(WatchEvent(rv, etype, rt.key, namespace, stored))
        return stored

    # ------------------------------------------------------------------ watch

    def events_since(
        self, rv: int, rt: ResourceType, namespace: str | None = None
    ) -> builtins.list[WatchEvent]:
        """Events of ``rt`` newer than ``rv``. Raises StoreGone when ``rv`` is older than the log."""
        oldest = self._db.execute("SELECT MIN(rv) FROM events").fetchone()[0]
        if oldest is not None and rv < oldest - 1 and rv < self._rv:
            raise StoreGone(f"too old resource version: {rv} ({oldest - 1})")
        if namespace:
            rows = self._db.execute(
                "SELECT rv, type, resource, namespace, body FROM events "
                "WHERE rv > ? AND resource=? AND namespace=? ORDER BY rv",
                (rv, rt.key, namespace),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT rv, type, resource, namespace, body FROM events "
                "WHERE rv > ? AND resource=? ORDER BY rv",
                (rv, rt.key),
            ).fetchall()
        return [WatchEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def subscribe(
        self, rt: ResourceType | None = None, namespace: str | None = None
    ) -> _Subscriber:
        """Receive every future event (of ``rt`` in ``namespace``) on ``sub.queue``."""
        sub = _Subscriber(asyncio.Queue(), rt.key if rt else None, namespace or None)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        """Stop delivering events to ``sub``."""
        sub.closed = True
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def _publish(self, event: WatchEvent) -> None:
        for sub in list(self._subscribers):
            if sub.resource and sub.resource != event.resource:
                continue
            if sub.namespace and sub.namespace != event.namespace:
                continue
            sub.queue.put_nowait(event)

    # -------------------------------------------------------- private state

    def get_private(self, key: str) -> Any:
        """Controller-private JSON value (not an API object), or None."""
        row = self._db.execute("SELECT value FROM private WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_private(self, key: str, value: Any) -> None:
        """Store a controller-private JSON value durably (None deletes it)."""
        if value is None:
            self._db.execute("DELETE FROM private WHERE key=?", (key,))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO private(key, value) VALUES (?, ?)",
                (key, json.dumps(value, sort_keys=True)),
            )

    def private_keys(self, prefix: str) -> Iterable[str]:
        """Keys of private values starting with ``prefix``."""
        rows = self._db.execute(
            "SELECT key FROM private WHERE key >= ? AND key < ?", (prefix, prefix + "\uffff")
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close the database; subscribers stop receiving events."""
        for sub in list(self._subscribers):
            self.unsubscribe(sub)
        self._db.close()


def matches_labels(obj: Mapping[str, Any], selector: Mapping[str, str | None]) -> bool:
    """Equality-based label selector: every key present, and equal where a value is given."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key, value in selector.items():
        if key not in labels:
            return False
        if value is not None and labels[key] != value:
            return False
    return True
