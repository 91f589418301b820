"""CLIP's towers as CLIP4Clip uses them: only the tokens it keeps are computed in the last block.

CLIP4Clip keeps one vector per frame (the class token after ``ln_post`` and ``proj``) and one per
caption (the EOT token after ``ln_final`` and ``text_projection``). Two exact savings follow:

* **The last block at the kept token only.** Its keys and values are needed for every token, but its
  query, attention output, out-projection and MLP only for the kept one. For ViT-B/32 (50 tokens a
  frame) that removes about 7% of the image tower's multiply-adds, in the forward and the backward
  pass alike.
* **Text cut after the last EOT of the batch.** With the causal mask no token influences an earlier
  one, so the padding after the last EOT changes nothing that is kept.

The result equals open_clip's full forward up to float rounding (tests compare features and
gradients). Towers this module does not recognise (attention pooling, average pooling, custom
blocks, cross-attention blocks) run open_clip's own forward.

Any other open_clip tower runs open_clip's own forward too: a ResNet, ConvNeXt, EVA02, FastViT or any
timm image tower through ``visual(pixels)``, and a text tower that is not OpenAI-style (no causal
mask, another pooling, a Hugging Face model) through ``encode_text`` on ids padded to its context
length, as open_clip's tokenizer pads them. :func:`text_parts`, :func:`embed_dim` and
:func:`context_length` say what c4c needs of either kind of model (``CLIP`` or ``CustomTextCLIP``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def is_openai_vit(visual) -> bool:
    """Whether the image tower is open_clip's own ViT (class token, patch convolution): the one whose
    tokens c4c reads itself (the fast path, ``--patch 3d`` and the cross encoder's frame tokens)."""
    from open_clip.transformer import VisionTransformer

    return isinstance(visual, VisionTransformer)


def text_parts(clip):
    """The module holding the text tower's parts (``token_embedding``, ``positional_embedding``,
    ``transformer``, ``ln_final``, ``text_projection``, ``attn_mask``): the CLIP itself, or the
    ``text`` tower of a ``CustomTextCLIP``; None for a text tower without them (a Hugging Face model)."""
    for holder in (clip, getattr(clip, "text", None)):
        if holder is not None and all(hasattr(holder, n) for n in ("token_embedding", "transformer", "ln_final")):
            return holder
    return None


def openai_text(clip) -> bool:
    """Whether the text tower is OpenAI-style: a causal mask, the EOT (largest id) token pooled and a
    projection matrix; :func:`text_eot_features` computes it, cut after the last EOT."""
    parts = text_parts(clip)
    return (parts is not None and getattr(parts, "attn_mask", None) is not None
            and getattr(parts, "pool_type", "argmax") == "argmax" and getattr(parts, "cls_emb", None) is None
            and isinstance(getattr(parts, "text_projection", None), torch.Tensor))


def embed_dim(clip) -> int:
    """The size of the joint embedding (the text tower's output)."""
    projection = getattr(clip, "text_projection", None)
    if isinstance(projection, torch.Tensor):
        return int(projection.shape[1])
    return int(clip.text.output_dim)


def context_length(clip) -> int:
    """The text tower's context length: the most tokens a caption can have."""
    return int(clip.context_length)


def text_width(clip) -> int | None:
    """The width of an open_clip text transformer (None for a text tower of another kind)."""
    parts = text_parts(clip)
    return None if parts is None else int(parts.transformer.width)


def image_features(clip, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised pixels ``[N, 3, H, W]`` -> image features ``[N, E]`` (not normalised)."""
    visual = clip.visual
    if is_openai_vit(visual):
        return image_class_features(visual, visual._embeds(pixels))
    return visual(pixels)


def text_features(clip, text_ids: torch.Tensor) -> torch.Tensor:
    """``[B, W]`` CLIP BPE ids (SOT ... EOT, zero padding) -> text features ``[B, E]`` (not normalised)."""
    if openai_text(clip):
        return text_eot_features(clip, text_ids)
    ids = F.pad(text_ids, (0, context_length(clip) - text_ids.shape[1]))   # as open_clip's tokenizer pads
    return clip.encode_text(ids)


def _plain_block(block) -> bool:
    """A batch-first pre-LN open_clip ``ResidualAttentionBlock`` with a packed in-projection."""
    from open_clip.transformer import ResidualAttentionBlock

    mha = getattr(block, "attn", None)
    return (isinstance(block, ResidualAttentionBlock) and not hasattr(block, "ln_1_kv")
            and isinstance(mha, torch.nn.MultiheadAttention) and mha.batch_first
            and mha.in_proj_weight is not None and getattr(mha, "_qkv_same_embed_dim", False))


def prunable(transformer) -> bool:
    """Whether every block of an open_clip ``Transformer`` can run through :func:`block_at`."""
    return getattr(transformer, "batch_first", True) and all(_plain_block(b) for b in transformer.resblocks)


def run_blocks(transformer, x: torch.Tensor, blocks, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``x: [N, L, D]`` through ``blocks`` of ``transformer``, with its gradient checkpointing if set."""
    for block in blocks:
        if transformer.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, None, None, attn_mask, use_reentrant=False)
        else:
            x = block(x, attn_mask=attn_mask)
    return x


def block_at(block, x: torch.Tensor, rows: torch.Tensor | None = None,
             key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The output of one block at a single token of each sequence: ``x: [N, L, D]`` -> ``[N, D]``.

    ``rows: [N]`` long, the token kept in each sequence (None: token 0). ``key_mask: bool [N, L]``,
    True where the kept token may attend (None: every token), e.g. the causal row of the kept token.
    """
    n, length, width = x.shape
    mha = block.attn
    heads = mha.num_heads
    y = block.ln_1(x)                                                       # [N, L, D]
    if rows is None:
        x_kept, y_kept = x[:, :1], y[:, :1]                                 # [N, 1, D]
    else:
        pick = torch.arange(n, device=x.device)
        x_kept, y_kept = x[pick, rows].unsqueeze(1), y[pick, rows].unsqueeze(1)
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q = F.linear(y_kept, w[:width], None if b is None else b[:width])         # [N, 1, D]
    kv = F.linear(y, w[width:], None if b is None else b[width:])           # [N, L, 2D]
    q = q.view(n, 1, heads, width // heads).transpose(1, 2)                 # [N, H, 1, Dh]
    k, v = kv.view(n, length, 2, heads, width // heads).permute(2, 0, 3, 1, 4)  # each [N, H, L, Dh]
    mask = None if key_mask is None else key_mask[:, None, None, :]         # [N, 1, 1, L]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                         dropout_p=mha.dropout if mha.training else 0.0)
    out = mha.out_proj(out.transpose(1, 2).reshape(n, 1, width))
    h = x_kept + block.ls_1(out)
    h = h + block.ls_2(block.mlp(block.ln_2(h)))
    return h[:, 0]


def image_class_features(visual, tokens: torch.Tensor) -> torch.Tensor:
    """``tokens: [N, L, D]`` (after ``ln_pre``) -> projected class-token features ``[N, E]``."""
    transformer = visual.transformer
    if (getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok"
            or getattr(visual, "final_ln_after_pool", False) or not prunable(transformer)):
        pooled, _ = visual._pool(transformer(tokens))
    else:
        blocks = transformer.resblocks
        x = run_blocks(transformer, tokens, blocks[:-1])
        pooled = visual.ln_post(block_at(blocks[-1], x))
    return pooled @ visual.proj if visual.proj is not None else pooled


def text_eot_features(clip, text_ids: torch.Tensor) -> torch.Tensor:
    """``[B, W]`` ids (SOT ... EOT, zero padding) -> EOT features after ``ln_final`` and
    ``text_projection``, ``[B, E]`` (not normalised)."""
    parts = text_parts(clip)
    eot = text_ids.argmax(dim=-1)                                           # the EOT id is the largest
    width = int(eot.max()) + 1 if text_ids.numel() else text_ids.shape[1]
    ids = text_ids[:, :width]                                               # nothing after an EOT is kept
    dtype = parts.transformer.get_cast_dtype()
    x = parts.token_embedding(ids).to(dtype) + parts.positional_embedding[:width].to(dtype)
    causal = parts.attn_mask[:width, :width]
    transformer = parts.transformer
    if prunable(transformer):
        x = run_blocks(transformer, x, transformer.resblocks[:-1], attn_mask=causal.to(x.dtype))
        key_mask = torch.arange(width, device=ids.device)[None, :] <= eot[:, None]   # [B, W]
        x = block_at(transformer.resblocks[-1], x, rows=eot, key_mask=key_mask)
    else:
        x = transformer(x, attn_mask=causal.to(x.dtype))
        x = x[torch.arange(x.shape[0], device=x.device), eot]
    x = parts.ln_final(x)
    return x @ parts.text_projection
