"""nginx as the local cluster's ingress data plane, with the Python :class:`Gateway` behind it.

Why: every request the Python gateway proxies costs it CPU (two wake-ups of an interpreter whose
caches the model server has just evicted), which shows as added latency even at concurrency 1;
nginx adds much less (``benchmarks/bench_gateway.py`` measures both, paired, request by request).
So when nginx and its Lua module are installed (Debian's ``nginx`` and ``libnginx-mod-http-lua``;
``KSERVE_NB_INGRESS=python`` opts out), the ingress port belongs to an nginx master process that this
module configures and supervises.

The config is static; routes change without a reload, as in Kubernetes' ingress-nginx: the daemon
POSTs the whole table to a control endpoint (loopback, its own random token), which stores it in a
shared dictionary; each worker re-parses it when its version changes. A reload would close every
idle keep-alive client connection on each routing change. Per request:

- Lua looks the ``Host`` up and picks a ready revision at random by weight (what Istio's weighted
  clusters do), by the table and the rule of :mod:`kserve_nb.local.routing` (the Python gateway's
  too); nginx keeps pooled keep-alive connections to the revisions;
- a connection error (refused: the revision just died) is retried once on another target of the
  route, or handed to the Python gateway when there is none (it then answers 503 and says why);
  nginx never re-sends a POST once it reached a model;
- ``x-kserve-revision`` names the revision that answered;
- everything else goes to the Python :class:`Gateway`, which listens on a private loopback port and
  holds the same table: unknown hosts (404 naming the known ones), routes without a ready revision
  (503 naming the cause), and bodies without a JSON content type (``curl -d``), which it coerces as
  documented there;
- nginx's own failures (a revision that died mid-request, an oversized body) answer JSON too;
- every request nginx forwards to a revision is counted, as Knative's queue-proxy counts it
  (:mod:`kserve_nb.local.exporter`: ``revision_app_request_count`` and the
  ``revision_app_request_latencies`` histogram, in a shared dictionary, from the log phase), and
  served in Prometheus' text format at ``/metrics`` on the control port behind its bearer token.
  Requests handed to the Python gateway are counted there instead, never twice.

:meth:`NginxIngress.update` returns at once; ``on_programmed`` is called once nginx holds the table
(the controller holds status that announces new routes until then, as Knative holds a Route's
readiness until its ingress is programmed).

nginx is data plane: it outlives the daemon (no parent-death signal, its own session) and keeps
routing by the table it holds. While no daemon runs, what nginx would hand to the Python gateway
(unknown hosts, routes without a ready revision, bodies that are not JSON) is answered by nginx
itself: 503, the control plane is not running. ``ingress.json`` (0600) records the master (pid and
start time), its workers, both ports, the Python gateway's port, the control token and the table
nginx holds; a restarted daemon's :meth:`NginxIngress.start` adopts that nginx when it is still the
recorded process and answers its control endpoint: same port, same table, no request lost (it
reloads gracefully only if the config must change, e.g. the Python gateway's port was taken). An
nginx whose directory is deleted stops itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Union

import httpx
import psutil

from kserve_nb.local import dataplane, routing
from kserve_nb.local.exporter import (
    CONTENT_TYPE,
    HEADER_COUNT,
    HEADER_LATENCIES,
    LE_LABELS,
    REQUEST_COUNT,
    REQUEST_LATENCIES,
    RequestMetrics,
)
from kserve_nb.local.gateway import (
    CLIENT_IDLE_SECONDS,
    MAX_BODY_BYTES,
    MODEL_REPOSITORY_REFUSAL,
    UPSTREAM_TIMEOUT_SECONDS,
    Gateway,
)
from kserve_nb.local.routing import Endpoints, Routes, decode_table, encode_table
from kserve_nb.metrics.sample import LATENCY_BUCKETS_MS

log = logging.getLogger(__name__)

#: ``KSERVE_NB_INGRESS``: ``nginx`` (require it), ``python`` (never use it) or ``auto`` (the default).
INGRESS_ENV = "KSERVE_NB_INGRESS"
#: Where Debian's nginx keeps its dynamic modules (NDK and Lua, from ``libnginx-mod-http-lua``).
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/local/nginx/modules")
_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")
#: Bound on waiting for nginx to start, or to take a table.
PROGRAM_TIMEOUT_SECONDS = 10.0
#: Restart back-off after nginx dies on its own (it never should).
RESTART_DELAYS = (0.1, 0.5, 2.0, 5.0)
#: What the ingress records in its directory (see the module docstring).
RECORD = dataplane.INGRESS_RECORD.name
#: nginx's answer when the request needs the Python gateway and no daemon runs. Inside a
#: single-quoted nginx string: no quotes, backslashes or dollars.
CONTROL_PLANE_DOWN = (
    "the control plane of the local cluster is not running, and this request needs it (an unknown "
    "host, a route without a ready revision, or a body that is not JSON); ready revisions still "
    "serve JSON requests. Start it with: kserve-nb local up"
)

# Rule 6 of kserve_nb.local.routing as nginx answers it, inside a single-quoted nginx string where
# $kn_revision is the target nginx tried last.
_TIMED_OUT = routing.timeout_message("$kn_revision", UPSTREAM_TIMEOUT_SECONDS)

#: The nginx master: started by this daemon, or adopted from an earlier one.
Master = Union["subprocess.Popen[bytes]", dataplane.AdoptedProcess]


def find_nginx() -> tuple[str, Path] | None:
    """The nginx binary and its module directory, or ``None`` (none, or ``KSERVE_NB_INGRESS=python``).

    Raises ``RuntimeError`` when ``KSERVE_NB_INGRESS=nginx`` but nginx or its Lua module is missing.
    """
    choice = os.environ.get(INGRESS_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "nginx", "python"):
        raise RuntimeError(f"{INGRESS_ENV}={choice!r}: use nginx, python or auto")
    if choice == "python":
        return None
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    modules = next((Path(d) for d in MODULE_DIRS if all((Path(d) / m).is_file() for m in _MODULES)), None)
    if binary is None or modules is None:
        if choice == "nginx":
            raise RuntimeError(
                f"{INGRESS_ENV}=nginx but nginx with its Lua module is not installed: "
                "apt-get install nginx libnginx-mod-http-lua"
            )
        return None
    return binary, modules


# The Lua side: parse the pushed table once per version per worker, pick by weight; count what
# was forwarded to a revision (the metric labels of each target are built at parse time).
_LUA_INIT = r"""
    kn = {}
    local dict = ngx.shared.kn
    local version, routes = nil, {}
    -- revision -> its metric labels, kept across tables: a request that outlived its route is
    -- still counted under its revision
    local series_of = {}
    local function parse(text)
      local parsed = {}
      for line in string.gmatch(text, "[^\n]+") do
        local host, rest = string.match(line, "^(%S+) (.+)$")
        if host then
          local targets, total = {}, 0
          for rev, port, weight, ns in string.gmatch(rest, "(%S+) (%d+) (%d+) (%S+)") do
            weight = tonumber(weight)
            total = total + weight
            local series = series_of[rev]
            if not series then
              local configuration = string.match(rev, "^(.*)%-%d+$") or rev
              series = 'namespace_name="' .. ns .. '",configuration_name="' .. configuration
                .. '",service_name="' .. configuration .. '",revision_name="' .. rev .. '"'
              series_of[rev] = series
            end
            targets[#targets + 1] = { rev, tonumber(port), weight, series }
          end
          parsed[host] = { targets = targets, total = total }
        end
      end
      return parsed
    end
    function kn.route(host)
      local v = dict:get("version")
      if v ~= version then
        routes = parse(dict:get("table") or "")
        version = v
      end
      return routes[host]
    end
    function kn.pick(route, exclude)
      local total = 0
      for _, t in ipairs(route.targets) do
        if t[1] ~= exclude then total = total + t[3] end
      end
      if total <= 0 then return nil end
      local x = math.random() * total
      local last = nil
      for _, t in ipairs(route.targets) do
        if t[1] ~= exclude then
          x = x - t[3]
          last = t
          if x < 0 then return t end
        end
      end
      return last
    end

    -- Sub-millisecond latencies need a finer clock than ngx.now() (milliseconds, cached).
    local ok, ffi = pcall(require, "ffi")
    if ok then
      ffi.cdef[[
        typedef struct { long tv_sec; long tv_nsec; } kn_timespec;
        int clock_gettime(int clk_id, kn_timespec *tp);
      ]]
      local ts = ffi.new("kn_timespec")
      function kn.clock()
        ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
        return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
      end
    else
      function kn.clock()
        ngx.update_time()
        return ngx.now()
      end
    end

    -- An nginx whose directory was deleted belongs to a cluster that is gone: no daemon will ever
    -- adopt or stop it, so it stops itself (the worker asks its master to quit; a worker whose
    -- master is gone exits).
    function kn.watch_directory(conf)
      if not ok then return end
      ffi.cdef[[
        int getppid(void);
        int kill(int pid, int sig);
      ]]
      local master = ffi.C.getppid()
      ngx.timer.every(2, function(premature)
        if premature then return end
        local f = io.open(conf)
        if f then f:close(); return end
        if ffi.C.getppid() == master then ffi.C.kill(master, 3) else os.exit(0) end  -- 3: SIGQUIT
      end)
    end

    -- Each request is counted in this worker's own table (a few table operations; string keys
    -- and shared-dictionary locks per request cost several times more), which kn.flush adds to the
    -- shared dictionary that all workers share: four times a second, and before every exposition.
    -- Dictionary keys: "c|status|labels" requests, "s|status|labels" the latency sum (ms),
    -- "b|i|status|labels" requests in bucket i.
    local metrics = ngx.shared.kn_metrics
    local bounds = { BUCKET_BOUNDS }
    local les = { BUCKET_LES }
    local nbounds = #bounds
    local floor = math.floor
    local pending = {}  -- labels -> status -> { requests, sum of ms, { bucket -> requests } }
    function kn.observe(series, status, ms)
      local lo, hi = 1, nbounds + 1
      while lo < hi do
        local mid = floor((lo + hi) / 2)
        if bounds[mid] >= ms then hi = mid else lo = mid + 1 end
      end
      local by_status = pending[series]
      if not by_status then by_status = {}; pending[series] = by_status end
      local p = by_status[status]
      if not p then p = { 0, 0, {} }; by_status[status] = p end
      p[1] = p[1] + 1
      p[2] = p[2] + ms
      local b = p[3]
      b[lo] = (b[lo] or 0) + 1
    end
    function kn.flush()
      if next(pending) == nil then return end
      local batch = pending
      pending = {}
      for series, by_status in pairs(batch) do
        for status, p in pairs(by_status) do
          local key = status .. "|" .. series
          metrics:incr("c|" .. key, p[1], 0)
          metrics:incr("s|" .. key, p[2], 0)
          for i, n in pairs(p[3]) do metrics:incr("b|" .. i .. "|" .. key, n, 0) end
        end
      end
    end
    -- after an internal redirect (error_page) ngx.ctx is gone: only the revision's name is left
    function kn.observe_named(rev, status)
      local series = series_of[rev]
      if series then
        kn.observe(series, status, (ngx.now() - ngx.req.start_time()) * 1000)
      end
    end
    function kn.exposition()
      kn.flush()
      local counts, sums, buckets = {}, {}, {}
      for _, k in ipairs(metrics:get_keys(0)) do
        local v = metrics:get(k)
        if v then
          local kind, rest = string.sub(k, 1, 1), string.sub(k, 3)
          if kind == "c" then
            counts[rest] = v
          elseif kind == "s" then
            sums[rest] = v
          else
            local i, key = string.match(rest, "^(%d+)|(.*)$")
            local b = buckets[key]
            if not b then b = {}; buckets[key] = b end
            b[tonumber(i)] = v
          end
        end
      end
      local keys = {}
      for key in pairs(counts) do keys[#keys + 1] = key end
      table.sort(keys)
      local c, h = { "HEADER_COUNT" }, { "HEADER_LATENCIES" }
      for _, key in ipairs(keys) do
        local status, series = string.match(key, "^(%d+)|(.*)$")
        local labels = series .. ',response_code="' .. status .. '",response_code_class="'
          .. string.sub(status, 1, 1) .. 'xx"'
        c[#c + 1] = string.format("REQUEST_COUNT{%s} %.0f\n", labels, counts[key])
        local b, running = buckets[key] or {}, 0
        for i = 1, nbounds do
          running = running + (b[i] or 0)
          h[#h + 1] = string.format('REQUEST_LATENCIES_bucket{%s,le="%s"} %.0f\n', labels, les[i], running)
        end
        running = running + (b[nbounds + 1] or 0)
        h[#h + 1] = string.format('REQUEST_LATENCIES_bucket{%s,le="+Inf"} %.0f\n', labels, running)
        h[#h + 1] = string.format("REQUEST_LATENCIES_sum{%s} %.17g\n", labels, sums[key] or 0)
        h[#h + 1] = string.format("REQUEST_LATENCIES_count{%s} %.0f\n", labels, running)
      end
      return table.concat(c) .. table.concat(h)
    end
"""

# One Lua hook per try (an access-phase hook as well would cost more on every request): the first
# try routes (slow requests and unknown or unready hosts go to the Python gateway); a retry after a
# connection error picks another target, or the Python gateway when there is none.
_LUA_BALANCER = r"""
      local balancer = require "ngx.balancer"
      local ctx = ngx.ctx
      if ctx.tried then
        if ctx.target then
          ctx.target = kn.pick(ctx.route, ctx.target[1])
          ngx.var.kn_revision = ctx.target and ctx.target[1] or ""
        end
      else
        ctx.tried = true
        if ngx.var.kn_slow == "0" then
          local route = kn.route(ngx.var.host)
          if route then
            ctx.route = route
            ctx.target = kn.pick(route)
            if ctx.target then
              ctx.t0 = kn.clock()
              ngx.var.kn_revision = ctx.target[1]
              balancer.set_more_tries(1)
            end
          end
        end
      end
      if ctx.target then
        balancer.set_current_peer("127.0.0.1", ctx.target[2])
      else
        balancer.set_current_peer("127.0.0.1", FALLBACK_PORT)
      end
"""

_LUA_CONTROL = r"""
      if ngx.var.http_x_kserve_nb_token ~= "CONTROL_TOKEN" then
        ngx.status = 401
        ngx.say("token required")
        return
      end
      ngx.req.read_body()
      local body = ngx.req.get_body_data()
      if ngx.req.get_method() == "POST" then
        if not body then
          if ngx.req.get_body_file() then
            ngx.status = 400
            ngx.say("the table must fit the body buffer")
            return
          end
          body = ""  -- no routes
        end
        local ok, err = ngx.shared.kn:set("table", body)
        if not ok then
          ngx.status = 507
          ngx.say(err)
          return
        end
        ngx.shared.kn:incr("version", 1, 0)
      elseif ngx.var.arg_table then
        -- the table nginx holds, for a restarted daemon that adopts this nginx
        local held = ngx.shared.kn:get("table") or ""
        ngx.header["Content-Length"] = #held
        ngx.print(held)
        return
      end
      ngx.say(ngx.shared.kn:get("version") or 0)
"""

# Counts a request once it is answered, if nginx forwarded it to a revision (the last peer).
_LUA_LOG = r"""
      local ctx = ngx.ctx
      local target = ctx.target
      if target then
        kn.observe(target[4], ngx.status, (kn.clock() - ctx.t0) * 1000)
      else
        local rev = ngx.var.kn_revision
        if rev ~= "" then kn.observe_named(rev, ngx.status) end
      end
"""

# The answer when the last try failed (nginx's 502): rules 5 and 6 of kserve_nb.local.routing. A
# last try that sent no byte (refused) reached no model: 503, as the Python gateway answers it. One
# that did reached a model and failed: 502. No target tried last: the Python gateway did not answer.
_LUA_UPSTREAM_FAILED = r"""
      local rev = ngx.var.kn_revision
      ngx.header["Content-Type"] = "application/json"
      if rev == "" then
        ngx.status = 503
        ngx.print(CONTROL_PLANE_DOWN)
        return
      end
      local sent = string.match(ngx.var.upstream_bytes_sent or "", "(%d+)%s*$")
      if sent == "0" then
        ngx.status = 503
        ngx.print(UNREACHABLE)
      else
        ngx.status = 502
        ngx.print(FAILED)
      end
"""

_LUA_METRICS = r"""
      if ngx.var.http_authorization ~= "Bearer METRICS_TOKEN" then
        ngx.status = 401
        ngx.say("a bearer token is required (the state dir's metrics.token)")
        return
      end
      ngx.header["Content-Type"] = "CONTENT_TYPE"
      ngx.print(kn.exposition())
"""


def _lua_init() -> str:
    """The init Lua with the exporter's names and buckets filled in (the Python gateway's own)."""
    lua = _LUA_INIT.replace("BUCKET_BOUNDS", ", ".join(repr(float(b)) for b in LATENCY_BUCKETS_MS))
    lua = lua.replace("BUCKET_LES", ", ".join(f'"{le}"' for le in LE_LABELS))
    lua = lua.replace('"HEADER_COUNT"', _lua_string(HEADER_COUNT))
    lua = lua.replace('"HEADER_LATENCIES"', _lua_string(HEADER_LATENCIES))
    return lua.replace("REQUEST_COUNT", REQUEST_COUNT).replace("REQUEST_LATENCIES", REQUEST_LATENCIES)


def _lua_upstream_failed() -> str:
    """The Lua of ``@kn_upstream_failed``, with the routing module's texts as Lua expressions."""
    unreachable = routing.unreachable_message("\0host", "\0rev", "refused the connection")
    failed = routing.failed_message(
        "\0rev",
        "it stopped answering mid-request (it crashed or was stopped; a crashed revision is restarted and "
        "gets no traffic until it is ready again)",
    )
    return (
        _LUA_UPSTREAM_FAILED.replace("CONTROL_PLANE_DOWN", _lua_json_error(CONTROL_PLANE_DOWN))
        .replace("UNREACHABLE", _lua_json_error(unreachable))
        .replace("FAILED", _lua_json_error(failed))
    )


def _lua_json_error(message: str) -> str:
    """A Lua expression for ``{"error": message}``; ``\\0host``/``\\0rev`` become the request's host and target.

    Both are DNS names by the time a target was tried (the table holds no other), so they need no escaping.
    """
    text = json.dumps({"error": message})
    parts = re.split(r"(\\u0000host|\\u0000rev)", text)
    variables = {"\\u0000host": "ngx.var.host", "\\u0000rev": "rev"}
    return " .. ".join(variables.get(part) or _lua_string(part) for part in parts if part)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render(*, listen: int, control: int, fallback: int, token: str, directory: Path, modules: Path,
           run_as_root: bool = False, metrics_token: str = "") -> str:
    """The whole (static) nginx config: ports, paths, and the Lua that routes by the pushed table.

    ``metrics_token`` guards ``/metrics`` on the control port (without one, nothing is served there).
    """
    user = "user root root;\n" if run_as_root else ""
    tmp = directory / "tmp"
    balancer = _LUA_BALANCER.replace("FALLBACK_PORT", str(int(fallback)))
    control_lua = _LUA_CONTROL.replace("CONTROL_TOKEN", token)
    if not re.fullmatch(r"[A-Za-z0-9_-]*", metrics_token):
        raise ValueError("the metrics token must be URL-safe base64")
    metrics_lua = _LUA_METRICS.replace("METRICS_TOKEN", metrics_token or secrets.token_urlsafe(24))
    metrics_lua = metrics_lua.replace("CONTENT_TYPE", CONTENT_TYPE)
    return f"""# Generated by kserve-nb for its local cluster; routes are pushed to it, never written here.
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server_tokens off;
  default_type application/json;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  client_max_body_size {MAX_BODY_BYTES};
  client_body_buffer_size 1m;
  keepalive_timeout {int(CLIENT_IDLE_SECONDS)}s;
  keepalive_requests 1000000;
  lingering_timeout 1s;  # after a refusal (413): how long to wait for the rest of a body nobody reads
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $http_host;
  proxy_connect_timeout 5s;
  proxy_read_timeout {int(UPSTREAM_TIMEOUT_SECONDS)}s;
  proxy_send_timeout {int(UPSTREAM_TIMEOUT_SECONDS)}s;
  proxy_next_upstream error timeout;  # connection errors only; a POST that left is never re-sent
  proxy_next_upstream_tries 2;
  proxy_buffers 16 16k;

  lua_shared_dict kn 16m;
  lua_shared_dict kn_metrics 8m;  # ~40 keys per revision and status code
  init_by_lua_block {{{_lua_init()}  }}
  init_worker_by_lua_block {{
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    -- premature: the worker is exiting; its last counts still go to the shared dictionary
    ngx.timer.every(0.25, function(premature) kn.flush() end)
    kn.watch_directory({_lua_string(str(directory / "nginx.conf"))})
  }}

  upstream kn_revisions {{
    server 127.0.0.1:{fallback};  # a placeholder: the balancer below picks every peer
    balancer_by_lua_block {{{balancer}    }}
    keepalive 64;
  }}
  upstream kn_fallback {{
    server 127.0.0.1:{fallback};
    keepalive 16;
  }}

  # Requests with a body and a content type that isn't JSON go to the Python gateway, which forwards
  # a JSON body as application/json (what `curl -d @file.json` needs) and anything else unchanged.
  map "$http_content_type|$http_content_length$http_transfer_encoding" $kn_slow {{
    default 1;
    "~^[^|]*\\|0?$" 0;
    "~*^[^|]*json[^|]*\\|" 0;
  }}

  server {{
    listen 127.0.0.1:{listen} default_server;
    set $kn_revision "";
    error_page 413 = @kn_too_large;
    error_page 502 = @kn_upstream_failed;
    error_page 504 = @kn_timed_out;
    log_by_lua_block {{{_LUA_LOG}    }}
    location / {{
      proxy_pass http://kn_revisions;
      add_header x-kserve-revision $kn_revision always;
    }}
    # KServe's model repository API (load/unload) is no inference route: nginx matches the
    # normalised URI (decoded, slashes merged, dot segments resolved), so every spelling lands here.
    location = /v2/repository {{
      return 403 '{{"error": "{MODEL_REPOSITORY_REFUSAL}"}}';
    }}
    location ^~ /v2/repository/ {{
      return 403 '{{"error": "{MODEL_REPOSITORY_REFUSAL}"}}';
    }}
    location @kn_too_large {{
      return 413 '{{"error": "request body larger than {MAX_BODY_BYTES} bytes"}}';
    }}
    location @kn_upstream_failed {{
      add_header x-kserve-revision $kn_revision always;
      content_by_lua_block {{{_lua_upstream_failed()}      }}
    }}
    location @kn_timed_out {{
      add_header x-kserve-revision $kn_revision always;
      return 504 '{{"error": "{_TIMED_OUT}"}}';
    }}
  }}

  # The control endpoint the daemon pushes routes to: loopback, its own token.
  server {{
    listen 127.0.0.1:{control};
    client_max_body_size 16m;
    client_body_buffer_size 16m;
    location = /routes {{
      content_by_lua_block {{{control_lua}      }}
    }}
    location = /metrics {{
      content_by_lua_block {{{metrics_lua}      }}
    }}
  }}
}}
"""


class NginxIngress:
    """The ingress on ``port``: nginx in front, the Python :class:`Gateway` behind it.

    Same interface as :class:`Gateway` (``start``/``update``/``close``/``port``) plus
    ``on_programmed``, called with each routing table once nginx holds it.
    """

    #: Routes reach nginx after :meth:`update` returns: the controller may hold status for them.
    programs_asynchronously = True

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        *,
        found: tuple[str, Path] | None = None,
        on_programmed: Callable[[Routes], None] | None = None,
        metrics_token: str = "",
    ) -> None:
        found = found or find_nginx()
        if found is None:
            raise RuntimeError(
                "nginx with its Lua module is not installed (apt-get install nginx libnginx-mod-http-lua)"
            )
        self.binary, self.modules = found
        self.directory = directory
        self.on_programmed = on_programmed
        self._port = port
        self._control = 0
        self._token = secrets.token_urlsafe(24)
        self._metrics_token = metrics_token
        self._fallback = Gateway("127.0.0.1", 0)
        self._process: Master | None = None
        self._started: float | None = None  # the master's start time (its identity in the record)
        self._routes: Routes = {}
        self._table = ""  # the encoded table of the last update
        self._pushed: str | None = None  # the encoded table nginx holds
        self._pusher: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._workers_seen: set[int] = set()  # every worker seen, to clean up after a killed master
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._control_client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never shows the control token
        return f"NginxIngress(port={self._port}, pid={self.pid})"

    @property
    def port(self) -> int:
        """The ingress port (after :meth:`start`)."""
        return self._port

    @property
    def metrics(self) -> RequestMetrics:
        """The counters of the requests the Python gateway behind nginx forwarded itself."""
        return self._fallback.metrics

    @property
    def metrics_port(self) -> int:
        """Where nginx serves ``/metrics`` (its control port, behind the metrics token)."""
        return self._control

    @property
    def pid(self) -> int | None:
        """The nginx master's pid while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    async def start(self) -> int:
        """Start the fallback gateway and nginx on ``port`` (a free one when 0); return the port.

        The nginx an earlier daemon left running in ``directory`` is adopted instead, on its port
        and with the table it holds, when it is still the recorded process and answers.
        Raises ``OSError`` when nginx cannot listen there (the caller may retry with port 0).
        """
        self._loop = asyncio.get_running_loop()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.directory / "tmp").mkdir(exist_ok=True, mode=0o700)
        if await self._adopt():
            self._supervisor = self._loop.create_task(self._supervise(), name="kserve-nb-nginx")
            return self._port
        await self._fallback.start()
        if not self._port:
            self._port = dataplane.free_port()
        await self._launch()
        self._supervisor = self._loop.create_task(self._supervise(), name="kserve-nb-nginx")
        return self._port

    def update(self, routes: Routes, endpoints: Endpoints) -> None:
        """Install a new routing table: at once in the fallback, and in nginx by a push.

        ``on_programmed`` follows once nginx holds it (at once when its encoding did not change).
        """
        self._routes = dict(routes)
        self._table = encode_table(routes, endpoints)
        self._fallback.update(routes, endpoints)
        if self._loop is None or self._closing:
            return
        if self._table == self._pushed and (self._pusher is None or self._pusher.done()):
            if self.on_programmed is not None:
                self.on_programmed(self._routes)
            return
        if self._pusher is None or self._pusher.done():
            self._pusher = self._loop.create_task(self._push())

    async def wait_programmed(self, timeout: float = PROGRAM_TIMEOUT_SECONDS) -> None:
        """Wait until nginx holds the last :meth:`update` (for callers without ``on_programmed``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._pushed != self._table and not self._closing:
            if loop.time() > deadline:
                raise TimeoutError(f"nginx did not take the routing table in {timeout:g} s")
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        """Stop nginx (gracefully, then by force after 2 s) and the fallback gateway."""
        self._closing = True
        for task in (self._supervisor, self._pusher):
            if task is not None:
                task.cancel()
        process, self._process = self._process, None
        if process is not None:
            self._workers_of(process)
            await self._stop(process, graceful=True)
        (self.directory / RECORD).unlink(missing_ok=True)
        await self._fallback.close()
        if self._control_client is not None:
            await self._control_client.aclose()
            self._control_client = None

    async def _stop(self, process: Master, graceful: bool = False) -> None:
        """Stop the master (SIGQUIT lets requests finish; SIGTERM doesn't), by force after 2 s each.

        Its workers exit with it, unless the master had to be SIGKILLed: then they are killed too.
        """
        if process.poll() is None:
            for sig in ((signal.SIGQUIT,) if graceful else ()) + (signal.SIGTERM,):
                process.send_signal(sig)
                if await _wait(process, 2.0):
                    break
            else:
                process.kill()
                await _wait(process, 2.0)
        self._kill_orphaned_workers()

    # --- adoption ---

    async def _adopt(self) -> bool:
        """Adopt the nginx recorded in ``directory`` if it is still that process and answers."""
        record = dataplane.read(self.directory / RECORD)
        if record is None:
            return False
        process = dataplane.verified(record.get("pid"), record.get("started"), marker=str(self.directory), name="nginx")
        if process is None:
            # Gone (or its pid is another process now); a killed master's workers may still hold the port.
            workers = [dataplane.verified(pid, started, name="nginx") for pid, started in record.get("workers") or []]
            alive = [w for w in workers if w is not None]
            await asyncio.get_running_loop().run_in_executor(None, dataplane.stop, alive)
            return False
        master = dataplane.AdoptedProcess(process)
        try:
            self._port, self._control, self._token = int(record["port"]), int(record["control"]), str(record["token"])
            fallback = int(record["fallback"])
            self._process, self._started = master, float(record["started"])
            table = await asyncio.wait_for(self._control_call("GET", "/routes?table=1"), PROGRAM_TIMEOUT_SECONDS)
        except Exception as e:  # noqa: BLE001 - whatever is wrong with it, a fresh nginx replaces it
            log.warning("not adopting nginx (pid %d): %r; stopping it", master.pid, e)
            self._process, self._control = None, 0
            self._workers_seen |= _children(master.pid)
            await self._stop(master)
            return False
        # The Python gateway behind nginx: on the port nginx sends to, unless another process took it.
        self._fallback = Gateway("127.0.0.1", fallback)
        try:
            await self._fallback.start()
        except OSError:
            self._fallback = Gateway("127.0.0.1", 0)
            await self._fallback.start()
        self._table = self._pushed = table.decode()
        # Until the controller's first update, the gateway serves what nginx serves.
        self._fallback.update(*decode_table(self._table))
        await self._reconfigure(master)
        self._workers()
        self._record()
        log.info("adopted nginx ingress (pid %d) on 127.0.0.1:%d, fallback gateway on %d",
                 master.pid, self._port, self._fallback.port)
        return True

    async def _reconfigure(self, master: Master) -> None:
        """Write the config; if it changed (another gateway port, a new version), reload gracefully.

        A reload keeps the listening socket and the shared dictionaries (the routing table); old
        workers finish their requests.
        """
        path = self.directory / "nginx.conf"
        text = self._render()
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        before = _children(master.pid)
        self._write_config(text)
        master.send_signal(signal.SIGHUP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROGRAM_TIMEOUT_SECONDS
        # Done once the old workers are gone: until they take the master's QUIT they still accept
        # connections (with the old config); then they only finish their requests (bounded here).
        while (before & _children(master.pid) or not _children(master.pid)) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        self._workers_seen |= before
        log.info("nginx ingress (pid %d) reloaded with a new config", master.pid)

    def _record(self) -> None:
        """Record what runs (see the module docstring), for a daemon that may have to adopt it."""
        process = self._process
        if process is None or self._closing or self._started is None:
            return
        dataplane.write(self.directory / RECORD, {
            "version": 1,
            "pid": process.pid,
            "started": self._started,
            "port": self._port,
            "control": self._control,
            "fallback": self._fallback.port,
            "token": self._token,
            "workers": [[pid, dataplane.started_at(pid)] for pid in sorted(self._workers_seen)],
            "table": self._pushed,
        })

    # --- internals ---

    async def _push(self) -> None:
        """POST the newest table until nginx holds it, then report the routes it encodes."""
        while not self._closing:
            table, routes = self._table, self._routes
            try:
                await asyncio.wait_for(self._post(table), PROGRAM_TIMEOUT_SECONDS)
            except Exception as e:  # noqa: BLE001 - whatever it was, status must not wait forever
                # Report the table anyway (the fallback serves it exactly) and say loudly that nginx
                # did not take it; the supervisor pushes again if nginx restarts.
                log.error("nginx did not take the routing table: %r %s", e, self._error_tail())
                if self.on_programmed is not None:
                    self.on_programmed(routes)
                return
            self._pushed = table
            self._record()
            if table == self._table:  # else a newer table came meanwhile: push that one too
                if self.on_programmed is not None:
                    self.on_programmed(self._routes)
                return

    async def _post(self, table: str) -> None:
        await self._control_call("POST", "/routes", table.encode())

    async def _control_call(self, method: str, path: str, body: bytes = b"") -> bytes:
        """One request to the control endpoint; the answer's body (raises ``OSError`` unless 200)."""
        if self._control_client is None:
            # Loopback only: no proxy from the environment; one connection per call, so a
            # restarted or reloaded nginx never meets a stale one.
            self._control_client = httpx.AsyncClient(
                trust_env=False, timeout=PROGRAM_TIMEOUT_SECONDS,
                headers={"X-Kserve-Nb-Token": self._token, "Connection": "close"},
            )
        try:
            r = await self._control_client.request(method, f"http://127.0.0.1:{self._control}{path}", content=body)
        except httpx.HTTPError as e:
            raise OSError(f"control endpoint: {type(e).__name__}: {e}") from e
        if r.status_code != 200:
            raise OSError(f"control endpoint answered {r.status_code}: {r.text[:120]!r}")
        return r.content

    async def _launch(self) -> None:
        if not self._control:
            self._control = dataplane.free_port()
        path = self.directory / "nginx.conf"
        self._write_config(self._render())
        log_file = open(self.directory / "nginx.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._process = subprocess.Popen(
                [self.binary, "-p", str(self.directory), "-e", str(self.directory / "error.log"),
                 "-c", str(path), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, close_fds=True,
                # Data plane: it outlives the daemon (no parent-death signal), and a Ctrl-C aimed
                # at the daemon's terminal does not reach it.
                start_new_session=True,
            )
        finally:
            log_file.close()
        self._started = dataplane.started_at(self._process.pid)
        self._record()  # at once: a daemon killed from here on leaves an nginx that `down` can find
        self._pushed = None
        try:
            await self._until_answering()
            await asyncio.wait_for(self._post(self._table), PROGRAM_TIMEOUT_SECONDS)
            self._pushed = self._table
        except (TimeoutError, OSError) as e:
            process, self._process = self._process, None
            self._workers_seen |= _children(process.pid)
            await self._stop(process)
            raise OSError(f"nginx did not start on 127.0.0.1:{self._port}: {self._error_tail() or e}") from e
        self._workers()
        self._record()
        log.info("nginx ingress (pid %d) on 127.0.0.1:%d, fallback gateway on %d",
                 self._process.pid, self._port, self._fallback.port)

    def _render(self) -> str:
        return render(
            listen=self._port, control=self._control, fallback=self._fallback.port, token=self._token,
            directory=self.directory, modules=self.modules, run_as_root=os.geteuid() == 0,
            metrics_token=self._metrics_token,
        )

    def _write_config(self, text: str) -> None:
        path = self.directory / "nginx.conf"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)  # it holds the control token
        os.replace(tmp, path)

    async def _until_answering(self) -> None:
        """Wait (bounded) until both nginx ports accept connections."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROGRAM_TIMEOUT_SECONDS
        for port in (self._port, self._control):
            while True:
                if self._process is None or self._process.poll() is not None:
                    raise OSError("nginx exited")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    if loop.time() > deadline:
                        raise TimeoutError(f"nothing answers on 127.0.0.1:{port}") from None
                    await asyncio.sleep(0.005)

    def _workers(self) -> set[int]:
        """The master's current worker processes (remembered, to be killed if orphaned)."""
        return self._workers_of(self._process) if self._process is not None else set()

    def _workers_of(self, process: Master) -> set[int]:
        workers = _children(process.pid)
        self._workers_seen = {pid for pid in self._workers_seen if psutil.pid_exists(pid)} | workers
        return workers

    def _kill_orphaned_workers(self) -> None:
        """Kill every worker seen that is still alive once its master is gone.

        Workers outlive a master killed outright (SIGKILL skips its shutdown), and keep the port.
        """
        for pid in self._workers_seen:
            _kill_orphan(pid)
        self._workers_seen.clear()

    async def _supervise(self) -> None:
        """Restart nginx if it dies on its own (with back-off), and push the table to it again."""
        failures = 0
        while not self._closing:
            await asyncio.sleep(0.2)
            process = self._process
            if process is None or process.poll() is None:
                continue
            log.error("nginx exited with %s: %s", process.returncode, self._error_tail())
            self._kill_orphaned_workers()
            await asyncio.sleep(RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)])
            try:
                await self._launch()
                failures = 0
                if self.on_programmed is not None:
                    self.on_programmed(self._routes)
            except OSError as e:
                failures += 1
                log.error("restarting nginx failed: %s", e)

    def _error_tail(self) -> str:
        try:
            lines = (self.directory / "error.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


def _children(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children()}
    except psutil.Error:
        return set()


def _kill_orphan(pid: int) -> None:
    """SIGKILL ``pid`` if it is (still) an nginx process."""
    try:
        proc = psutil.Process(pid)
        if proc.name() == "nginx":
            proc.kill()
            proc.wait(2)
    except (psutil.Error, psutil.TimeoutExpired):
        pass


async def _wait(process: Master, timeout: float) -> bool:
    """Wait (without blocking the loop) up to ``timeout`` for ``process`` to exit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while process.poll() is None:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
