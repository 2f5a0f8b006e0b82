# Every target does its own set-up on a fresh machine: a virtualenv, then (for demo and test)
# the control-plane binaries built from pinned Go modules (20-40 min cold, a no-op when built).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(PATH):/usr/local/go/bin
export NO_PROXY := 127.0.0.1,localhost

.PHONY: install lock testbin images image demo demo-down test unit integration lint bench peer-kruise clean

install: $(VENV)/.installed

# Installs exactly the versions and hashes in requirements-dev.lock, then the project itself.
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Re-resolve the lock files from pyproject.toml's ranges (after editing dependencies, or to
# take updates): requirements.lock = runtime (the image), requirements-dev.lock = runtime + dev.
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu -q
lock: install
	$(BIN)/pip install --quiet 'uv>=0.13,<0.14'
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) --upgrade -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) --upgrade -o requirements-dev.lock

# --with-node: kubelet, containerd, runc, crictl, CNI plugins for the real node (about 10 min cold).
testbin:
	$(PYTHON) tools/build_testbin.py --with-helm --with-node

# The real node's container images (pause, Filebeat 7.16.2/7.16.3, nginx, test agent) as
# docker-archive tars in .testbin/images/, from pinned sources; a no-op when built. See docs/images.md.
images:
	$(PYTHON) tools/build_images.py

# The operator's own image (not one of `images`) from the Dockerfile, daemonless (buildah; base
# from debootstrap), exported to .testbin/images/sidecarset-$(TAG).tar. Installs buildah and
# debootstrap if missing (root).
TAG ?= 0.1.0
image:
	tools/build_image.sh $(TAG)

demo: install testbin images
	$(BIN)/python tools/demo.py

demo-down: install
	$(BIN)/sidecarset cluster down

test: install testbin images unit integration

unit: install
	$(BIN)/pytest tests/unit -q

integration: install testbin images
	$(BIN)/pytest tests/integration -q

# What CI enforces before the tests: style, format, types (src, then the tests, benchmarks and
# tools), the import-linter layer contracts and the chart. helm is the one `make testbin` built,
# found as the chart tests find it: $$SIDECARSET_TESTBIN/helm, else .testbin/helm.
HELM = $(or $(SIDECARSET_TESTBIN),.testbin)/helm
lint: install testbin
	$(BIN)/ruff check src tests tools bench
	$(BIN)/ruff format --check src tests tools bench
	$(BIN)/mypy
	$(BIN)/mypy tests bench tools
	$(BIN)/lint-imports
	$(HELM) lint --strict charts/sidecarset

# QUICK=1: small sizes, under a minute; ONLY=scale (or webhook_server, webhook_e2e, rollout).
# Quick runs write under bench/results/quick/ (git-ignored); full runs update bench/results/.
# PEER=kruise: the side-by-side comparison with OpenKruise's kruise-manager instead, built first
# from its pinned Go module into .testbin/kruise/ (about 5 min cold; skipped when stamped).
bench: install testbin $(if $(PEER),peer-$(PEER),)
	$(BIN)/python -m bench $(if $(QUICK),--quick,) $(if $(ONLY),--only $(ONLY),) $(if $(PEER),--peer $(PEER),)

peer-kruise: testbin
	$(PYTHON) tools/build_kruise.py

clean:
	rm -rf $(VENV) .cluster
