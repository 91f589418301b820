"""Training items that carry their stored JPEG bytes, decoded a whole batch at a time on the model's device.

With ``--frame-decoder cuda`` (or ``auto`` on a CUDA model with torchvision's decoder), the loader's
workers do not decode: an item holds ``video_jpeg`` (uint8 ``[L]``, its frames' JPEG bytes end to end)
and ``video_jpeg_lengths`` (int64 ``[M]``, 0 for a padded frame) instead of ``video``; :func:`collate`
joins them, and :func:`decode_batch` turns them into the usual ``video`` uint8 ``[B, M, S, S, 3]`` on the
device with one nvJPEG batch (``c4c.video.jpeg.decode_jpegs_torch``). The pixels are those of the CPU
path (tests/test_device_frames.py compares them on the CPU, where torchvision's decoder runs too).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from c4c.video.jpeg import decode_jpegs_torch

JPEG_KEYS = ("video_jpeg", "video_jpeg_lengths")


def pack_rows(rows: Sequence[np.ndarray], max_frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rows`` (at most ``max_frames`` JPEG byte arrays) -> ``(video_jpeg uint8 [L], video_jpeg_lengths
    int64 [M], video_mask bool [M])``, padded at the end like the decoded clip."""
    lengths = np.zeros(max_frames, np.int64)
    lengths[: len(rows)] = [len(r) for r in rows]
    data = np.concatenate([np.asarray(r, np.uint8) for r in rows]) if rows else np.zeros(0, np.uint8)
    mask = np.zeros(max_frames, bool)
    mask[: len(rows)] = True
    return torch.from_numpy(data), torch.from_numpy(lengths), torch.from_numpy(mask)


def collate_jpeg(values: list[torch.Tensor], key: str) -> torch.Tensor:
    """The batch form of one JPEG key: the bytes end to end (``[sum L]``), the lengths stacked (``[B, M]``)."""
    return torch.cat(values) if key == "video_jpeg" else torch.stack(values)


def decode_batch(batch: dict[str, torch.Tensor], size: int, device: str | torch.device) -> dict[str, torch.Tensor]:
    """``batch`` with its JPEG keys replaced by ``video`` uint8 ``[B, M, size, size, 3]`` on ``device`` (padded
    frames zero), decoded as one batch; the other tensors are left where they are."""

    data, lengths = batch["video_jpeg"], batch["video_jpeg_lengths"]
    b, m = lengths.shape
    flat = lengths.reshape(-1)
    present = torch.nonzero(flat > 0).reshape(-1)
    video = torch.zeros((b * m, size, size, 3), dtype=torch.uint8, device=device)
    if present.numel():
        ends = torch.cumsum(flat, 0)
        starts = ends - flat
        raw = data.numpy() if data.device.type == "cpu" else data.cpu().numpy()
        rows = [raw[int(starts[i]):int(ends[i])] for i in present.tolist()]
        frames = decode_jpegs_torch(rows, device)
        if frames.shape[1:] != (size, size, 3):
            raise ValueError(f"decoded frames are {frames.shape[2]}x{frames.shape[1]}, the store's size is {size}")
        video[present.to(device)] = frames
    out = {k: v for k, v in batch.items() if k not in JPEG_KEYS}
    out["video"] = video.reshape(b, m, size, size, 3)
    return out
