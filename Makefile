# kserve-nb: everything a fresh machine (Python 3.11, pip, apt as root) needs is set up here.
#   make demo   run the release runbook on the embedded local cluster
#   make test   run every test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SYSDEPS := $(VENV)/.sysdeps-stamp
# The demo's own local cluster state (tests use temporary ones).
export KSERVE_NB_HOME ?= $(CURDIR)/.local-cluster

.PHONY: demo test lab install sysdeps local-up local-down bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# constraints.txt pins the whole tree: kserve 0.21 needs pandas<3 and psutil<6, kubernetes<37.
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[local,notebooks,test]"
	touch $@

# Debian packages, installed only when missing, and only as root (else the command to run is shown):
# nginx with its Lua module is the local cluster's ingress data plane (without them the Python gateway
# serves alone, slower; then only a hint is printed), and prometheus scrapes its metrics (likewise);
# the tests and benchmarks also use chromium (browser test), wrk (benchmarks) and curl.
# kubectl is preinstalled on these machines.
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
define apt_ensure
	@missing=""; for p in $(1); do command -v $$p >/dev/null 2>&1 || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then $(APT_INSTALL) $$missing; \
	  else echo "please install:$$missing (apt-get install$$missing)"; exit 1; fi; \
	fi
endef

INGRESS := $(VENV)/.ingress-stamp
$(INGRESS): | $(STAMP)
	@if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || [ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then \
	  if [ "$$(id -u)" = 0 ]; then $(APT_INSTALL) nginx libnginx-mod-http-lua; \
	  else echo "for the fast ingress: apt-get install nginx libnginx-mod-http-lua (the Python gateway serves meanwhile)"; fi; \
	fi
	touch $@

# Prometheus scrapes the ingress' per-revision metrics, started on demand (without it the cluster
# works; only asking it for metrics says what to install). Its recommends would add node exporters.
PROMETHEUS := $(VENV)/.prometheus-stamp
$(PROMETHEUS): | $(STAMP)
	@if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then \
	  if [ "$$(id -u)" = 0 ]; then $(APT_INSTALL) --no-install-recommends prometheus; \
	  else echo "for live per-revision metrics: apt-get install --no-install-recommends prometheus"; fi; \
	fi
	touch $@

sysdeps: $(SYSDEPS)
$(SYSDEPS): | $(STAMP) $(INGRESS) $(PROMETHEUS)
	$(call apt_ensure,chromium wrk curl)
	touch $@

demo: $(STAMP) $(INGRESS) $(PROMETHEUS)
	$(BIN)/python -m kserve_nb.demo

test: $(STAMP) $(SYSDEPS)
	$(BIN)/python -m pytest

lab: $(STAMP) $(INGRESS) $(PROMETHEUS)
	$(BIN)/kserve-nb local up
	$(BIN)/jupyter lab --ip 127.0.0.1 notebooks/

local-up: $(STAMP)
	$(BIN)/kserve-nb local up

local-down: $(STAMP)
	$(BIN)/kserve-nb local down

bench: $(STAMP) $(SYSDEPS)
	$(BIN)/python benchmarks/run_all.py

clean:
	-$(BIN)/kserve-nb local down
	rm -rf $(VENV) .local-cluster test-artifacts
