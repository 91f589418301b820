# reproduce.mk (included by Makefile): `make reproduce-<row>` re-runs one row of the CLIP4Clip paper's
# tables end to end and prints our figures beside the paper's.
#
#   make reproduce-list                                  every row: its target and the paper's figures
#   make reproduce-msrvtt9k-seqTransf DATA=/data         extract, finetune, encode, evaluate, compare
#   make -n reproduce-msrvtt9k-seqTransf DATA=/data      print every command in full, run nothing
#
# DATA    the datasets, laid out as data/README.md says (DATA/msrvtt/msrvtt_data, DATA/msrvtt/videos, ...)
# OUT     the rows' outputs: OUT/<row>/run/ (training run), test.emb.h5 or captions.json, metrics.json,
#         compare.json
# LAUNCH  the command that trains; several GPUs: LAUNCH="$(CURDIR)/.venv/bin/torchrun --nproc_per_node 4 -m c4c.cli"
# EXTRA   more options for the training command, e.g. EXTRA="--workers 8 --grad-accum 2"
# SKIP_MISSING=1  train and encode without annotated videos that are not in the frame store
#
# Each row's settings (the paper's hyper-parameters) and the paper's figures, with their sources, are in
# configs/reproduce/<row>.json; `python -m c4c.reproduce flags` turns them into each command's options.
# Frames are extracted once per dataset into DATA/<dataset>/frames.h5 and shared by all its rows. A stage
# whose output file exists is not run again; an interrupted training run resumes (--resume is added when
# its folder has a checkpoint).

DATA   ?= data
OUT    ?= runs/reproduce
LAUNCH ?= $(BIN)/c4c
EXTRA  ?=
ROWS   := configs/reproduce
REPRO  := $(BIN)/python -m c4c.reproduce
HEADS  := meanP seqLSTM seqTransf tightTransf

# The options of one stage of one row: $(call flags,ROW,STAGE). make runs it for every command it prints,
# so it starts Python without site-packages (-S; the module needs only the standard library).
flags = $(shell $(BIN)/python -S -m c4c.reproduce flags $(ROWS)/$(1).json $(2) --data $(DATA) --out $(OUT)$(if $(SKIP_MISSING), --skip-missing))

.PHONY: reproduce-list
reproduce-list: | install
	@$(REPRO) list $(ROWS)

# The frames of one dataset: $(1) dataset, $(2) the frame store's file in DATA/<dataset>/, $(3) the row whose
# extract settings it uses (every row of a dataset has the same; a test checks it).
define frames
$(DATA)/$(1)/$(2): | install
	@test -d $(DATA)/$(1) || { echo "reproduce: $(DATA)/$(1) not found: set DATA= to the folder that holds $(1)/, laid out as data/README.md says"; exit 1; }
	$$(BIN)/c4c extract $$(call flags,$(3),extract)
endef

# One retrieval row: $(1) row, $(2) dataset, $(3) more prerequisites of its training run.
define retrieval
.PHONY: reproduce-$(1)
reproduce-$(1): $(OUT)/$(1)/metrics.json | install
	$$(REPRO) compare $(ROWS)/$(1).json $(OUT)/$(1)/metrics.json --out $(OUT)/$(1)/compare.json
$(OUT)/$(1)/metrics.json: $(OUT)/$(1)/test.emb.h5 | install
	$$(BIN)/c4c evaluate $$(call flags,$(1),evaluate)
$(OUT)/$(1)/test.emb.h5: $(OUT)/$(1)/run/results.json | install
	$$(BIN)/c4c encode $$(call flags,$(1),encode)
$(OUT)/$(1)/run/results.json: $(DATA)/$(2)/frames.h5 $(3) | install
	$$(LAUNCH) finetune $$(call flags,$(1),finetune) $$(EXTRA)
endef

# One captioning row: $(1) row, $(2) dataset.
define caption
.PHONY: reproduce-$(1)
reproduce-$(1): $(OUT)/$(1)/metrics.json | install
	$$(REPRO) compare $(ROWS)/$(1).json $(OUT)/$(1)/metrics.json --out $(OUT)/$(1)/compare.json
$(OUT)/$(1)/metrics.json: $(OUT)/$(1)/captions.json | install
	$$(BIN)/c4c evaluate $$(call flags,$(1),evaluate)
$(OUT)/$(1)/captions.json: $(OUT)/$(1)/run/results.json | install
	$$(BIN)/c4c caption generate $$(call flags,$(1),caption-generate)
$(OUT)/$(1)/run/results.json: $(DATA)/$(2)/frames.h5 | install
	$$(LAUNCH) caption train $$(call flags,$(1),caption-train) $$(EXTRA)
endef

$(eval $(call frames,msrvtt,frames.h5,msrvtt9k-meanP))
$(eval $(call frames,msvd,frames.h5,msvd-meanP))
$(eval $(call frames,lsmdc,frames.h5,lsmdc-meanP))
$(eval $(call frames,activitynet,frames.h5,activitynet-meanP))
$(eval $(call frames,didemo,frames.h5,didemo-meanP))
$(eval $(call frames,howto100m,frames/manifest.json,pretrain))

# MSR-VTT 1k-A trained on Training-9K and Training-7K, then the other datasets: every head
$(foreach head,$(HEADS),$(eval $(call retrieval,msrvtt9k-$(head),msrvtt)))
$(foreach head,$(HEADS),$(eval $(call retrieval,msrvtt7k-$(head),msrvtt)))
$(foreach dataset,msvd lsmdc activitynet didemo,\
  $(foreach head,$(HEADS),$(eval $(call retrieval,$(dataset)-$(head),$(dataset)))))

# ablations of meanP on MSR-VTT 9k: 3-D linear patch; head and tail frame sampling (uniform: msrvtt9k-meanP)
$(eval $(call retrieval,msrvtt9k-meanP-3d,msrvtt))
$(eval $(call retrieval,msrvtt9k-meanP-head,msrvtt))
$(eval $(call retrieval,msrvtt9k-meanP-tail,msrvtt))

# post-pretraining on HowTo100M-380k, scored zero-shot on MSR-VTT 1k-A; then fine-tuned from it
.PHONY: reproduce-pretrain
reproduce-pretrain: $(OUT)/pretrain/metrics.json | install
	$(REPRO) compare $(ROWS)/pretrain.json $(OUT)/pretrain/metrics.json --out $(OUT)/pretrain/compare.json
$(OUT)/pretrain/metrics.json: $(OUT)/pretrain/test.emb.h5 | install
	$(BIN)/c4c evaluate $(call flags,pretrain,evaluate)
$(OUT)/pretrain/test.emb.h5: $(OUT)/pretrain/run/results.json $(DATA)/msrvtt/frames.h5 | install
	$(BIN)/c4c encode $(call flags,pretrain,encode)
$(OUT)/pretrain/run/results.json: $(DATA)/howto100m/frames/manifest.json | install
	$(LAUNCH) pretrain $(call flags,pretrain,pretrain) $(EXTRA)

$(eval $(call retrieval,msrvtt9k-meanP-pretrained,msrvtt,$(OUT)/pretrain/run/results.json))

# captioning on MSR-VTT (full split) and MSVD
$(eval $(call caption,caption-msrvtt,msrvtt))
$(eval $(call caption,caption-msvd,msvd))
