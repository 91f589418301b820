# c4c: `make demo` runs the pipeline on synthetic data; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO   ?= demo-out

.PHONY: install test test-fast demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

demo: install
	$(BIN)/c4c synth $(DEMO)/synth --videos 24 --seed 0
	$(BIN)/c4c extract $(DEMO)/synth/annotations.jsonl --dataset jsonl --videos $(DEMO)/synth/videos --out $(DEMO)/frames.h5
	@echo
	@echo "demo outputs:"
	@echo "  videos + annotations : $(DEMO)/synth/videos, $(DEMO)/synth/annotations.jsonl"
	@echo "  frame store          : $(DEMO)/frames.h5"
	@echo "  extraction summary   : $(DEMO)/frames.extract.json"

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/bench_extract.py

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
