# The two commands the README shows: `make run` (the product on its embedded defaults) and
# `make test` (installs and starts what the tests need, then runs them).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint format system-deps venv ha-venv demo demo-stop bench clean mutate

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Home Assistant core for the tests, in its own venv (it pins many libraries), cached per version
# under ~/.cache/homelab-agents; 2-3 minutes the first time, nothing after.
ha-venv: venv
	$(PY) -m workers.lab.homeassistant

system-deps:
	bash deploy/scripts/install-system-deps.sh

run: venv
	$(VENV)/bin/homelab-agents up

# pytest's exit code 5 (no tests collected) is a failure here, never a green run.
test: system-deps venv ha-venv
	$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The demo lab (root: it mounts a small disk and runs dockerd): the first fault is injected at once.
demo: system-deps venv
	$(VENV)/bin/homelab-agents demo --inject docker-exit

demo-stop: venv
	$(VENV)/bin/homelab-agents demo stop

bench: system-deps venv
	$(PY) bench/mttr.py
	$(PY) bench/footprint.py
	$(PY) bench/postgres_mttr.py
	$(PY) bench/scenarios.py
	$(PY) bench/restore.py
	$(PY) bench/storm.py
	$(PY) bench/concurrency.py
	$(PY) bench/sites.py
	$(PY) bench/memory.py
	$(PY) bench/forecast.py

clean:
	rm -rf $(VENV) .homelab .pytest_cache .mypy_cache .ruff_cache

# Mutation testing of the safety modules (tests/mutate.py): redaction, the policy, the
# verification expectations and LLM plan validation; each holds at zero survivors beyond the
# equivalents its test lists. `python -m tests.mutate MODULE TESTS` prints one module's report.
mutate: venv
	$(VENV)/bin/pytest -q tests/unit/test_redact_mutants.py tests/unit/test_safety_mutants.py \
		tests/unit/test_plan_validation_mutants.py
