# One virtual environment in .venv; every target installs into it first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel: an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install run smoke test test-fast bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# Hydra finds launchers and sweepers by walking the hydra_plugins folders on disk; an editable install
	# maps kdx's plugins through an import hook that walk cannot see, so link the folder in (a wheel has it).
	ln -sfn "$(CURDIR)/hydra_plugins/kdx_plugins" \
	  "$$($(BIN)/python -c 'import hydra_plugins.hydra_submitit_launcher as p, pathlib; print(pathlib.Path(p.__file__).parents[1])')/kdx_plugins"
	touch $(STAMP)

run: install  ## the default job: Adult, DNN -> MLP 64-32, 5 seeds
	$(BIN)/kdx run $(ARGS)

smoke: install  ## seconds: a few hundred rows, two seeds
	$(BIN)/kdx run +smoke=on $(ARGS)

test: install
	$(BIN)/python -m pytest -q

test-fast: install  ## skips the end-to-end CLI runs
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/run_benchmarks.py $(ARGS)

lint: install
	$(BIN)/ruff check kdx tests benchmarks hydra_plugins

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
