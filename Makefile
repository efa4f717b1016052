# The newcomer's entry points. `make demo` sets up and runs the local cloud with a demo; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo up down status test test-slow lint pipeline-setup pipeline-test terraform-check

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt functions/requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: setup
	$(BIN)/registrar local up
	$(BIN)/registrar demo

up: setup
	$(BIN)/registrar local up

down:
	$(BIN)/registrar local down

status:
	$(BIN)/registrar local status

# The serving tests run the real model server, which needs TensorFlow and ScaNN: they share .venv-pipeline.
test: setup pipeline-setup
	$(BIN)/python -m pytest -m "not slow"

# The long suites (whole pipeline runs, minutes each); CI runs them as a step of their own.
test-slow: setup pipeline-setup
	$(BIN)/python -m pytest -m slow

lint: setup
	$(BIN)/ruff check .

terraform-check: setup
	bash .ci/terraform.sh

pipeline-test:
	bash .ci/pipeline.sh

pipeline-setup:
	PIPELINE_INSTALL_ONLY=1 bash .ci/pipeline.sh
