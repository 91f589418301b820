"""The temporal transformer and the cross encoder use the reference's TF-style LayerNorm (eps 1e-12);
CLIP's own LayerNorms keep 1e-5 (spec 4.2, 4.6, quirk 12)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from c4c.model import heads
from c4c.model.backbone import build_clip


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    clip, _ = build_clip("tiny", "none")
    return clip


def _eps(module: nn.Module) -> set[float]:
    return {m.eps for m in module.modules() if isinstance(m, nn.LayerNorm)}


def test_seqtransf_temporal_blocks_use_eps_1e12(tiny_clip):
    head = heads.make_head("seqTransf", tiny_clip, layers=2)
    assert _eps(head) == {1e-12}
    assert len([m for m in head.modules() if isinstance(m, nn.LayerNorm)]) == 2 * 2  # ln_1, ln_2 per block


def test_tight_cross_encoder_and_pooler_use_eps_1e12(tiny_clip):
    head = heads.make_head("tightTransf", tiny_clip, layers=2)
    assert _eps(head.encoder) == {1e-12}
    assert head.pool_norm.eps == 1e-12


def test_clips_own_layernorms_keep_eps_1e5(tiny_clip):
    heads.make_head("seqTransf", tiny_clip, layers=2)
    assert _eps(tiny_clip) == {1e-5}


def test_a_nearly_constant_token_is_normalised_to_unit_variance(tiny_clip):
    """With eps 1e-12 a token of variance 1e-8 still comes out with variance ~1 (eps 1e-5 shrinks it ~30x)."""
    head = heads.make_head("seqTransf", tiny_clip, layers=1)
    ln = head.temporal.resblocks[0].ln_1
    with torch.no_grad():
        ln.weight.fill_(1.0)
        ln.bias.zero_()
        x = 1e-4 * torch.tensor([[1.0, -1.0] * (ln.normalized_shape[0] // 2)], dtype=torch.float64)
        y = ln.double()(x)
    assert torch.allclose(y.var(unbiased=False), torch.tensor(1.0, dtype=torch.float64), atol=1e-3)
