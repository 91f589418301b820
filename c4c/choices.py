"""Every fixed set of choices in c4c, defined once.

Each set is a ``Literal`` type (the command line uses it, so ``--help`` lists the values and a bad
value is a usage error) and a tuple of its values for the library's own checks. Nothing heavy is
imported here: the command line reads this module before it parses anything.
"""

from __future__ import annotations

from typing import Literal, get_args

Sim = Literal["meanP", "seqLSTM", "seqTransf", "tightTransf"]  # the keys of c4c.model.heads.HEADS, in order
Patch = Literal["2d", "3d"]
Amp = Literal["auto", "bf16", "fp16", "none"]
FrameDecoder = Literal["auto", "cpu", "cuda"]  # where stored JPEG frames are decoded in training
Schedule = Literal["cosine", "reference-cosine", "reference-linear", "constant"]
Optimizer = Literal["adamw", "bertadam"]
Sampling = Literal["head", "tail", "uniform"]
FrameOrder = Literal["keep", "reverse", "shuffle"]
SelectOn = Literal["val", "test", "last"]
CaptionSelectOn = Literal["val", "last"]
MsrvttTrain = Literal["9k", "7k", "full"]
Split = Literal["train", "val", "test"]
Codec = Literal["jpeg", "raw"]
Ties = Literal["reference", "optimistic", "pessimistic", "mean"]
Reranker = Literal["dsl", "qbnorm", "sinkhorn"]
CaptionTokenize = Literal["ptb", "simple", "none"]
WhichCheckpoint = Literal["best", "latest"]
SynthKind = Literal["retrieval", "howto"]
Activation = Literal["auto", "quickgelu", "gelu"]
ReportTo = Literal["none", "tensorboard", "wandb"]
Reader = Literal["c4c", "reference"]
Group = Literal["moment", "video"]
TextPrecision = Literal["fp32", "bf16"]
Loss = Literal["auto", "softmax", "sigmoid"]   # the contrastive loss of training

HEADS: tuple[str, ...] = get_args(Sim)
PATCHES: tuple[str, ...] = get_args(Patch)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
ORDERS: tuple[str, ...] = get_args(FrameOrder)
SELECT_ON: tuple[str, ...] = get_args(SelectOn)
CAPTION_SELECT_ON: tuple[str, ...] = get_args(CaptionSelectOn)
SPLITS: tuple[str, ...] = get_args(Split)
CODECS: tuple[str, ...] = get_args(Codec)
TIES: tuple[str, ...] = get_args(Ties)
RERANKERS: tuple[str, ...] = get_args(Reranker)
CAPTION_TOKENIZERS: tuple[str, ...] = get_args(CaptionTokenize)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
REPORTERS: tuple[str, ...] = get_args(ReportTo)
READERS: tuple[str, ...] = get_args(Reader)
GROUPS: tuple[str, ...] = get_args(Group)
TEXT_PRECISIONS: tuple[str, ...] = get_args(TextPrecision)

# CLIP's image normalisation (open_clip's OPENAI_DATASET_MEAN / _STD), as plain numbers
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# GNMT length-penalty exponent of caption beam search by default (a common default, e.g. tensor2tensor)
DEFAULT_ALPHA = 0.6

# open_clip pretrained tags whose CLIP was trained with QuickGELU (OpenAI's, and those trained like them)
QUICKGELU_TAGS = ("openai", "laion400m_e31", "laion400m_e32", "metaclip_400m", "metaclip_fullcc")
