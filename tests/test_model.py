"""The CLIP4Clip model on the tiny config: shapes, masks, the 3-D patch, text encoding, loss."""

from __future__ import annotations

import copy
import math
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

from c4c import choices
from c4c.errors import C4CError
from c4c.model.backbone import build_clip
from c4c.model.clip4clip import CLIP4Clip, symmetric_cross_entropy
from c4c.model.heads import HEADS, make_head, random_init_note


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    clip, _ = build_clip("tiny", "none")
    return clip


def _model(tiny_clip, sim="meanP", patch="2d"):
    torch.manual_seed(1)
    return CLIP4Clip(copy.deepcopy(tiny_clip), sim=sim, patch=patch, temporal_layers=2).eval()


def _batch(b=3, t=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (b, t, size, size, 3), dtype=torch.uint8, generator=g)
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, n in enumerate([3, t, 1][:b]):
        mask[i, :n] = True
    ids = torch.zeros(b, 8, dtype=torch.long)
    ids[:, 0] = 49406
    ids[:, 1:4] = torch.randint(300, 1000, (b, 3), generator=g)
    ids[:, 4] = 49407
    return ids, video, mask


@pytest.mark.parametrize("sim", list(HEADS))
def test_scores_have_one_logit_per_text_video_pair(tiny_clip, sim):
    m = _model(tiny_clip, sim)
    ids, video, mask = _batch()
    with torch.no_grad():
        s = m.similarity(m.encode_text(ids[:2]), m.encode_video(video, mask), mask)
    assert s.shape == (2, 3) and torch.isfinite(s).all()


@pytest.mark.parametrize("sim", list(HEADS))
def test_padding_frames_never_change_a_score(tiny_clip, sim):
    m = _model(tiny_clip, sim)
    ids, video, mask = _batch()
    other = video.clone()
    other[~mask] = 123  # different pixels only where frames are padding
    with torch.no_grad():
        t = m.encode_text(ids)
        a = m.similarity(t, m.encode_video(video, mask), mask)
        b = m.similarity(t, m.encode_video(other, mask), mask)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("sim", list(HEADS))
def test_heads_that_see_frame_order_score_reversed_frames_differently(tiny_clip, sim):
    ids, video, mask = _batch(b=2, t=4)
    mask[:] = True
    m = _model(tiny_clip, sim)
    with torch.no_grad():
        t = m.encode_text(ids)
        a = m.similarity(t, m.encode_video(video, mask), mask)
        b = m.similarity(t, m.encode_video(video.flip(1), mask), mask)
    relative = ((a - b).abs().max() / a.abs().max()).item()
    assert (relative >= 1e-5) is HEADS[sim].sees_order, relative


# --- the table of heads --------------------------------------------------------------------------


def test_the_table_of_heads_names_the_heads_the_command_line_offers():
    assert tuple(HEADS) == get_args(choices.Sim) == choices.HEADS


@pytest.mark.parametrize("sim", list(HEADS))
def test_loose_heads_score_the_cosine_of_two_embeddings_and_tight_heads_do_not(tiny_clip, sim):
    m = _model(tiny_clip, sim)
    ids, video, mask = _batch()
    with torch.no_grad():
        t, v = m.encode_text(ids), m.encode_video(video, mask)
        cosine = m.clip.logit_scale.exp() * F.normalize(t, dim=-1) @ m.pooled_video(v, mask).t()
        scores = m.similarity(t, v, mask)
    assert m.loose is not HEADS[sim].tight
    assert torch.allclose(scores, cosine, atol=1e-4) is m.loose


def _blocks(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, ResidualAttentionBlock)]


@pytest.mark.parametrize("sim", list(HEADS))
def test_heads_from_text_layers_start_as_clips_text_blocks(tiny_clip, sim):
    blocks = _blocks(make_head(sim, tiny_clip, layers=2))
    text = [b.state_dict() for b in tiny_clip.transformer.resblocks[:2]]
    copied = len(blocks) == 2 and all(torch.equal(t[k], b.state_dict()[k]) for t, b in zip(text, blocks) for k in t)
    assert copied is HEADS[sim].from_text_layers


@pytest.mark.parametrize("sim", list(HEADS))
def test_heads_start_fresh_when_the_text_width_is_not_the_embedding_size(tiny_clip, sim):
    clip = copy.deepcopy(tiny_clip)
    width = clip.transformer.width
    clip.text_projection = nn.Parameter(torch.randn(width, 2 * width) * 0.1)
    clip.visual.proj = nn.Parameter(torch.randn(clip.visual.proj.shape[0], 2 * width) * 0.1)
    model = CLIP4Clip(clip, sim=sim)
    blocks = _blocks(model.head)
    assert all(b.attn.embed_dim == 2 * width for b in blocks)          # the embedding's width, not the text's
    note = random_init_note(model)
    assert (note is not None and "start from random init" in note) is HEADS[sim].from_text_layers
    video, mask = torch.randint(0, 255, (2, 3, 32, 32, 3), dtype=torch.uint8), torch.ones(2, 3, dtype=torch.bool)
    ids = torch.tensor([[49406, 320, 49407, 0], [49406, 320, 321, 49407]])
    assert model(ids, video, mask).isfinite()


@pytest.mark.parametrize("sim", list(HEADS))
def test_temporal_layers_set_the_depth_of_the_heads_that_have_them(tiny_clip, sim):
    one, three = (make_head(sim, tiny_clip, layers=layers) for layers in (1, 3))
    if HEADS[sim].temporal_layers:
        assert (len(_blocks(one)), len(_blocks(three))) == (1, 3)
    else:
        assert [p.shape for p in one.parameters()] == [p.shape for p in three.parameters()]


def test_3d_patch_init_gives_the_2d_features_on_a_static_video(tiny_clip):
    m2, m3 = _model(tiny_clip, patch="2d"), _model(tiny_clip, patch="3d")
    frame = torch.randint(0, 256, (1, 1, 32, 32, 3), dtype=torch.uint8)
    video = frame.expand(2, 6, 32, 32, 3).clone()
    mask = torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(m3.encode_frames(video, mask), m2.encode_frames(video, mask), atol=1e-5, rtol=1e-5)
    w = m3.clip.visual.conv2.weight
    assert w.shape[2] == 3 and torch.equal(w[:, :, 1], m3.clip.visual.conv1.weight) and not w[:, :, 0].any()


def test_3d_patch_mixes_neighbouring_frames_once_trained(tiny_clip):
    m = _model(tiny_clip, patch="3d")
    with torch.no_grad():
        m.clip.visual.conv2.weight[:, :, 0].normal_(0, 0.05)
    ids, video, mask = _batch(b=1, t=3)
    mask[:] = True
    changed = video.clone()
    changed[0, 0] = 255 - changed[0, 0]
    with torch.no_grad():
        a, b = m.encode_frames(video, mask), m.encode_frames(changed, mask)
    assert not torch.allclose(a[0, 1], b[0, 1])  # frame 1 now sees frame 0
    torch.testing.assert_close(a[0, 2], b[0, 2])  # frame 2 does not (kernel spans 3 frames)


def test_text_features_use_the_eot_position_and_ignore_padding(tiny_clip):
    m = _model(tiny_clip)
    ids = torch.tensor([[49406, 320, 786, 49407, 0, 0, 0, 0]])
    longer = torch.cat([ids, torch.zeros(1, 8, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(m.encode_text(ids), m.encode_text(longer))
        ref = m.clip.encode_text(torch.cat([ids, torch.zeros(1, 77 - 8, dtype=torch.long)], dim=1))
    torch.testing.assert_close(m.encode_text(ids), ref, atol=1e-5, rtol=1e-5)


def test_frames_of_another_size_are_resized_to_the_model(tiny_clip):
    m = _model(tiny_clip)
    _, video, mask = _batch(size=48)
    with torch.no_grad():
        assert m.encode_frames(video, mask).shape == (3, 5, 32)


def test_symmetric_loss_is_ln_b_for_uniform_scores_and_small_for_a_clear_diagonal():
    assert symmetric_cross_entropy(torch.zeros(4, 4)).item() == pytest.approx(math.log(4))
    assert symmetric_cross_entropy(torch.eye(4) * 50).item() < 1e-6
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    row = -torch.log_softmax(logits, 1).diag().mean()
    col = -torch.log_softmax(logits.t(), 1).diag().mean()
    assert symmetric_cross_entropy(logits).item() == pytest.approx(((row + col) / 2).item())


def test_logit_scale_is_clamped_to_ln_100(tiny_clip):
    m = _model(tiny_clip)
    with torch.no_grad():
        m.clip.logit_scale.fill_(7.0)
    m.clamp_logit_scale()
    assert m.clip.logit_scale.item() == pytest.approx(math.log(100))


def test_unknown_head_and_patch_are_user_errors(tiny_clip):
    with pytest.raises(C4CError, match="unknown similarity head"):
        CLIP4Clip(copy.deepcopy(tiny_clip), sim="maxP")
    with pytest.raises(C4CError, match="unknown --patch"):
        CLIP4Clip(copy.deepcopy(tiny_clip), patch="4d")


def test_missing_pretrained_weights_fail_fast_with_a_hint(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(C4CError, match="--pretrained PATH"):
        build_clip("ViT-B-32", "openai")
    assert time.perf_counter() - t0 < 10


def test_local_weights_round_trip(tmp_path, tiny_clip):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.state_dict().items()}, str(path))
    clip, info = build_clip("tiny", str(path))
    for k, v in tiny_clip.state_dict().items():
        assert torch.equal(clip.state_dict()[k], v), k
    assert info.pretrained == str(path)
    bad = tmp_path / "bad.safetensors"
    save_file({"nope": torch.zeros(1)}, str(bad))
    with pytest.raises(C4CError, match="do not fit"):
        build_clip("tiny", str(bad))


def test_fp16_clip_weights_follow_the_reference_conversion():
    clip, _ = build_clip("tiny", "none", fp16_weights=True)
    assert clip.visual.conv1.weight.dtype == torch.float16
    assert clip.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16
    assert clip.text_projection.dtype == torch.float16 and clip.visual.proj.dtype == torch.float16
    assert clip.ln_final.weight.dtype == torch.float32 and clip.token_embedding.weight.dtype == torch.float32
    for patch in ("2d", "3d"):
        m = CLIP4Clip(clip if patch == "2d" else build_clip("tiny", "none", fp16_weights=True)[0], sim="seqTransf",
                      patch=patch, temporal_layers=2)
        ids, video, mask = _batch()
        loss = m(ids, video, mask)
        loss.backward()
        assert torch.isfinite(loss)
        assert m.clip.transformer.resblocks[0].attn.in_proj_weight.grad.dtype == torch.float16
        assert m.head.temporal.resblocks[0].attn.in_proj_weight.dtype == torch.float32


@pytest.mark.parametrize("sim", [name for name, head in HEADS.items() if head.temporal_layers])
def test_direct_attention_equals_open_clips_attention(tiny_clip, sim):
    from open_clip.transformer import ResidualAttentionBlock

    m = _model(tiny_clip, sim)
    ids, video, mask = _batch()
    with torch.no_grad():
        fast = m.similarity(m.encode_text(ids), m.encode_video(video, mask), mask)
        blocks = [b for b in m.modules() if isinstance(b, ResidualAttentionBlock)]
        assert blocks and all("attention" in vars(b) for b in blocks)
        for b in blocks:
            del b.attention  # back to open_clip's nn.MultiheadAttention path
        slow = m.similarity(m.encode_text(ids), m.encode_video(video, mask), mask)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_a_3d_run_can_start_from_a_2d_run(tmp_path):
    """`c4c finetune --init 2d-run --patch 3d`: the 3-D patch is built from the loaded 2-D patch."""
    import json

    from c4c.model.backbone import build_clip
    from c4c.model.clip4clip import CLIP4Clip
    from c4c.model.load import build_model, resolve_spec
    from c4c.stages.finetune import FinetuneConfig
    from c4c.run import checkpoint

    clip, _ = build_clip("tiny", "none")
    two_d = CLIP4Clip(clip, sim="meanP")
    checkpoint.save(tmp_path / "run" / "best", two_d.state_dict(), None, {"step": 0})
    (tmp_path / "run" / "config.json").write_text(json.dumps({"sim": "meanP", "clip": "tiny", "pretrained": "none"}))
    cfg = FinetuneConfig(dataset="jsonl", ann=tmp_path, frames=tmp_path, out=tmp_path / "ft", clip="tiny",
                         init=tmp_path / "run", patch="3d")
    model, _, _ = build_model(resolve_spec(cfg), "cpu", init=cfg.init)
    w = model.clip.visual.conv2.weight
    torch.testing.assert_close(w[:, :, 1], two_d.clip.visual.conv1.weight)
    assert not w[:, :, 0].any() and not w[:, :, 2].any()
