"""A direct batch-first attention for open_clip's transformer blocks.

open_clip's blocks call ``nn.MultiheadAttention`` with batch-first tensors, which transposes to
sequence-first internally and copies activations in both passes. This computes the same thing (same
weights, same SDPA kernel) in the batch-first layout: one fused in-projection, SDPA, out-projection.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _direct_attention(self, q_x: torch.Tensor, k_x=None, v_x=None, attn_mask=None) -> torch.Tensor:
    mha = self.attn
    if k_x is not None or v_x is not None or not mha.batch_first or mha.in_proj_weight is None:
        return type(self).attention(self, q_x, k_x, v_x, attn_mask)  # cross-attention: the original path
    n, length, width = q_x.shape
    heads = mha.num_heads
    qkv = F.linear(q_x, mha.in_proj_weight, mha.in_proj_bias)
    q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # each [N, H, L, Dh]
    if attn_mask is not None:
        attn_mask = attn_mask.to(q_x.dtype)  # additive float masks, as open_clip expects
        if attn_mask.dim() == 3:  # [N * H, L, L]
            attn_mask = attn_mask.view(n, heads, length, length)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                         dropout_p=mha.dropout if mha.training else 0.0)
    return mha.out_proj(out.transpose(1, 2).reshape(n, length, width))


def use_direct_attention(module: torch.nn.Module) -> int:
    """Switch every open_clip ``ResidualAttentionBlock`` inside ``module``; returns how many."""
    from open_clip.transformer import ResidualAttentionBlock

    count = 0
    for block in module.modules():
        if isinstance(block, ResidualAttentionBlock):
            block.attention = types.MethodType(_direct_attention, block)
            count += 1
    return count
