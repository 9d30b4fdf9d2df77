# mvinvert: `make demo` installs and recovers the bundled example; `make test` installs and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE ?= examples/skimage_astronaut.png
DEMO_OUT ?= demo_output
PYTEST_ARGS ?=

.PHONY: install test test-slow test-ray demo bench lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-ray: install  # the Ray engine's tests (installs the optional [ray] extra first)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ray]'
	$(BIN)/python -m pytest tests/batch_ray $(PYTEST_ARGS)

demo: install
	$(BIN)/mvinvert recover $(EXAMPLE) -o $(DEMO_OUT) --force
	@echo "demo outputs: $(abspath $(DEMO_OUT))/ (preview.png, mesh.obj, mesh.glb, texture.png, result.json)"

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: install
	$(BIN)/python -m ruff check mvinvert_cli tests bench

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
