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
	$(BIN)/c4c synth $(DEMO)/synth --videos 48 --seed 0
	$(BIN)/c4c extract $(DEMO)/synth/annotations.jsonl --dataset jsonl --videos $(DEMO)/synth/videos \
		--out $(DEMO)/frames.h5 --size 32 --fps 2
	rm -rf $(DEMO)/run-seqTransf
	$(BIN)/c4c finetune --dataset jsonl --ann $(DEMO)/synth/annotations.jsonl --frames $(DEMO)/frames.h5 \
		--clip tiny --pretrained none --sim seqTransf --temporal-layers 2 --epochs 5 --batch-size 16 \
		--lr 1e-3 --coef-lr 1 --workers 0 --out $(DEMO)/run-seqTransf
	@echo
	@echo "demo outputs:"
	@echo "  videos + annotations : $(DEMO)/synth/videos, $(DEMO)/synth/annotations.jsonl"
	@echo "  frame store          : $(DEMO)/frames.h5 (summary: $(DEMO)/frames.extract.json)"
	@echo "  fine-tuned run       : $(DEMO)/run-seqTransf (config.json, metrics.jsonl, best/, results.json)"

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/bench_extract.py
	$(BIN)/python bench/bench_heads.py --videos 240 --epochs 60
	$(BIN)/python bench/bench_heads.py --videos 300 --epochs 120 --shapes circle --colours red
	$(BIN)/python bench/bench_heads.py --videos 300 --epochs 120 --shapes circle --colours red \
		--init bench/.work/heads/run-meanP-300-120-4-0.001-1x1-0
	$(BIN)/python bench/bench_train_step.py
	$(BIN)/python bench/bench_pretrain.py
	$(BIN)/python bench/bench_evaluate.py

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info

include reproduce.mk
