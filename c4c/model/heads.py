"""The similarity heads of CLIP4Clip (spec 4.6), and :data:`HEADS`, the one table of them.

Loose heads map frame features ``V: [B, T, D]`` to ``V': [B, T, D]``; the model then scores with the
masked mean of L2-normalised frames. The tight head scores (text, video) pairs with a cross encoder.
Padded frames (``mask == False``) never influence a score.

A new head is a module here and an entry of :data:`HEADS`; its name also goes into
``c4c.choices.Sim`` (the command line reads that before torch; a test holds the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from c4c.errors import C4CError
from c4c.model.towers import context_length, embed_dim, text_parts
HEAD_LN_EPS = 1e-12  # the reference's TF-style LayerNorm in module_cross.py (CLIP's own keep 1e-5)
_MASKED = -1e4  # additive attention mask for padded keys (exp underflows to exactly 0)


def key_padding_bias(mask: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """``mask: [B, L]`` (True = real) -> additive bias ``[B * heads, L, L]`` that hides padded keys."""
    b, length = mask.shape
    bias = torch.zeros(b, 1, 1, length, dtype=dtype, device=mask.device)
    bias = bias.masked_fill(~mask.bool()[:, None, None, :], _MASKED)
    return bias.expand(b, heads, length, length).reshape(b * heads, length, length)


def bert_init(module: nn.Module) -> None:
    """The reference's BERT rule for new modules: Linear/Embedding weights ~ N(0, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class TemporalShape:
    """The shape of a temporal transformer: that of CLIP's text blocks when they fit the embedding (the
    reference copies them), else a fresh one of the embedding's width."""

    width: int
    heads: int
    act: type
    mlp_ratio: float
    positions: int               # frame positions (CLIP's context length)
    from_text: bool              # the blocks and positions start as CLIP's text ones


def temporal_shape(clip) -> TemporalShape:
    """What a head's transformer looks like for ``clip`` (:class:`TemporalShape`)."""
    from open_clip.transformer import ResidualAttentionBlock

    width, parts = embed_dim(clip), text_parts(clip)
    if parts is not None and int(parts.transformer.width) == width \
            and all(isinstance(b, ResidualAttentionBlock) for b in parts.transformer.resblocks):
        block = parts.transformer.resblocks[0]
        return TemporalShape(width, block.attn.num_heads, type(block.mlp.gelu),
                             block.mlp.c_fc.out_features / width, int(parts.positional_embedding.shape[0]), True)
    heads = max(1, width // 64)
    while width % heads:
        heads -= 1
    return TemporalShape(width, heads, nn.GELU, 4.0, max(context_length(clip), 77), False)


def _head_norm(width: int) -> nn.Module:
    """A LayerNorm as the reference's heads have it: eps 1e-12 (``until_module.LayerNorm``)."""
    from open_clip.transformer import LayerNorm

    return LayerNorm(width, eps=HEAD_LN_EPS)


def _make_transformer(shape: TemporalShape, layers: int):
    """CLIP-style pre-LN blocks whose LayerNorms use the reference's eps 1e-12 (spec 4.6)."""
    from open_clip.transformer import Transformer

    return Transformer(width=shape.width, layers=layers, heads=shape.heads, mlp_ratio=shape.mlp_ratio,
                       act_layer=shape.act, norm_layer=_head_norm)


def _copy_text_layers(target, clip, layers: int, shape: TemporalShape) -> tuple[int, list[int]]:
    """Initialise ``target.resblocks[i]`` from CLIP text block i (i < layers), as the reference does;
    returns CLIP's number of text layers and the blocks left at their random init (all of them when
    the text blocks do not fit, ``shape.from_text`` False).

    Building a model says nothing: a saved run loads its trained blocks over these right after. The
    trainer tells a run that is being made (:func:`random_init_note`)."""
    if not shape.from_text:
        return 0, list(range(layers))
    text = text_parts(clip).transformer.resblocks
    for i in range(min(layers, len(text))):
        target.resblocks[i].load_state_dict(text[i].state_dict())
    return len(text), list(range(len(text), layers))


class _FromTextLayers:
    """What a transformer head initialised from CLIP's text layers remembers of that (read by
    :func:`random_init_note`, updated by ``--init`` loading through :func:`mark_loaded`)."""

    blocks: str                # the attribute holding the head's transformer
    text_layers: int = 0       # CLIP's text layers
    random_blocks: list[int]   # the head's blocks that keep their random init


def mark_loaded(model: nn.Module, missing: list[str]) -> None:
    """After weights were loaded into ``model``: blocks whose weights are not in ``missing`` no longer
    keep their random init."""
    for name, module in model.named_modules():
        if isinstance(module, _FromTextLayers) and module.random_blocks:
            prefix = f"{name}.{module.blocks}.resblocks." if name else f"{module.blocks}.resblocks."
            module.random_blocks = [i for i in module.random_blocks
                                    if any(k.startswith(f"{prefix}{i}.") for k in missing)]


def random_init_note(model: nn.Module) -> str | None:
    """A warning for a run being made whose head has more layers than CLIP has text layers to copy
    (None when every block came from CLIP or from ``--init``)."""
    for module in model.modules():
        if isinstance(module, _FromTextLayers) and module.random_blocks:
            first = module.random_blocks[0]
            if not module.text_layers:
                return ("this CLIP's text blocks do not fit the embedding (another width or kind of block): the "
                        "temporal layers start from random init")
            return (f"CLIP has {module.text_layers} text layers; temporal layers {first}.. keep their "
                    "random init")
    return None


def _init_positions(embedding: nn.Embedding, clip, shape: TemporalShape) -> None:
    if not shape.from_text:
        return
    positions = text_parts(clip).positional_embedding
    rows = min(embedding.num_embeddings, positions.shape[0])
    with torch.no_grad():
        embedding.weight[:rows].copy_(positions[:rows])


class MeanP(nn.Module):
    """Parameter-free: the frames as they are (the masked mean happens in the scoring tail)."""

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return frames


class SeqLSTM(nn.Module):
    """One-layer LSTM over the real frames, plus a residual connection (spec 4.6)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(width, width, num_layers=1, batch_first=True)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(frames, lengths, batch_first=True, enforce_sorted=False)
        if self.training:
            self.lstm.flatten_parameters()
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=frames.shape[1])
        return out.to(frames.dtype) + frames


class SeqTransf(nn.Module, _FromTextLayers):
    """Frame position embeddings + a small transformer (from CLIP's first text layers) + residual."""

    def __init__(self, clip, layers: int = 4) -> None:
        super().__init__()
        shape = temporal_shape(clip)
        self.heads = shape.heads
        self.frame_position_embeddings = nn.Embedding(shape.positions, shape.width)
        self.temporal = _make_transformer(shape, layers)
        bert_init(self)
        _init_positions(self.frame_position_embeddings, clip, shape)
        self.blocks = "temporal"
        self.text_layers, self.random_blocks = _copy_text_layers(self.temporal, clip, layers, shape)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        if t > self.frame_position_embeddings.num_embeddings:
            raise ValueError(f"{t} frames exceed the {self.frame_position_embeddings.num_embeddings} frame positions")
        pos = self.frame_position_embeddings.weight[:t].to(frames.dtype)
        x = frames + pos[None]
        x = self.temporal(x, attn_mask=key_padding_bias(mask, self.heads, x.dtype))
        return x + frames  # residual to the input without positions, as the reference


class TightTransf(nn.Module, _FromTextLayers):
    """Cross encoder over ``[text EOT feature ; frames]`` for every (text, video) pair, linear score."""

    def __init__(self, clip, layers: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        shape = temporal_shape(clip)
        width = shape.width
        self.heads = shape.heads
        self.position_embeddings = nn.Embedding(shape.positions, width)
        self.dropout = nn.Dropout(dropout)
        self.encoder = _make_transformer(shape, layers)
        self.pool_norm = _head_norm(width)
        self.pool_dense = nn.Linear(width, width)
        self.pool_act = shape.act()
        self.score = nn.Linear(width, 1)
        bert_init(self)
        _init_positions(self.position_embeddings, clip, shape)
        self.blocks = "encoder"
        self.text_layers, self.random_blocks = _copy_text_layers(self.encoder, clip, layers, shape)

    def forward(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``text: [Bt, D]``, ``frames: [Bv, T, D]``, ``mask: [Bv, T]`` -> logits ``[Bt, Bv]``."""
        bt, (bv, t, d) = text.shape[0], frames.shape
        if t + 1 > self.position_embeddings.num_embeddings:
            raise ValueError(f"{t} frames exceed the cross encoder's {self.position_embeddings.num_embeddings - 1}")
        z = torch.cat([text[:, None, None, :].expand(bt, bv, 1, d),
                       frames[None].expand(bt, bv, t, d)], dim=2).reshape(bt * bv, 1 + t, d)
        z = self.dropout(z + self.position_embeddings.weight[: 1 + t].to(z.dtype)[None])
        full = torch.cat([torch.ones(bv, 1, dtype=torch.bool, device=mask.device), mask.bool()], dim=1)
        bias = key_padding_bias(full[None].expand(bt, bv, 1 + t).reshape(bt * bv, 1 + t), self.heads, z.dtype)
        z = self.encoder(z, attn_mask=bias)
        h = self.pool_act(self.pool_dense(self.pool_norm(z[:, 0])))
        return self.score(h).view(bt, bv)


@dataclass(frozen=True)
class Head:
    """One similarity head: how it is built and what the rest of c4c needs to know of it."""

    build: Callable[[Any, int], nn.Module]  # (CLIP, temporal layers) -> the head module
    tight: bool = False             # scores (text, video) pairs with a cross encoder: no video embedding alone
    from_text_layers: bool = False  # its transformer starts as CLIP's text layers (text width == embedding size)
    temporal_layers: bool = False   # --temporal-layers sets the depth of its transformer
    sees_order: bool = False        # the order of the frames changes its scores


HEADS: dict[str, Head] = {
    "meanP": Head(lambda clip, layers: MeanP()),
    "seqLSTM": Head(lambda clip, layers: SeqLSTM(embed_dim(clip)), sees_order=True),
    "seqTransf": Head(SeqTransf, from_text_layers=True, temporal_layers=True, sees_order=True),
    "tightTransf": Head(TightTransf, tight=True, from_text_layers=True, temporal_layers=True, sees_order=True),
}


def head_of(sim: str) -> Head:
    """The :data:`HEADS` entry of ``sim``; C4CError naming the choices when there is none."""
    if sim not in HEADS:
        raise C4CError(f"unknown similarity head {sim!r}", hint=f"choose one of: {', '.join(HEADS)}")
    return HEADS[sim]


def loose_heads() -> list[str]:
    """The heads that give each video an embedding of its own (every head but the tight ones)."""
    return [name for name, head in HEADS.items() if not head.tight]


def make_head(sim: str, clip, layers: int = 4) -> nn.Module:
    """The head module for ``sim`` (a key of :data:`HEADS`)."""
    return head_of(sim).build(clip, layers)
