"""Captioning: a transformer decoder over CLIP4Clip's video features, and batched beam search.

The paper attaches a caption decoder "as in UniVL" after the video encoder (spec 7.2). What c4c
builds, and why:

* **Memory.** The decoder cross-attends to the per-frame features of the video encoder *after the
  head's temporal module* (``CLIP4Clip.encode_video``): the seqTransf / seqLSTM output sequence,
  and for meanP the frame features themselves. tightTransf has no video-only temporal module (its
  cross encoder needs a text), so its memory is the frame features too. Padded frames are hidden
  by a key padding mask, so they never change a caption (tested). The memory goes through one
  LayerNorm before the cross-attention projections (the CLIP features are not normalised).
* **Width** = CLIP's embedding size ``D`` (512 for ViT-B/32); no projection to UniVL's 768.
* **Vocabulary** = CLIP's BPE (49,408 tokens, ``SOT``/``EOT`` as in :mod:`c4c.data.text`). The
  decoder's input embedding and output layer are **one tied matrix initialised from CLIP's
  ``token_embedding``** (a copy) with a separate output bias, and a trainable linear map sits
  between the last hidden state and the tied layer (identity at init when CLIP's text width equals
  ``D``, so training starts from plain tying; it is the projection when the widths differ, with
  another one on the input side). Why a copy and not CLIP's own tensor (UniVL ties its decoder to
  BERT's live word embedding, which learns at the decoder's rate): in CLIP4Clip, CLIP's token
  embedding is frozen by ``freeze_layers >= 0`` and otherwise learns at ``lr x coef_lr`` (1e-7 by
  default). Measured on the tiny config, memorising 4 captions at lr 1e-3 (token loss from 10.8):
  after 60 steps, 9.9 through CLIP's frozen matrix (with the map), 6.8 through a trainable copy
  without the map, 2.7 through a trainable copy with the map. The copy costs ``V x E`` parameters (25M for ViT-B/32) and leaves the
  retrieval towers trained exactly as in finetune.
* **Layers**: pre-LN (LayerNorm before masked self-attention, before cross-attention and before
  the MLP, residual around each, a final LayerNorm), not UniVL's post-LN BERT blocks. Pre-LN is
  what CLIP's own blocks use, trains stably without depending on warm-up, and is the better-behaved
  choice under bf16/fp16 autocast. GELU, MLP ratio 4, dropout 0.1 (UniVL's), 3 layers by default
  (UniVL's published captioning runs), heads of CLIP's text tower. Position embeddings are learned,
  initialised from CLIP's text positions when the widths match.
* **Masks.** Self-attention is causal. Captions are right-padded, so the causal mask alone keeps
  padding away from every real position; padded positions are never scored by the loss.
* **Loss** (:meth:`CaptionModel.forward`): token cross entropy over the real target positions only
  (the caption tokens and EOT; teacher forcing with input ``ids[:-1]`` and target ``ids[1:]``),
  plus ``W`` x CLIP4Clip's symmetric contrastive retrieval loss (spec 4.7; ``W = 1`` is the paper's
  "L_caption + L_retrieval", ``W = 0`` turns it off and skips the text tower). UniVL's padding
  quirk (its loss also trains the model to emit ``[PAD]`` after ``[SEP]``) is deliberately not
  reproduced.

Decoding (batched beam search over this decoder's key/value cache) is :mod:`c4c.model.beam`;
captions become text in :mod:`c4c.data.detokenize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from c4c.data.text import SOT
from c4c.errors import C4CError
from c4c.model.clip4clip import CLIP4Clip
from c4c.model.beam import DEFAULT_ALPHA, Hypothesis, beam_search
from c4c.model.heads import bert_init
from c4c.model.towers import embed_dim, text_parts


@dataclass
class DecoderConfig:
    """Shape of the caption decoder; saved in a caption run's config.json."""

    layers: int = 3               # UniVL's published captioning depth
    heads: int = 0                # 0: the CLIP text tower's heads (width // 64 when the widths differ)
    mlp_ratio: float = 4.0
    dropout: float = 0.1          # hidden and attention dropout (UniVL's 0.1)
    max_positions: int = 77       # longest decoder input (SOT + tokens); CLIP's context length

    def validate(self) -> None:
        if self.layers < 1:
            raise C4CError(f"--decoder-layers must be at least 1, got {self.layers}")
        if self.heads < 0:
            raise C4CError(f"--decoder-heads must be 0 (automatic) or positive, got {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise C4CError(f"--decoder-dropout must be in [0, 1), got {self.dropout}")
        if self.max_positions < 2:
            raise C4CError(f"decoder max_positions must be at least 2, got {self.max_positions}")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, L, D]`` -> ``[B, H, L, D / H]``."""
    b, length, width = x.shape
    return x.view(b, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, L, Dh]`` -> ``[B, L, H * Dh]``."""
    b, heads, length, dh = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * dh)


class DecoderLayer(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the video memory, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise C4CError(f"decoder width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.attn_dropout = dropout
        self.ln_1 = nn.LayerNorm(width)
        self.self_qkv = nn.Linear(width, 3 * width)
        self.self_out = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.cross_q = nn.Linear(width, width)
        self.cross_kv = nn.Linear(width, 2 * width)
        self.cross_out = nn.Linear(width, width)
        self.ln_3 = nn.LayerNorm(width)
        hidden = int(round(width * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the (normalised) memory ``[B, T, D]`` -> two ``[B, H, T, Dh]``."""
        k, v = self.cross_kv(memory).chunk(2, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def _cross(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``x: [B, Lq, D]`` (queries grouped by video) attends to its video's memory; ``mask: [B, 1, 1, T]``."""
        q = _split_heads(self.cross_q(self.ln_2(x)), self.heads)
        p = self.attn_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=p)
        return x + self.drop(self.cross_out(_merge_heads(a)))

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``x: [B, L, D]`` -> ``[B, L, D]``; position ``i`` sees positions ``<= i``."""
        q, k, v = (_split_heads(t, self.heads) for t in self.self_qkv(self.ln_1(x)).chunk(3, dim=-1))
        p = self.attn_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        x = x + self.drop(self.self_out(_merge_heads(a)))
        x = self._cross(x, kv, mask)
        return x + self.drop(self.mlp(self.ln_3(x)))

    def step(self, x: torch.Tensor, cache: dict, t: int, capacity: int,
             kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor, beams: int) -> torch.Tensor:
        """One new position ``t`` for every row: ``x: [N, 1, D]`` with ``N = B * beams`` (video-major).

        Writes this position's keys/values into ``cache["k"]``/``cache["v"]`` (``[N, H, capacity, Dh]``,
        allocated at the first step in the dtype autocast gives them).
        """
        q, k, v = (_split_heads(z, self.heads) for z in self.self_qkv(self.ln_1(x)).chunk(3, dim=-1))
        if "k" not in cache:
            shape = (k.shape[0], k.shape[1], capacity, k.shape[3])
            cache["k"] = k.new_zeros(shape)
            cache["v"] = v.new_zeros(shape)
        cache["k"][:, :, t:t + 1] = k
        cache["v"][:, :, t:t + 1] = v
        a = F.scaled_dot_product_attention(q, cache["k"][:, :, :t + 1], cache["v"][:, :, :t + 1])
        x = x + self.self_out(_merge_heads(a))
        n, _, width = x.shape
        # The beams of one video are its queries: [N, 1, D] -> [B, beams, D] against that video's memory.
        x = self._cross(x.view(n // beams, beams, width), kv, mask).view(n, 1, width)
        return x + self.mlp(self.ln_3(x))


def memory_mask(video_mask: torch.Tensor) -> torch.Tensor:
    """bool ``[B, T]`` (True = real frame) -> SDPA mask ``[B, 1, 1, T]``.

    A video without any real frame (an empty clip) attends to its all-zero padding instead of
    producing NaN.
    """
    mask = video_mask.bool()
    mask = mask | ~mask.any(dim=1, keepdim=True)
    return mask[:, None, None, :]


class CaptionDecoder(nn.Module):
    """The decoder proper: token embedding (tied to the output layer), positions, pre-LN layers."""

    def __init__(self, width: int, token_embedding: torch.Tensor, config: DecoderConfig, heads: int,
                 positions_init: torch.Tensor | None = None) -> None:
        super().__init__()
        config.validate()
        vocab_size, text_width = token_embedding.shape
        self.width, self.text_width, self.config = width, int(text_width), config
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positions = nn.Embedding(config.max_positions, width)
        self.proj_in = nn.Linear(text_width, width, bias=False) if text_width != width else None
        self.drop = nn.Dropout(config.dropout)
        self.ln_memory = nn.LayerNorm(width)
        self.layers = nn.ModuleList(DecoderLayer(width, heads, config.mlp_ratio, config.dropout)
                                    for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, text_width, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        bert_init(self)
        with torch.no_grad():
            self.token_embedding.weight.copy_(token_embedding)
            if text_width == width:  # identity at init: the logits start as plain tying
                self.proj_out.weight.copy_(torch.eye(width))
            if positions_init is not None and positions_init.shape[1] == width:
                rows = min(config.max_positions, positions_init.shape[0])
                self.positions.weight[:rows].copy_(positions_init[:rows])

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``tokens: [B, L]`` -> input vectors ``[B, L, D]`` at positions ``start ..``."""
        length = tokens.shape[1]
        if start + length > self.config.max_positions:
            raise ValueError(f"{start + length} decoder positions exceed max_positions {self.config.max_positions}")
        x = self.token_embedding(tokens)
        if self.proj_in is not None:
            x = self.proj_in(x)
        return self.drop(x + self.positions.weight[start:start + length].to(x.dtype))

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the keys and values of the memory ``[B, T, D]``."""
        memory = self.ln_memory(memory)
        return [layer.memory_kv(memory) for layer in self.layers]

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``tokens: [B, L]``, ``memory: [B, T, D]``, ``video_mask: [B, T]`` -> hidden ``[B, L, D]``."""
        x = self.embed(tokens)
        mask = memory_mask(video_mask)
        for layer, kv in zip(self.layers, self.memory_kv(memory)):
            x = layer(x, kv, mask)
        return self.ln_final(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden: [..., D]`` -> vocabulary logits ``[..., V]`` through the tied embedding."""
        return F.linear(self.proj_out(hidden), self.token_embedding.weight, self.out_bias)


class IncrementalDecoder:
    """A :class:`CaptionDecoder` with a key/value cache: ``beams`` rows per video, video-major."""

    def __init__(self, decoder: CaptionDecoder, memory: torch.Tensor, video_mask: torch.Tensor, *,
                 beams: int, max_len: int, banned: Sequence[int] = (SOT,)) -> None:
        if max_len > decoder.config.max_positions:
            raise C4CError(f"max_len {max_len} exceeds the decoder's {decoder.config.max_positions} positions")
        self.decoder, self.beams = decoder, beams
        self.mask = memory_mask(video_mask)
        self.kv = decoder.memory_kv(memory)
        self.capacity = max_len
        self.cache: list[dict] = [{} for _ in decoder.layers]
        self.banned = list(banned)
        self.t = 0

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.decoder.embed(tokens.to(self.mask.device)[:, None], start=self.t)
        if self.t >= self.capacity:
            raise ValueError(f"more than {self.capacity} decoding steps")
        for layer, kv, cache in zip(self.decoder.layers, self.kv, self.cache):
            x = layer.step(x, cache, self.t, self.capacity, kv, self.mask, self.beams)
        self.t += 1
        logits = self.decoder.logits(self.decoder.ln_final(x[:, 0])).float()
        if self.banned:
            logits[:, self.banned] = float("-inf")
        return logits.log_softmax(dim=-1)

    def reorder(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.mask.device)
        self.cache = [{name: buf.index_select(0, rows) for name, buf in cache.items()} for cache in self.cache]


class CaptionModel(CLIP4Clip):
    """CLIP4Clip plus a caption decoder. State dict: ``clip.*``, ``head.*`` (as CLIP4Clip) and ``decoder.*``,
    so a retrieval run's weights load into it and only the decoder starts fresh.

    ``forward`` returns the training loss ``(total, caption, retrieval)``; :meth:`generate` decodes.
    """

    def __init__(self, clip, *, sim: str = "meanP", patch: str = "2d", temporal_layers: int = 4,
                 decoder: DecoderConfig | None = None) -> None:
        super().__init__(clip, sim=sim, patch=patch, temporal_layers=temporal_layers)
        config = decoder or DecoderConfig()
        width, parts = embed_dim(clip), text_parts(clip)
        if parts is None:
            raise C4CError("the caption decoder starts from CLIP's token embedding, and this CLIP's text tower "
                           f"({type(clip.text).__name__}) has none", hint="caption with an open_clip text tower")
        text_width = parts.token_embedding.weight.shape[1]
        heads = config.heads
        if heads == 0:
            text_heads = parts.transformer.resblocks[0].attn.num_heads
            heads = text_heads if text_width == width else max(1, width // 64)
        positions = parts.positional_embedding.detach() if text_width == width else None
        self.decoder = CaptionDecoder(width, parts.token_embedding.weight.detach(), config, heads, positions)

    def caption_loss(self, text_ids: torch.Tensor, text_mask: torch.Tensor, memory: torch.Tensor,
                     video_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing on ``text_ids: [B, W]`` (SOT ... EOT, padding): ``(summed CE, real target count)``.

        Input ``ids[:, :-1]``, target ``ids[:, 1:]`` where ``text_mask[:, 1:]`` (caption tokens and EOT).
        Only the real positions are projected to the vocabulary.
        """
        inputs, targets = text_ids[:, :-1], text_ids[:, 1:]
        real = text_mask[:, 1:].bool()                                   # [B, W - 1]
        hidden = self.decoder(inputs, memory, video_mask)
        logits = self.decoder.logits(hidden[real])                       # [Ntok, V]
        ce = F.cross_entropy(logits.float(), targets[real], reduction="sum")
        return ce, real.sum()

    def caption_logits(self, text_ids: torch.Tensor, video: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L, V]`` of the next token after each position of ``text_ids: [B, L]`` (teacher forcing)."""
        memory = self.encode_video(video, video_mask)
        return self.decoder.logits(self.decoder(text_ids, memory, video_mask))

    def forward(self, text_ids: torch.Tensor, text_mask: torch.Tensor, video: torch.Tensor,
                video_mask: torch.Tensor, retrieval_weight: float = 1.0, mode: str = "loss"):
        """``(loss, caption_loss, retrieval_loss)``: ``loss = caption + retrieval_weight * retrieval``.

        The caption loss is the mean token cross entropy over the batch's real target tokens (of all
        processes together under torchrun, so N processes train like one with the same global batch).
        The retrieval loss is CLIP4Clip's (gathered over processes for loose heads); with weight 0 it
        is not computed (the text tower is unused) and reported as 0.

        ``mode="embed"``: ``(text_feats, memory)`` without the decoder; ``mode="caption"``: ``(summed token
        CE, target count)``; ``mode="parts"``: those and ``(text_feats, memory)``; for gradient caching (:func:`c4c.stages.caption.caption_step`).
        """
        memory = self.encode_video(video, video_mask)                    # [B, T, D]
        if mode == "embed":
            return self.encode_text(text_ids), memory
        ce, count = self.caption_loss(text_ids, text_mask, memory, video_mask)
        if mode == "caption":
            return ce, count
        if mode == "parts":
            return ce, count, self.encode_text(text_ids), memory
        total, world = global_count(count)
        caption = ce * world / total  # DDP averages gradients over ranks: this makes it the global token mean
        if retrieval_weight == 0:
            retrieval = caption.new_zeros(())
            return caption, caption.detach(), retrieval
        text = self.encode_text(text_ids)
        retrieval = self.loss_from_features(text, memory, video_mask)
        return caption + retrieval_weight * retrieval, caption.detach(), retrieval.detach()

    @torch.no_grad()
    def generate(self, video: torch.Tensor, video_mask: torch.Tensor, *, beam: int = 5, max_len: int = 20,
                 alpha: float = DEFAULT_ALPHA) -> list[Hypothesis]:
        """Captions (token ids) for a batch of clips ``video: [B, T, S, S, 3]``; call in eval mode."""
        if max_len + 1 > self.decoder.config.max_positions:
            raise C4CError(f"--max-len {max_len} is too long: the decoder has {self.decoder.config.max_positions} "
                           f"positions (SOT + at most {self.decoder.config.max_positions - 1} tokens)")
        memory = self.encode_video(video, video_mask)
        stepper = IncrementalDecoder(self.decoder, memory, video_mask, beams=beam, max_len=max_len)
        return beam_search(stepper, memory.shape[0], beam=beam, max_len=max_len,
                           alpha=0.0 if beam == 1 else alpha)


def global_count(count: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(target tokens over all processes (at least 1), number of processes)``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return count.clamp(min=1), 1
    total = count.detach().clone()
    dist.all_reduce(total)
    return total.clamp(min=1), dist.get_world_size()
