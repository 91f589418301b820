"""A reference-style CLIP4Clip training step, the baseline of bench_train_step.py.

It computes what the paper's code computes, the way that code computes it (spec sections 4.2,
4.6, 5.3, 5.5 and 10.3), written here from the spec:

* OpenAI-style CLIP towers in the sequence-first layout ``[L, N, D]`` with
  ``nn.MultiheadAttention``, LayerNorm computed in fp32, QuickGELU as ``x * sigmoid(1.702 x)``;
* every frame of the ``[B * T, 3, H, W]`` batch goes through the image tower, padded ones too;
  ``ln_post`` and ``proj`` are applied to every token before the class token is taken;
* the text tower runs all ``max_words`` positions with a causal mask built for that length;
* fp32 CLIP (the spec's ``--fp32`` run), gradients zeroed in place, global clipping to norm 1,
  then BertAdam with its per-tensor clipping, one tensor at a time.

The similarity heads are c4c's own modules (the same computation as the reference's, and a small
part of a step), so both arms of the benchmark differ only in what c4c does differently around
them. Weights are copied from an open_clip model, so both arms start from identical parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNormFp32(nn.LayerNorm):
    """CLIP's LayerNorm: computed in float32, cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-LN residual block over sequence-first tokens ``[L, N, D]``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = LayerNormFp32(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = LayerNormFp32(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Tower(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList(Block(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class Visual(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, patch: int, grid: int, embed: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = LayerNormFp32(width)
        self.transformer = Tower(width, layers, heads)
        self.ln_post = LayerNormFp32(width)
        self.proj = nn.Parameter(torch.zeros(width, embed))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels)                                       # [N, width, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)   # [N, g*g, width]
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)                          # [L, N, width]
        x = self.transformer(x).permute(1, 0, 2)                     # [N, L, width]
        return (self.ln_post(x) @ self.proj)[:, 0]                   # every token projected, CLS kept


class ReferenceStyleCLIP(nn.Module):
    """OpenAI-style CLIP with open_clip's parameter names (so its state dict loads as is), shaped like
    the given open_clip model (ViT-B/32 in the benchmark, the tiny config in the tests)."""

    def __init__(self, like) -> None:
        super().__init__()
        visual = like.visual
        v_block, t_block = visual.transformer.resblocks[0], like.transformer.resblocks[0]
        patch = visual.conv1.kernel_size[0]
        self.visual = Visual(visual.transformer.width, len(visual.transformer.resblocks), v_block.attn.num_heads,
                             patch, visual.grid_size[0], visual.proj.shape[1])
        self.token_embedding = nn.Embedding(*like.token_embedding.weight.shape)
        self.positional_embedding = nn.Parameter(torch.zeros_like(like.positional_embedding))
        self.transformer = Tower(like.transformer.width, len(like.transformer.resblocks), t_block.attn.num_heads)
        self.ln_final = LayerNormFp32(like.transformer.width)
        self.text_projection = nn.Parameter(torch.zeros_like(like.text_projection))
        self.logit_scale = nn.Parameter(torch.zeros([]))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        w = ids.shape[1]
        mask = torch.full((w, w), float("-inf")).triu_(1)            # causal, built for this length
        x = (self.token_embedding(ids) + self.positional_embedding[:w]).permute(1, 0, 2)
        x = self.transformer(x, mask).permute(1, 0, 2)
        x = self.ln_final(x) @ self.text_projection
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]


class ReferenceStyleModel(nn.Module):
    """Reference-style towers around one of c4c's similarity heads; ``forward`` returns the loss."""

    def __init__(self, open_clip_model, head: nn.Module, sim: str) -> None:
        super().__init__()
        self.clip = ReferenceStyleCLIP(open_clip_model)
        state = {k: v for k, v in open_clip_model.state_dict().items() if k != "attn_mask"}
        self.clip.load_state_dict(state, strict=True)
        self.head = head
        self.sim = sim

    def forward(self, ids: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``pixels: [B, T, 3, H, W]`` normalised floats (zeros at padded frames), ``mask: [B, T]``."""
        b, t = mask.shape
        text = self.clip.encode_text(ids).float()
        frames = self.clip.visual(pixels.view(b * t, *pixels.shape[2:])).float().view(b, t, -1)
        if self.sim == "tightTransf":
            logits = self.head(text, frames, mask)
        else:
            frames = self.head(frames, mask)
            m = mask.to(frames.dtype).unsqueeze(-1)
            v = F.normalize((F.normalize(frames, dim=-1) * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)
            logits = self.clip.logit_scale.exp() * F.normalize(text, dim=-1) @ v.t()
        target = torch.arange(b)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
