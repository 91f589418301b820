"""Encode evaluation sets and score every text against every video in bounded memory."""

from __future__ import annotations

import contextlib

import numpy as np
import torch


@torch.no_grad()
def encode_eval_set(model, evalset, *, batch_size: int = 64, device: str = "cpu", amp_ctx=None,
                    workers: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(text [Nt, D], video [Nv, T, D], video_mask [Nv, T])`` on the CPU, in the eval set's order.

    ``video`` is what the similarity needs: the head output for loose heads, frame features for tight.
    """
    from torch.utils.data import DataLoader

    from c4c.data.video_text import collate

    amp_ctx = amp_ctx or contextlib.nullcontext()
    was_training = model.training
    model.eval()
    texts, videos, masks = [], [], []
    for batch in DataLoader(evalset.text_dataset(), batch_size=batch_size, collate_fn=collate, num_workers=workers):
        with amp_ctx:
            texts.append(model.encode_text(batch["text_ids"].to(device)).float().cpu())
    for batch in DataLoader(evalset.video_dataset(), batch_size=batch_size, collate_fn=collate, num_workers=workers):
        mask = batch["video_mask"].to(device)
        with amp_ctx:
            videos.append(model.encode_video(batch["video"].to(device), mask).float().cpu())
        masks.append(batch["video_mask"].bool())
    model.train(was_training)
    return torch.cat(texts), torch.cat(videos), torch.cat(masks)


@torch.no_grad()
def similarity_matrix(model, text: torch.Tensor, video: torch.Tensor, mask: torch.Tensor, *,
                      device: str = "cpu", chunk: int = 1024, tight_chunk: int = 64) -> np.ndarray:
    """``[Nt, Nv]`` float32 scores, computed block by block (memory bounded by the block size)."""
    was_training = model.training
    model.eval()
    nt, nv = text.shape[0], video.shape[0]
    sim = np.empty((nt, nv), dtype=np.float32)
    if model.loose:
        pooled = torch.cat([model.pooled_video(video[j:j + chunk].to(device), mask[j:j + chunk].to(device))
                            for j in range(0, nv, chunk)])
        scale = model.clip.logit_scale.exp()
        for i in range(0, nt, chunk):
            t = torch.nn.functional.normalize(text[i:i + chunk].to(device), dim=-1)
            sim[i:i + chunk] = (scale * t @ pooled.t()).float().cpu().numpy()
    else:
        for i in range(0, nt, tight_chunk):
            t = text[i:i + tight_chunk].to(device)
            for j in range(0, nv, tight_chunk):
                s = model.similarity(t, video[j:j + tight_chunk].to(device), mask[j:j + tight_chunk].to(device))
                sim[i:i + tight_chunk, j:j + tight_chunk] = s.float().cpu().numpy()
    model.train(was_training)
    return sim


def evaluate_retrieval(model, evalset, **kwargs) -> dict:
    """Text-to-video and video-to-text metrics of ``model`` on ``evalset`` (multi-sentence aware)."""
    from c4c.metrics.retrieval import multi_sentence_metrics, retrieval_metrics

    device = kwargs.get("device", "cpu")
    text, video, mask = encode_eval_set(model, evalset, **kwargs)
    sim = similarity_matrix(model, text, video, mask, device=device)
    if evalset.multi_sentence or len(evalset.video_ids) != len(evalset.captions):
        return multi_sentence_metrics(sim, evalset.video_of_caption)
    order = np.asarray(evalset.video_of_caption)
    if not np.array_equal(order, np.arange(len(order))):
        sim = sim[:, order]  # put each caption's video on the diagonal
    return retrieval_metrics(sim)
