"""The benchmark's reference-style step (bench/reference_style.py) computes the same loss and CLIP
gradients as c4c's model, so bench_train_step.py compares two ways of doing the same work."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import open_clip
import pytest
import torch

from c4c.model.backbone import build_clip
from c4c.model.clip4clip import CLIP4Clip
from c4c.model.heads import HEADS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from reference_style import ReferenceStyleModel  # noqa: E402


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    clip, _ = build_clip("tiny", "none")
    return clip


def _inputs(size: int):
    g = torch.Generator().manual_seed(5)
    video = torch.randint(0, 256, (3, 4, size, size, 3), dtype=torch.uint8, generator=g)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2:] = False
    video[1, 2:] = 0
    ids = torch.zeros(3, 12, dtype=torch.long)
    for i, n in enumerate([4, 9, 6]):
        ids[i, 0], ids[i, n] = 49406, 49407
        ids[i, 1:n] = torch.randint(300, 40000, (n - 1,), generator=g)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 1, 3, 1, 1)
    pixels = ((video.permute(0, 1, 4, 2, 3).float() / 255.0 - mean) / std) * mask[:, :, None, None, None]
    return video, pixels, mask, ids


@pytest.mark.parametrize("sim", list(HEADS))
def test_reference_style_step_has_c4cs_loss_and_gradients(tiny_clip, sim):
    torch.manual_seed(1)
    model = CLIP4Clip(copy.deepcopy(tiny_clip), sim=sim, temporal_layers=2).train()
    reference = ReferenceStyleModel(model.clip, copy.deepcopy(model.head), sim).train()
    video, pixels, mask, ids = _inputs(model.image_size)
    torch.manual_seed(7)
    loss = model(ids, video, mask)
    torch.manual_seed(7)  # the same dropout masks (tightTransf)
    ref_loss = reference(ids, pixels, mask)
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    loss.backward()
    ref_loss.backward()
    ours = dict(model.clip.named_parameters())
    compared = 0
    for name, p in reference.clip.named_parameters():
        if p.grad is None:
            continue
        assert torch.allclose(p.grad, ours[name].grad, atol=1e-5, rtol=1e-3), name
        compared += 1
    assert compared > 20
