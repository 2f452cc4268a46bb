# One task runner for people and CI. `make cycle` and `make test` are the README's two commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# The local mirrors some machines have (pip reads them from its config; uv needs them spelled out)
UV_FLAGS := --index-strategy unsafe-best-match \
  $(foreach d,/opt/pypi/simple /opt/pypi-more/simple,$(if $(wildcard $(d)),--extra-index-url file://$(d))) \
  $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true

.PHONY: setup labelstudio cycle test test-fast lint format bench ui server-stop lock clean-workspace help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements/lock.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(UV) pip install --python $(BIN)/python --compile-bytecode $(UV_FLAGS) -r requirements/lock.txt
	$(UV) pip install --python $(BIN)/python --compile-bytecode --no-deps -e .
	touch $@

# Label Studio (the labelling tool the labelling tests run a real server of) in a venv of its
# own, so its ~160 packages (Django, ...) stay out of the lock, each pinned by the constraints
# file (its own requirements are open-ended): about 850 MB, 17 s to install from uv's cache on
# 2 cores.
LABEL_STUDIO_VENV := .venv-labelstudio
LABEL_STUDIO_VERSION := 1.23.2

LABEL_STUDIO_CONSTRAINTS := requirements/labelstudio-constraints.txt

$(LABEL_STUDIO_VENV)/.installed: $(LABEL_STUDIO_CONSTRAINTS) | $(VENV)/.installed
	$(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(UV) pip install --python $(LABEL_STUDIO_VENV)/bin/python $(UV_FLAGS) \
	  label-studio==$(LABEL_STUDIO_VERSION) -c $(LABEL_STUDIO_CONSTRAINTS)
	touch $@

# A database with Label Studio's migrations applied (~80 s of a first start on 2 cores), which
# the labelling tests copy instead of migrating a fresh one each session. Any command of
# label-studio migrates its data dir first; `version` then only prints.
LABEL_STUDIO_TEMPLATE := $(LABEL_STUDIO_VENV)/template/label_studio.sqlite3

$(LABEL_STUDIO_TEMPLATE): $(LABEL_STUDIO_VENV)/.installed
	rm -rf $(LABEL_STUDIO_VENV)/template.tmp
	LATEST_VERSION_CHECK=false $(LABEL_STUDIO_VENV)/bin/label-studio version \
	  --data-dir $(LABEL_STUDIO_VENV)/template.tmp >/dev/null
	mkdir -p $(@D)
	mv $(LABEL_STUDIO_VENV)/template.tmp/label_studio.sqlite3 $@
	rm -rf $(LABEL_STUDIO_VENV)/template.tmp

labelstudio: $(LABEL_STUDIO_TEMPLATE) ## Label Studio's own venv (.venv-labelstudio) and a migrated template database, for the labelling tests

setup: $(VENV)/.installed ## create .venv, install the locked dependencies and the Debian packages (.ci/system-packages.txt)
	@.ci/system-packages

cycle: setup ## set up, start the local Prefect server and run the full cycle
	$(BIN)/voicecycle run

# the long tests `make test` runs beside the rest: one process per group (groups apart by
# spaces, a group's files by commas), sized so that the four processes end together on two
# cores (in a 31-minute run there: the rest of the suite 27 min with the data flows in it,
# the tour 25, the team servers and the machine changes 24, the kills and the train flow 22;
# so the data flows, 3.5 of the rest's minutes, run with the kills: 28 minutes, the four
# ending at 25, 24, 24 and 22). test_machine_changes
# packages in-process (its retrains run as flows there), which resolves BentoML's home: it
# must not share a process with tests/service
comma := ,
BESIDE_GROUPS := tests/e2e tests/team/test_team_cycle.py,tests/faults/test_machine_changes.py \
  tests/faults/test_prefect_kill.py,tests/faults/test_worker_kill.py,tests/faults/test_disk_full.py,$\
tests/faults/test_service_kill.py,tests/faults/test_trainer_kill.py,tests/faults/test_postgres_log.py,$\
tests/flows/test_train_flow.py,tests/flows/test_data_flows.py
BESIDE := $(subst $(comma), ,$(BESIDE_GROUPS))

test: setup labelstudio lint ## set up, lint (ruff, mypy, import contracts) and run the whole test suite (what CI runs)
	@# The end-to-end tour and the longest server-bound tests run in processes of their own
	@# beside the rest of the suite; their output follows the suite's, each under its files.
	@dir=$$(mktemp -d); pids=""; i=0; \
	for group in $(BESIDE_GROUPS); do i=$$((i + 1)); echo "$$group" >$$dir/$$i.files; \
	  $(BIN)/python -m pytest -q --durations=5 $$(echo $$group | tr , ' ') >$$dir/$$i.log 2>&1 & \
	  pids="$$pids $$!"; done; \
	$(BIN)/python -m pytest -q --durations=25 $(addprefix --ignore=,$(BESIDE)); rest=$$?; \
	beside=0; i=0; for pid in $$pids; do i=$$((i + 1)); wait $$pid || beside=1; \
	  echo "--- beside: $$(cat $$dir/$$i.files)"; cat $$dir/$$i.log; done; rm -rf $$dir; \
	exit $$(( rest != 0 || beside != 0 ))

test-fast: setup ## the suite without slow tests
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup ## ruff, mypy and the rooms' import contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup ## format the code
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: setup ## run the benchmarks (JSON under bench/results/, a table on stdout)
	$(BIN)/voicecycle bench data
	$(BIN)/voicecycle bench serve
	$(BIN)/voicecycle bench train

ui: setup ## start (or reuse) the Prefect UI
	$(BIN)/voicecycle server start

server-stop: setup ## stop the local servers started from this workspace
	$(BIN)/voicecycle server stop

lock: setup ## re-resolve requirements/lock.txt from requirements/requirements.in
	$(UV) pip compile requirements/requirements.in $(UV_FLAGS) --python-version 3.11 --no-header --no-annotate -o requirements/lock.txt

clean-workspace: ## delete all local state (datasets, registry, logs): asks first
	@read -p "Delete ./workspace and everything in it? [y/N] " a && [ "$$a" = y ] && rm -rf workspace
