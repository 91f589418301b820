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
	@echo "== 1/9 synthetic data: 48 captioned clips + 64 narrated long videos (HowTo100M files)"
	$(BIN)/c4c synth $(DEMO)/synth --count 48 --seed 0 -q
	$(BIN)/c4c synth $(DEMO)/howto --kind howto --count 64 --duration 30 --fps 4 --width 64 --height 48 --seed 0 -q
	@echo "== 2/9 extract frames (the narrated videos as a 2-shard set)"
	$(BIN)/c4c extract $(DEMO)/synth/annotations.jsonl --dataset jsonl --videos $(DEMO)/synth/videos \
		--out $(DEMO)/frames.h5 --size 32 --fps 2 -q
	$(BIN)/c4c extract $(DEMO)/howto --dataset howto100m --videos $(DEMO)/howto/videos \
		--out $(DEMO)/howto-frames --shards 2 --size 32 --fps 1 -q
	@echo "== 3/9 post-pretrain meanP on the narrated videos"
	rm -rf $(DEMO)/run-pretrain
	$(BIN)/c4c pretrain --ann $(DEMO)/howto --frames $(DEMO)/howto-frames --clip tiny --pretrained none \
		--steps 90 --batch-size 16 --lr 1e-3 --coef-lr 1 --workers 0 --out $(DEMO)/run-pretrain -q
	@echo "== 4/9 fine-tune meanP (from the post-pretrained run) and seqTransf"
	rm -rf $(DEMO)/run-meanP $(DEMO)/run-seqTransf
	$(BIN)/c4c finetune --dataset jsonl --ann $(DEMO)/synth/annotations.jsonl --frames $(DEMO)/frames.h5 \
		--clip tiny --init $(DEMO)/run-pretrain --sim meanP --epochs 5 --batch-size 16 \
		--lr 1e-3 --coef-lr 1 --workers 0 --out $(DEMO)/run-meanP -q
	$(BIN)/c4c finetune --dataset jsonl --ann $(DEMO)/synth/annotations.jsonl --frames $(DEMO)/frames.h5 \
		--clip tiny --pretrained none --sim seqTransf --temporal-layers 2 --epochs 5 --batch-size 16 \
		--lr 1e-3 --coef-lr 1 --workers 0 --out $(DEMO)/run-seqTransf -q
	@echo "== 5/9 encode the test split and evaluate (raw and dual-softmax re-ranked)"
	$(BIN)/c4c encode --run $(DEMO)/run-meanP --frames $(DEMO)/frames.h5 --dataset jsonl \
		--ann $(DEMO)/synth/annotations.jsonl --out $(DEMO)/meanP/test.emb.h5 --workers 0 --overwrite -q
	$(BIN)/c4c evaluate $(DEMO)/meanP/test.emb.h5 --rerank dsl -q
	$(BIN)/c4c encode --run $(DEMO)/run-seqTransf --frames $(DEMO)/frames.h5 --dataset jsonl \
		--ann $(DEMO)/synth/annotations.jsonl --out $(DEMO)/seqTransf/test.emb.h5 --workers 0 --overwrite -q
	$(BIN)/c4c evaluate $(DEMO)/seqTransf/test.emb.h5 -q
	@echo "== 6/9 train a captioner on the meanP encoder"
	rm -rf $(DEMO)/run-caption
	$(BIN)/c4c caption train --dataset jsonl --ann $(DEMO)/synth/annotations.jsonl --frames $(DEMO)/frames.h5 \
		--init $(DEMO)/run-meanP --decoder-layers 2 --epochs 40 --batch-size 16 --lr 2e-3 --workers 0 \
		--out $(DEMO)/run-caption -q
	@echo "== 7/9 caption the test videos and score the captions"
	$(BIN)/c4c caption generate --run $(DEMO)/run-caption --frames $(DEMO)/frames.h5 --dataset jsonl \
		--ann $(DEMO)/synth/annotations.jsonl --split test --beam 3 --out $(DEMO)/captions.json -q
	$(BIN)/c4c evaluate $(DEMO)/captions.json --dataset jsonl --ann $(DEMO)/synth/annotations.jsonl --split test -q
	@echo "== 8/9 index every video (as for a folder of your own videos)"
	$(BIN)/c4c encode --run $(DEMO)/run-meanP --frames $(DEMO)/frames.h5 --out $(DEMO)/all.emb.h5 --workers 0 --overwrite -q
	$(BIN)/c4c index $(DEMO)/all.emb.h5 --out $(DEMO)/index --overwrite -q
	@echo "== 9/9 search"
	$(BIN)/c4c search $(DEMO)/index "a red circle moves left" -k 5
	@echo
	@echo "demo outputs:"
	@echo "  videos + annotations : $(DEMO)/synth (retrieval clips), $(DEMO)/howto (narrated videos, HowTo100M files)"
	@echo "  frame stores         : $(DEMO)/frames.h5, $(DEMO)/howto-frames/ (2 shards + manifest.json)"
	@echo "  post-pretrained run  : $(DEMO)/run-pretrain"
	@echo "  fine-tuned runs      : $(DEMO)/run-meanP, $(DEMO)/run-seqTransf (config.json, metrics.jsonl, best/, results.json)"
	@echo "  embeddings + metrics : $(DEMO)/meanP/test.emb.h5 + metrics.json, $(DEMO)/seqTransf/test.emb.h5 + metrics.json"
	@echo "  captioner + captions : $(DEMO)/run-caption, $(DEMO)/captions.json, $(DEMO)/captions.metrics.json"
	@echo "  search index         : $(DEMO)/index (query it: .venv/bin/c4c search $(DEMO)/index \"a blue square moves up\")"

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
