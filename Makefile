# kubeflow-platform: every target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
#: checkov's own venv: its dependencies would pin the program's differently.
SCAN_VENV := .venv-scan
STACK ?= dev
#: The Kubeflow release the stacks pin, and the one they pinned before it (upgrade diffs).
KUBEFLOW_VERSION := 26.03
PREVIOUS_KUBEFLOW_VERSION := 1.10.2
#: Every release the program supports and the tests run (the upgrade tests start at 1.9.1).
SUPPORTED_KUBEFLOW_VERSIONS := 26.03 1.11.0 1.10.2 1.9.1
#: Rendered upstream releases: the directory a user names with KUBEFLOW_MANIFESTS_DIR (only read, never
#: written), else build/upstream/, where `make upstream-manifests` renders what is missing. Deliberately not
#: exported: tools.upstream_manifests and the tests tell the user's directory from this default by the variable.
UPSTREAM_DIR := $(or $(KUBEFLOW_MANIFESTS_DIR),$(CURDIR)/build/upstream)
#: A release's rendered file: its tag and .yaml (v1.10.2.yaml; calendar releases keep their tag: 26.03.yaml).
release_file = $(UPSTREAM_DIR)/$(if $(filter 1.%,$(1)),v$(1),$(1)).yaml
#: Preview another Kubeflow release than the stack pins (make preview KUBEFLOW=1.9.1).
KUBEFLOW ?=
MANIFESTS ?= $(call release_file,$(or $(KUBEFLOW),$(KUBEFLOW_VERSION)))
UPSTREAM_VERSIONS ?= $(SUPPORTED_KUBEFLOW_VERSIONS)
#: make diff: each side is a stack (evaluated now) or a directory with a saved plan.json.
KUBEFLOW_A ?=
KUBEFLOW_B ?=
MANIFESTS_A ?= $(if $(KUBEFLOW_A),$(call release_file,$(KUBEFLOW_A)),$(MANIFESTS))
MANIFESTS_B ?= $(if $(KUBEFLOW_B),$(call release_file,$(KUBEFLOW_B)),$(MANIFESTS))
# The release a diff side needs rendered into UPSTREAM_DIR: none for a saved plan or for a side
# given a manifests path.
diff_release = $(if $(wildcard $(1)/plan.json $(1)/fleet.json),,$(if $(filter file,$(origin MANIFESTS_$(2))),$(or $(KUBEFLOW_$(2)),$(if $(filter file,$(origin MANIFESTS)),$(or $(KUBEFLOW),$(KUBEFLOW_VERSION))))))
# Options only: every value is read from the environment by the shell (see "Caller's values" below).
diff_options = $(if $(wildcard $(1)/plan.json $(1)/fleet.json),,--manifests-$(2) "$$MAKEARG_MANIFESTS_$(3)" $(if $(or $(KUBEFLOW_$(3)),$(KUBEFLOW)),--kubeflow-$(2) "$$MAKEARG_KUBEFLOW_$(3)"))
trace_release = $(if $(wildcard $(STACK)/plan.json),,$(if $(filter file,$(origin MANIFESTS)),$(or $(KUBEFLOW),$(KUBEFLOW_VERSION))))
diff_releases = $(strip $(sort $(call diff_release,$(A),A) $(call diff_release,$(B),B)))
DIFF_USAGE := make diff A=<stack|dir> B=<stack|dir> [KUBEFLOW_A=1.9.1] [MANIFESTS_A=path] [KUBEFLOW_B=...] [MANIFESTS_B=...] [FULL=1]

# `make diff` exits like diff(1) so CI can branch on it: 0 same, 1 different, 2 bad usage or an error.
# GNU make reports every failed recipe as 2; it exits 1 only in question mode (-q), where a recipe line
# marked `+` still runs and its exit status 1 becomes make's own (how `make -q` answers through recursive
# makes). So a lone `make diff` turns on question mode, marks each line of its recipe `+`, and has a
# sub-make without -q make what it needs. Its output is the tool's own, as it happens.
# `make upgrade-plan` exits the same way (0 nothing needs attention, 1 something does, 2 an error), and so do
# `make trace` (0 the request reaches its backend, 1 it does not, 2 an error) and `make fleet` (0 clean, 1 problems, 2 an error).
UPGRADE_USAGE := make upgrade-plan FROM=<release|manifests path|saved plan dir> TO=<release|manifests path> [STACK=dev] [FROM_SET='key=value ...'] [TO_SET='key=value ...']
FLEET_USAGE := make fleet [GLOBAL=<global stack>] [FLEET_SET='<stack>:<key>=<value> ...'] [OUT=build/fleet] [KUBEFLOW=26.03 | MANIFESTS=path]
TRACE_USAGE := make trace STACK=<stack|saved plan dir> URL=<url> AS=<email|anonymous> [KUBEFLOW=26.03 | MANIFESTS=path]
STATUS_GOAL := $(filter diff upgrade-plan trace fleet,$(MAKECMDGOALS))
ifneq ($(STATUS_GOAL),)
ifneq ($(MAKECMDGOALS),$(firstword $(STATUS_GOAL)))
$(error make $(firstword $(STATUS_GOAL)) runs alone, so its exit status is its answer: run make $(filter-out $(firstword $(STATUS_GOAL)),$(MAKECMDGOALS)) separately)
endif
ifeq ($(STATUS_GOAL),diff)
ifeq ($(and $(A),$(B)),)
$(error usage: $(DIFF_USAGE))
endif
endif
ifeq ($(STATUS_GOAL),upgrade-plan)
ifeq ($(and $(FROM),$(TO)),)
$(error usage: $(UPGRADE_USAGE))
endif
endif
ifeq ($(STATUS_GOAL),trace)
# AS is also make's built-in assembler variable: only a value the user gave counts.
ifeq ($(and $(URL),$(filter-out default,$(origin AS))),)
$(error usage: $(TRACE_USAGE))
endif
endif
MAKEFLAGS += -q
endif

# Caller's values reach the commands through the environment, never pasted into a recipe's text: a recipe
# line is shell code, so `make trace URL='x" ; rm -rf ~ ; "'` would otherwise run what the value says.
# Recipes read them as "$$MAKEARG_<NAME>" (one argument whatever it holds) or, for the space-separated lists,
# unquoted with globbing off (`set -f`): split into words, never run.
export MAKEARG_STACK = $(STACK)
export MAKEARG_URL = $(URL)
export MAKEARG_AS = $(AS)
export MAKEARG_FROM = $(FROM)
export MAKEARG_TO = $(TO)
export MAKEARG_FROM_SET = $(FROM_SET)
export MAKEARG_TO_SET = $(TO_SET)
export MAKEARG_FLEET_SET = $(FLEET_SET)
export MAKEARG_GLOBAL = $(GLOBAL)
export MAKEARG_BENCH_ARGS = $(BENCH_ARGS)
export MAKEARG_MANIFESTS = $(MANIFESTS)
export MAKEARG_KUBEFLOW = $(KUBEFLOW)
export MAKEARG_OUT = $(OUT)
export MAKEARG_A = $(A)
export MAKEARG_B = $(B)
export MAKEARG_MANIFESTS_A = $(MANIFESTS_A)
export MAKEARG_MANIFESTS_B = $(MANIFESTS_B)
export MAKEARG_KUBEFLOW_A = $(or $(KUBEFLOW_A),$(KUBEFLOW))
export MAKEARG_KUBEFLOW_B = $(or $(KUBEFLOW_B),$(KUBEFLOW))
export MAKEARG_UPSTREAM_VERSIONS = $(UPSTREAM_VERSIONS)
export MAKEARG_PREVIEW_RELEASE = $(or $(KUBEFLOW),$(KUBEFLOW_VERSION))
export MAKEARG_DIFF_RELEASES = $(diff_releases)
export MAKEARG_TRACE_RELEASE = $(trace_release)
export MAKEARG_BASELINE = $(BASELINE)
export MAKEARG_STACKS = $(STACKS)
export MAKEARG_ESTATE = $(ESTATE)

.PHONY: venv scan-venv upstream-manifests preview estate diff diff-prerequisites upgrade-plan trace fleet test policy-pack bench bench-scale docs clean

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
	set -f; $(BIN)/python -m tools.upstream_manifests $$MAKEARG_UPSTREAM_VERSIONS

## The main command: evaluate a stack offline (no credentials, no cluster), show and write its plan.
## make preview [STACK=dev] [MANIFESTS=path | KUBEFLOW=1.9.1] [OUT=build/<stack>] [ESTATE=estate/<stack>.yaml]
preview: venv
	@if [ "$(origin MANIFESTS)" = "file" ]; then $(MAKE) --no-print-directory upstream-manifests UPSTREAM_VERSIONS="$$MAKEARG_PREVIEW_RELEASE"; fi
	$(BIN)/python -m tools.preview --stack "$$MAKEARG_STACK" --manifests "$$MAKEARG_MANIFESTS" $(if $(KUBEFLOW),--kubeflow-version "$$MAKEARG_KUBEFLOW") $(if $(OUT),--out "$$MAKEARG_OUT") $(if $(ESTATE),--estate "$$MAKEARG_ESTATE")

## Record the estate (read-only, with your own kubectl context and AWS credentials): every command is printed first.
## make estate [STACK=dev] [OUT=estate/<stack>.yaml] [MANIFESTS=path | KUBEFLOW=1.9.1] [LIST=1: print the commands, run none]
estate: venv
	@if [ "$(origin MANIFESTS)" = "file" ]; then $(MAKE) --no-print-directory upstream-manifests UPSTREAM_VERSIONS="$$MAKEARG_PREVIEW_RELEASE"; fi
	$(BIN)/python -m tools.estate --stack "$$MAKEARG_STACK" --manifests "$$MAKEARG_MANIFESTS" $(if $(KUBEFLOW),--kubeflow-version "$$MAKEARG_KUBEFLOW") $(if $(OUT),--out "$$MAKEARG_OUT") $(if $(LIST),--list)

## Field-level differences between two plans; exit 0 when equal, 1 when different, 2 on bad usage or an error.
## make diff A=<stack|dir> B=<stack|dir> [KUBEFLOW_A=1.9.1] [MANIFESTS_A=path] [KUBEFLOW_B=...] [MANIFESTS_B=...] [FULL=1]
diff:
	+@MAKEFLAGS= $(MAKE) --no-print-directory PYTHON="$(PYTHON)" UPSTREAM_VERSIONS="$$MAKEARG_DIFF_RELEASES" diff-prerequisites
	+$(strip $(BIN)/python -m tools.diff "$$MAKEARG_A" "$$MAKEARG_B" $(call diff_options,$(A),a,A) $(call diff_options,$(B),b,B) $(if $(FULL),--full))

## What `pulumi up` does to a live cluster between two Kubeflow releases: replacements, renames, CRDs,
## data, manual steps. Exit 0 when nothing needs attention, 1 when something does, 2 on an error.
## make upgrade-plan FROM=<release|manifests path|saved plan dir> TO=<release|manifests path> [STACK=dev]
##   [FROM_SET='key=value ...'] [TO_SET='key=value ...']: settings the stack has at FROM / takes with TO
upgrade-plan:
	+@MAKEFLAGS= $(MAKE) --no-print-directory PYTHON="$(PYTHON)" venv
	+set -f; set --; for s in $$MAKEARG_FROM_SET; do set -- "$$@" --from-set "$$s"; done; \
	  for s in $$MAKEARG_TO_SET; do set -- "$$@" --to-set "$$s"; done; \
	  $(BIN)/python -m tools.upgrade_plan "$$MAKEARG_FROM" "$$MAKEARG_TO" --stack "$$MAKEARG_STACK" "$$@"

## Why a URL would answer 404 or 403, hop by hop through the mesh, before deploying. Exit 0 when the request
## reaches its backend, 1 when it does not, 2 on an error. A stack is evaluated now; a directory's plan.json is read.
## make trace STACK=<stack|saved plan dir> URL=<url> AS=<email|anonymous> [KUBEFLOW=26.03 | MANIFESTS=path]
trace:
	+@MAKEFLAGS= $(MAKE) --no-print-directory PYTHON="$(PYTHON)" UPSTREAM_VERSIONS="$$MAKEARG_TRACE_RELEASE" diff-prerequisites
	+$(strip $(BIN)/python -m tools.trace "$$MAKEARG_STACK" "$$MAKEARG_URL" --as "$$MAKEARG_AS" $(if $(wildcard $(STACK)/plan.json),,--manifests "$$MAKEARG_MANIFESTS" $(if $(KUBEFLOW),--kubeflow-version "$$MAKEARG_KUBEFLOW")))

## A fleet offline, before any `pulumi up`: previews the global stack and the regional stacks it names (regions,
## global, regions in full) into OUT/<stack>/ and runs the fleet check. Exit 0 clean, 1 problems, 2 an error.
## make fleet [GLOBAL=<global stack>] [FLEET_SET='<stack>:<key>=<value> ...'] [OUT=build/fleet] [KUBEFLOW=26.03 | MANIFESTS=path]
##   FLEET_SET: evaluate the fleet with settings changed (each value read as YAML, like upgrade-plan's FROM_SET)
fleet:
	+@MAKEFLAGS= $(MAKE) --no-print-directory PYTHON="$(PYTHON)" UPSTREAM_VERSIONS="$(if $(filter file,$(origin MANIFESTS)),$$MAKEARG_PREVIEW_RELEASE)" diff-prerequisites
	+set -f; set --; for s in $$MAKEARG_FLEET_SET; do set -- "$$@" --set "$$s"; done; \
	  $(BIN)/python -m tools.fleet --manifests "$$MAKEARG_MANIFESTS" $(if $(GLOBAL),--global "$$MAKEARG_GLOBAL") $(if $(OUT),--out "$$MAKEARG_OUT") "$$@"

# What `make diff` needs before it compares, made by its sub-make outside question mode: the venv, and
# the releases in UPSTREAM_VERSIONS for the sides that are stacks evaluated with a rendered release.
diff-prerequisites: venv $(if $(UPSTREAM_VERSIONS),upstream-manifests)
	@:

## The tests, exactly as CI runs them (with the scanners: parliament in .venv, checkov in .venv-scan).
test: venv scan-venv upstream-manifests
	$(BIN)/python -m pytest

## The guardrail policy pack's own venv, as `pulumi preview --policy-pack policy` builds it.
policy-pack:
	$(PYTHON) -m venv policy/venv
	policy/venv/bin/pip install --quiet --disable-pip-version-check -r policy/requirements.txt

## `make preview` timed whole per stack and at 10/100/1,000 profiles, by phase, against the libyaml floor; writes build/bench.json.
bench: venv upstream-manifests
	set -f; $(BIN)/python -m tools.bench --manifests $(call release_file,$(KUBEFLOW_VERSION)) $$MAKEARG_BENCH_ARGS

## The same up to 10,000 profiles (3 rounds; long): the figures docs/performance.md quotes, written into it.
bench-scale: venv upstream-manifests
	set -f; $(BIN)/python -m tools.bench --manifests $(call release_file,$(KUBEFLOW_VERSION)) --profiles 10,100,1000,10000 \
		--repeat 3 --write-docs docs/performance.md $$MAKEARG_BENCH_ARGS

docs: venv
	$(BIN)/python -m tools.config_reference --write docs/configuration.md
	$(BIN)/python -m tools.upgrade_plan --refresh-docs docs/upgrading.md

clean:
	rm -rf build $(VENV) $(SCAN_VENV) policy/venv .pytest_cache

## Optimisations must not change what the preview writes. Before a change: make preview STACK=<s> OUT=<dir>/<s>
## for each stack; after it: make preview-unchanged BASELINE=<dir> compares every file under build/<s>/ with diff -r.
STACKS ?= dev prod
.PHONY: preview-unchanged
preview-unchanged: venv
	@if [ -z "$$MAKEARG_BASELINE" ]; then echo "usage: make preview-unchanged BASELINE=<dir holding a preview per stack> [STACKS='$$MAKEARG_STACKS'] [MANIFESTS=path]" >&2; exit 2; fi
	@if [ "$(origin MANIFESTS)" = "file" ]; then $(MAKE) --no-print-directory upstream-manifests UPSTREAM_VERSIONS="$$MAKEARG_PREVIEW_RELEASE"; fi
	@set -f; for stack in $$MAKEARG_STACKS; do \
	  $(BIN)/python -m tools.preview --stack "$$stack" --manifests "$$MAKEARG_MANIFESTS" --out "build/$$stack" > /dev/null || exit 1; \
	  diff -r "$$MAKEARG_BASELINE/$$stack" "build/$$stack" || exit 1; \
	  echo "$$stack: every file under build/$$stack/ is byte-identical to $$MAKEARG_BASELINE/$$stack/"; \
	done
