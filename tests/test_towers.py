"""The pruned towers (last block at the kept token, text cut after the last EOT) equal open_clip's
full forward: features and every parameter's gradient, checked in float64 on the tiny config."""

from __future__ import annotations

import copy

import pytest
import torch

from c4c.model.backbone import build_clip
from c4c.model.clip4clip import CLIP4Clip
from c4c.model.towers import block_at, image_class_features, prunable, text_eot_features


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    clip, _ = build_clip("tiny", "none")
    return clip.double()


def _ids(lengths: list[int], width: int = 16) -> torch.Tensor:
    """SOT, random words, EOT at position ``length``, then zeros."""
    g = torch.Generator().manual_seed(3)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0] = 49406
        ids[i, 1:n] = torch.randint(300, 40000, (n - 1,), generator=g)
        ids[i, n] = 49407
    return ids


def _full_text(clip, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's way: every position through every block, then the EOT row."""
    w = ids.shape[1]
    x = clip.token_embedding(ids) + clip.positional_embedding[:w]
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:w, :w]))
    return x[torch.arange(len(ids)), ids.argmax(-1)] @ clip.text_projection


def _grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_image_features_equal_the_full_forward_with_gradients(tiny_clip):
    full_clip, fast_clip = copy.deepcopy(tiny_clip), copy.deepcopy(tiny_clip)
    pixels = torch.randn(5, 3, 32, 32, dtype=torch.float64)
    full = full_clip.visual(pixels)
    fast = image_class_features(fast_clip.visual, fast_clip.visual._embeds(pixels))
    assert torch.allclose(full, fast, atol=1e-12, rtol=1e-10)
    weights = torch.randn_like(full)
    (full * weights).sum().backward()
    (fast * weights).sum().backward()
    g_full, g_fast = _grads(full_clip.visual), _grads(fast_clip.visual)
    assert g_full.keys() == g_fast.keys() and len(g_full) > 10
    for name in g_full:
        assert torch.allclose(g_full[name], g_fast[name], atol=1e-12, rtol=1e-9), name


def test_text_features_equal_the_full_forward_with_gradients(tiny_clip):
    full_clip, fast_clip = copy.deepcopy(tiny_clip), copy.deepcopy(tiny_clip)
    ids = _ids([3, 9, 5, 1])  # the longest EOT is at 9: positions 10..15 are cut
    full = _full_text(full_clip, ids)
    fast = text_eot_features(fast_clip, ids)
    assert torch.allclose(full, fast, atol=1e-12, rtol=1e-10)
    weights = torch.randn_like(full)
    (full * weights).sum().backward()
    (fast * weights).sum().backward()
    g_full, g_fast = _grads(full_clip), _grads(fast_clip)
    assert g_full.keys() == g_fast.keys()
    for name in g_full:
        assert torch.allclose(g_full[name], g_fast[name], atol=1e-12, rtol=1e-9), name


def test_text_after_the_last_eot_never_matters(tiny_clip):
    ids = _ids([4, 6])
    noisy = ids.clone()
    noisy[:, 7:] = torch.randint(300, 40000, noisy[:, 7:].shape)  # garbage after every EOT
    with torch.no_grad():
        assert torch.equal(text_eot_features(tiny_clip, ids), text_eot_features(tiny_clip, noisy))


def test_block_at_picks_each_rows_own_token_and_causal_keys(tiny_clip):
    block = tiny_clip.transformer.resblocks[-1]
    x = torch.randn(3, 6, tiny_clip.transformer.width, dtype=torch.float64)
    rows = torch.tensor([0, 5, 2])
    causal = torch.full((6, 6), float("-inf"), dtype=torch.float64).triu(1)
    full = block(x, attn_mask=causal)
    keys = torch.arange(6)[None, :] <= rows[:, None]
    with torch.no_grad():
        assert torch.allclose(block_at(block, x, rows, keys), full[torch.arange(3), rows], atol=1e-12)
        assert torch.allclose(block_at(block, x), block(x)[:, 0], atol=1e-12)  # no mask, token 0


def test_model_encoders_match_open_clip_in_float64(tiny_clip):
    model = CLIP4Clip(copy.deepcopy(tiny_clip), sim="meanP").double().eval()
    video = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    ids = _ids([5, 2])
    with torch.no_grad():
        frames = model.encode_frames(video, mask)
        expected = model.clip.visual(model._pixels(video[mask]).double()).float()
        assert torch.allclose(frames[mask], expected, atol=1e-6)
        assert torch.equal(frames[~mask], torch.zeros_like(frames[~mask]))
        assert torch.allclose(model.encode_text(ids), _full_text(model.clip, ids).float(), atol=1e-6)


def test_towers_that_cannot_be_pruned_run_open_clips_forward(tiny_clip):
    clip = copy.deepcopy(tiny_clip)
    assert prunable(clip.visual.transformer)
    clip.visual.pool_type = "avg"  # average pooling needs every token of the last block
    pixels = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(image_class_features(clip.visual, clip.visual._embeds(pixels)),
                              clip.visual(pixels), atol=1e-12)
