# Two commands do all set-up on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-containers lint format ui clean lock deploy

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

demo: $(STAMP)  ## run the lifecycle demo on embedded stores (resets ./.mlops)
	$(BIN)/mlops demo --reset

test: $(STAMP)  ## the whole test suite (the container tests run separately: make test-containers)
	$(BIN)/python -m pytest -m "not container" -n auto --maxprocesses 4 --dist load --durations 15

test-containers: $(STAMP)  ## build and run the image and the compose stack on a Docker engine (skips without one)
	$(BIN)/python -m pytest -m container tests/containers

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports && $(BIN)/yamllint prefect.yaml config && $(BIN)/hadolint docker/Dockerfile

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

ui: $(STAMP)  ## Prefect UI on :4200 and MLflow UI on :5000 over ./.mlops
	$(BIN)/mlops ui

lock: $(STAMP)  ## refresh requirements.lock after changing pyproject.toml
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf .mlops .pytest_cache .ruff_cache

deploy: $(STAMP)  ## register prefect.yaml's deployments with the Prefect API in PREFECT_API_URL
	$(BIN)/prefect work-pool inspect mlops-process >/dev/null 2>&1 || $(BIN)/prefect work-pool create --type process mlops-process
	$(BIN)/prefect --no-prompt deploy --all
