"""Encode evaluation sets and score every text against every video in bounded memory.

The one scoring code of c4c: the training-time evaluation (:func:`similarity_matrix`) and
`c4c evaluate` on an embedding file (:class:`LooseScores`, :func:`tight_matrix`) both use it.
Loose heads score ``exp(logit_scale) * cos`` of pooled, L2-normalised embeddings, block by block;
tightTransf scores every text-video pair with its cross encoder, in square batches of pairs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np

from c4c.data.video_text import collate
from c4c.interrupt import ignore_in_child
from c4c.metrics.retrieval import multi_sentence_metrics, retrieval_metrics


class LooseScores:
    """Scores ``scale * text @ video.T`` of L2-normalised embeddings ``text [Nt, D]``, ``video [Nv, D]``,
    computed on demand by row block.

    NumPy arrays are scored on the CPU; torch tensors where they are (``scale`` a number or a 0-d tensor
    beside them). Blocks come back as float32 NumPy arrays either way.
    """

    def __init__(self, text: Any, video: Any, scale: Any) -> None:
        if isinstance(text, np.ndarray) or isinstance(video, np.ndarray):
            text = np.ascontiguousarray(text, dtype=np.float32)
            video = np.ascontiguousarray(video, dtype=np.float32)
            scale = np.float32(scale)
        self.text, self.video, self.scale = text, video, scale

    def _block(self, rows: Any, cols: Any) -> np.ndarray:
        block = rows @ cols.T
        block *= self.scale
        return block if isinstance(block, np.ndarray) else block.float().cpu().numpy()

    def t2v(self, a: int, b: int) -> np.ndarray:
        """Scores of texts ``a:b`` against every video: ``[b - a, Nv]``."""
        return self._block(self.text[a:b], self.video)

    def v2t(self, a: int, b: int) -> np.ndarray:
        """Scores of videos ``a:b`` against every text: ``[b - a, Nt]``."""
        return self._block(self.video[a:b], self.text)

    def full(self, chunk: int) -> np.ndarray:
        """The whole ``[Nt, Nv]`` matrix, ``chunk`` texts at a time."""
        sim = np.empty((self.text.shape[0], self.video.shape[0]), np.float32)
        for a in range(0, sim.shape[0], chunk):
            sim[a:a + chunk] = self.t2v(a, a + chunk)
        return sim


def tight_matrix(model, text: Any, frames: Any, mask: Any, *, device: str = "cpu", pair_chunk: int = 128,
                 on_block: Callable[[int], None] | None = None) -> np.ndarray:
    """``[Nt, Nv]`` cross-encoder scores of ``text [Nt, D]`` against ``frames [Nv, T, D]`` (``mask [Nv, T]``),
    NumPy arrays or torch tensors, ``pair_chunk`` texts x ``pair_chunk`` videos per batch; ``on_block(pairs)``
    after each batch."""
    import torch

    nt, nv = text.shape[0], frames.shape[0]
    sim = np.empty((nt, nv), np.float32)
    text, frames, mask = (torch.as_tensor(x) for x in (text, frames, mask))
    with torch.no_grad():
        for j in range(0, nv, pair_chunk):
            f = frames[j:j + pair_chunk].to(device)
            m = mask[j:j + pair_chunk].to(device)
            for i in range(0, nt, pair_chunk):
                t = text[i:i + pair_chunk].to(device)
                sim[i:i + pair_chunk, j:j + pair_chunk] = model.similarity(t, f, m).float().cpu().numpy()
                if on_block is not None:
                    on_block(t.shape[0] * f.shape[0])
    return sim


def encode_eval_set(model, evalset, *, batch_size: int = 64, device: str = "cpu", amp_ctx=None,
                    workers: int = 0):
    """``(text [Nt, D], video [Nv, T, D], video_mask [Nv, T])`` torch tensors on the CPU, in the eval set's order.

    ``video`` is what the similarity needs: the head output for loose heads, frame features for tight.
    """
    import torch
    from torch.utils.data import DataLoader

    amp_ctx = amp_ctx or contextlib.nullcontext()
    was_training = model.training
    model.eval()
    texts, videos, masks = [], [], []
    with torch.no_grad():
        for batch in DataLoader(evalset.text_dataset(), batch_size=batch_size, collate_fn=collate,
                                num_workers=workers, worker_init_fn=ignore_in_child if workers else None):
            with amp_ctx:
                texts.append(model.encode_text(batch["text_ids"].to(device)).float().cpu())
        for batch in DataLoader(evalset.video_dataset(), batch_size=batch_size, collate_fn=collate,
                                num_workers=workers, worker_init_fn=ignore_in_child if workers else None):
            mask = batch["video_mask"].to(device)
            with amp_ctx:
                videos.append(model.encode_video(batch["video"].to(device), mask).float().cpu())
            masks.append(batch["video_mask"].bool())
    model.train(was_training)
    return torch.cat(texts), torch.cat(videos), torch.cat(masks)


def similarity_matrix(model, text, video, mask, *, device: str = "cpu", chunk: int = 1024,
                      tight_chunk: int = 64) -> np.ndarray:
    """``[Nt, Nv]`` float32 scores of the encoded set (see :func:`encode_eval_set`), computed block by block
    on ``device`` (memory bounded by the block size)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        if model.loose:
            nv = video.shape[0]
            pooled = torch.cat([model.pooled_video(video[j:j + chunk].to(device), mask[j:j + chunk].to(device))
                                for j in range(0, nv, chunk)])
            t = torch.nn.functional.normalize(text.to(device), dim=-1)
            sim = LooseScores(t, pooled, model.clip.logit_scale.exp()).full(chunk)
        else:
            sim = tight_matrix(model, text, video, mask, device=device, pair_chunk=tight_chunk)
    model.train(was_training)
    return sim


def evaluate_retrieval(model, evalset, **kwargs) -> dict:
    """Text-to-video and video-to-text metrics of ``model`` on ``evalset`` (multi-sentence aware)."""

    device = kwargs.get("device", "cpu")
    text, video, mask = encode_eval_set(model, evalset, **kwargs)
    sim = similarity_matrix(model, text, video, mask, device=device)
    if evalset.multi_sentence or len(evalset.video_ids) != len(evalset.captions):
        return multi_sentence_metrics(sim, evalset.video_of_caption)
    order = np.asarray(evalset.video_of_caption)
    if not np.array_equal(order, np.arange(len(order))):
        sim = sim[:, order]  # put each caption's video on the diagonal
    return retrieval_metrics(sim)
