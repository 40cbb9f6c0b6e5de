# kubeflow-platform: every target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
#: checkov's own venv: its dependencies would pin the program's differently.
SCAN_VENV := .venv-scan
STACK ?= dev
#: The Kubeflow release the stacks pin, and the previous one (upgrade diffs).
KUBEFLOW_VERSION := 1.10.2
PREVIOUS_KUBEFLOW_VERSION := 1.9.1
export KUBEFLOW_MANIFESTS_DIR ?= $(CURDIR)/build/upstream
MANIFESTS ?= $(KUBEFLOW_MANIFESTS_DIR)/v$(KUBEFLOW_VERSION).yaml

.PHONY: venv scan-venv upstream-manifests preview test policy-pack bench docs clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

$(SCAN_VENV)/bin/.installed: requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-scan.txt
	touch $@

scan-venv: $(SCAN_VENV)/bin/.installed

upstream-manifests: venv
	$(BIN)/python -m tools.upstream_manifests $(KUBEFLOW_VERSION) $(PREVIOUS_KUBEFLOW_VERSION)

## The main command: evaluate a stack offline (no credentials, no cluster) and show its plan.
preview: venv
	@if [ "$(origin MANIFESTS)" = "file" ]; then $(MAKE) --no-print-directory upstream-manifests; fi
	$(BIN)/python -m tools.preview --stack $(STACK) --manifests $(MANIFESTS)

## The tests, exactly as CI runs them (with the scanners: parliament in .venv, checkov in .venv-scan).
test: venv scan-venv upstream-manifests
	$(BIN)/python -m pytest

## The guardrail policy pack's own venv, as `pulumi preview --policy-pack policy` builds it.
policy-pack:
	$(PYTHON) -m venv policy/venv
	policy/venv/bin/pip install --quiet --disable-pip-version-check -r policy/requirements.txt

## Whole-process timings and peak memory against the libyaml floor; writes build/bench.json.
bench: venv upstream-manifests
	$(BIN)/python -m tools.bench --manifests $(KUBEFLOW_MANIFESTS_DIR)/v$(KUBEFLOW_VERSION).yaml $(BENCH_ARGS)

docs: venv
	$(BIN)/python -m tools.config_reference --write README.md

clean:
	rm -rf build $(VENV) $(SCAN_VENV) policy/venv .pytest_cache
