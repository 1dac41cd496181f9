# The two commands of the README: `make demo` (the main job on embedded defaults) and `make test`.
# Both create .venv and install the project into it on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench ui alerts clean prefect-yaml

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/colorize demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest

# The unit tests alone: no Prefect server, no S3 server, no subprocess clusters (about a minute).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not prefect and not s3 and not slow and not chaos and not gpu" -p no:cacheprovider

# The Prefect UI at http://127.0.0.1:4200; `make demo` in another terminal records its runs there.
ui: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port 4200

# The Prefect automations that alert when an archive run has failed photos (infra/automation-failures.yaml)
# and when a destination's nightly run has not finished (infra/automation-no-run.yaml), created or updated on
# the server PREFECT_API_URL names; BLOCK=TYPE/NAME sends through that notification block, WITHIN=36h sets
# the no-run alert's window (default 30h).
alerts: $(STAMP)
	$(BIN)/python -m flows.alerts create $(if $(BLOCK),--block $(BLOCK)) $(if $(WITHIN),--within $(WITHIN))

bench: $(STAMP)
	$(BIN)/python -m bench.bench_cli
	$(BIN)/python -m bench.bench_models
	$(BIN)/python -m bench.bench_dataset
	$(BIN)/python -m bench.bench_infer --prefect
	$(BIN)/python -m bench.bench_history
	$(BIN)/python -m bench.bench_loader

# infra/prefect.yaml is generated from the deployments defined in flows/serve.py.
prefect-yaml: $(STAMP)
	$(BIN)/python -m flows.serve > infra/prefect.yaml

clean:
	rm -rf $(VENV) demo-output .pytest_cache
