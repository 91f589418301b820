# c4c: `make demo` runs the pipeline on synthetic data; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO   ?= demo-out

MINI   ?= reports/mini

.PHONY: install test test-fast demo bench clean reproduce-mini

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

# The demo's models are tiny: one thread each is as fast on an idle machine and far faster on a busy one
# (two threads wait on each other whenever another process holds a core).
demo: export OMP_NUM_THREADS ?= 1
demo: install
	$(BIN)/python -m c4c.demo --out $(DEMO)

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/bench_extract.py
	$(BIN)/python bench/bench_heads.py --videos 240 --epochs 60
	$(BIN)/python bench/bench_heads.py --videos 300 --epochs 120 --shapes circle --colours red
	$(BIN)/python bench/bench_heads.py --videos 300 --epochs 120 --shapes circle --colours red \
		--init bench/.work/heads/run-meanP-300-120-4-0.001-1x1-0
	$(BIN)/python bench/bench_train_step.py
	$(BIN)/python bench/bench_pretrain.py
	$(BIN)/python bench/bench_evaluate.py
	$(BIN)/python bench/bench_caption.py

reproduce-mini: install
	$(BIN)/python -m c4c.mini --out $(MINI)

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info

include reproduce.mk
