"""Turn stored uint8 frames into the normalised float tensors CLIP expects."""

from __future__ import annotations

from typing import Sequence

import numpy as np

# OpenAI CLIP's preprocessing constants (also open_clip.OPENAI_DATASET_MEAN / _STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_model_input(frames, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD):
    """uint8 ``[T, H, W, 3]`` (numpy or torch) -> float32 ``[T, 3, H, W]``, ``(x / 255 - mean) / std``.

    One fused multiply-add per element into a fresh contiguous tensor (several times faster than
    dividing and normalising step by step).
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {tuple(x.shape)} {x.dtype}")
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    out = x.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    return out.mul_(1.0 / (255.0 * s)).sub_(m / s)
