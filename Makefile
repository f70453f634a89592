# Two commands on a fresh machine:  `make dev` runs the whole flow locally, `make test` passes every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup system-deps dev test test-lowest lint typecheck pytest bench reliability clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,test]'
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

# make dev PORT=8001 EMULATOR_PORT=8788: other ports, when the defaults are taken.
PORT          ?= 8000
EMULATOR_PORT ?= 8787
dev: setup
	$(BIN)/orga-ai dev --port $(PORT) --emulator-port $(EMULATOR_PORT)

lint: setup
	$(BIN)/ruff check src tests benchmarks examples

typecheck: setup
	$(BIN)/mypy

pytest: setup system-deps
	$(BIN)/pytest

test: lint typecheck pytest

# The lowest release of every direct dependency pyproject allows (uv's lowest-direct resolution), in a venv of its own:
# proves the floors. Not part of `make test`; CI runs it as its own job. The suite minus the browser and Node tests
# (those exercise Chromium and the npm packages, not the floors).
LOWEST        ?= .venv-lowest
LOWEST_PYTEST ?= -m "not browser and not node" -p no:randomly -q
test-lowest: setup system-deps
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q uv
	rm -rf $(LOWEST)
	$(BIN)/uv venv -q --python $(BIN)/python $(LOWEST)
	$(BIN)/uv pip install -q --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[all,test]'
	$(BIN)/uv pip list --python $(LOWEST)/bin/python > $(LOWEST)/versions.txt
	$(LOWEST)/bin/pytest $(LOWEST_PYTEST)

# The build measured before issue 22's changes (docs/benchmarks.md of 2026-12-02): "today", run in the same rounds
# as the current build, for the no-worse targets (p99, memory); benchmarks/report.py keeps that day's figures too.
BENCH_BASELINE ?= 2233f6d
bench: setup system-deps
	$(BIN)/python benchmarks/run.py --baseline $(BENCH_BASELINE)

reliability: setup system-deps
	$(BIN)/pytest tests/reliability -p no:randomly -q

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache
