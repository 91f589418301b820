"""`c4c evaluate EMB.h5`: text-to-video and video-to-text retrieval metrics of an embedding file.

The numbers follow the reference exactly (``c4c.metrics.retrieval``): R@1/5/10/50 in percent, MdR and
MnR, the plain protocol when each video has one caption (or one paragraph) and the multi-sentence
protocol otherwise (MSVD: every caption is a query; video-to-text ranks a video's caption set by its
best caption).

Loose heads (meanP, seqLSTM, seqTransf) are scored block by block from the embeddings, so memory
stays bounded by ``chunk x N`` scores however large the sets are. tightTransf scores every pair with
its cross encoder (the run's model is loaded), in ``pair_chunk x pair_chunk`` batches, into one
``[Nt, Nv]`` matrix. Re-ranking (``--rerank``) needs the whole matrix too; the raw numbers are
always computed and reported first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from c4c.atomic import write_json
from c4c.choices import RERANKERS
from c4c.data.embeddings import Embeddings
from c4c.errors import C4CError
from c4c.evaluation import LooseScores, tight_matrix
from c4c.metrics import rerank as reranking
from c4c.metrics.retrieval import blockwise_metrics, matrix_metrics
from c4c.options import check_config
from c4c.outputs import Output, guard, json_with_format
from c4c.run.source import check_same_model
from c4c.stages.evaluate_config import EvaluateConfig

log = logging.getLogger(__name__)

QBNORM_COSINE_BETA = 20.0  # QB-Norm's inverse temperature for cosine similarities (its README)


@dataclass
class EvaluateResult:
    metrics: dict
    out: Path
    seconds: float


def check_bank_model(bank, emb, force: bool = False) -> None:
    """C4CError naming both models when the bank was encoded by another model than the evaluated file
    (their fingerprints differ; files without one are compared by run and checkpoint)."""

    have, want = bank.model_source, emb.model_source
    if have is None or want is None:
        return
    check_same_model(have, want, have_what=f"the bank {bank.path}", want_what=f"{emb.path}", force=force,
                     hint="encode the bank (the training split) with the same model, or pass --force")


def _bank_scores(bank_path: Path, emb, text: np.ndarray, video: np.ndarray, force: bool = False
                 ) -> dict[str, np.ndarray]:
    """Bank-vs-gallery similarities for QB-Norm: bank captions vs test videos (t2v) and bank videos vs
    test captions (v2t), with the test file's logit scale."""

    bank = Embeddings(bank_path)
    check_bank_model(bank, emb, force)
    if not bank.loose:
        raise C4CError("the query bank must come from a loose-head run", path=bank_path)
    bank_text = bank.text_emb()
    if bank_text.shape[1] != text.shape[1]:
        raise C4CError(f"bank embeddings have size {bank_text.shape[1]}, the evaluated ones {text.shape[1]}",
                       path=bank_path, hint="encode the bank with the same run")
    scale = np.float32(emb.logit_scale)
    scores = {"t2v": (bank_text @ video.T) * scale if bank_text.shape[0] else None,
              "v2t": None}
    bank_video = bank.video_emb()
    if bank_video.shape[0]:
        scores["v2t"] = (bank_video @ text.T) * scale
    if scores["t2v"] is None:
        raise C4CError("the query bank holds no captions", path=bank_path,
                       hint="encode the training split with --dataset and --ann")
    return scores


def _rerank_metrics(method: str, sim: np.ndarray, groups: np.ndarray, cfg: EvaluateConfig,
                    bank: dict[str, np.ndarray] | None, logit_scale: float) -> dict:

    params = dict(cfg.rerank_params.get(method, {}))
    if method == "qbnorm":
        # QB-Norm's beta = 20 is for cosine scores; ours carry the learned scale (about 100)
        params.setdefault("beta", QBNORM_COSINE_BETA / logit_scale)
    t2v = reranking.rerank(method, sim, bank_sim=bank["t2v"] if bank else None, **params)
    v2t_bank = bank["v2t"] if bank else None
    if method == "qbnorm" and v2t_bank is None:
        v2t = sim.T
        log.warning("qbnorm: the bank has no videos, video-to-text is left un-normalised")
    else:
        v2t = reranking.rerank(method, sim.T, bank_sim=v2t_bank, **params)
    both = blockwise_metrics(lambda a, b: t2v[a:b], lambda a, b: v2t[a:b], groups, sim.shape[1],
                             chunk=cfg.chunk, ties=cfg.ties)
    return {"t2v": both["t2v"], "v2t": both["v2t"], "transductive": method in reranking.TRANSDUCTIVE, "params": params}


METRICS_FORMAT = "c4c-retrieval-metrics"  # metrics.json


def metrics_path(cfg: EvaluateConfig) -> Path:
    """Where the metrics go: ``--out``, else ``metrics.json`` beside EMB.h5."""
    return Path(cfg.out) if cfg.out else Path(cfg.emb).with_name("metrics.json")


def run(cfg: EvaluateConfig, on_event: Callable[[dict], None] | None = None) -> EvaluateResult:
    """Score the embedding file, print nothing, write the metrics JSON and return it."""
    out = Output(metrics_path(cfg), "metrics file", json_with_format(
        METRICS_FORMAT, also=lambda d: isinstance(d, dict) and {"t2v", "v2t", "protocol"} <= d.keys()))
    with guard([out], [cfg.emb, cfg.bank, cfg.run], command="c4c evaluate"):
        return _score(cfg, on_event)


def _score(cfg: EvaluateConfig, on_event: Callable[[dict], None] | None) -> EvaluateResult:
    emit = on_event or (lambda event: None)
    t0 = time.perf_counter()
    methods = [m for m in dict.fromkeys(cfg.rerank) if m != "none"]
    unknown = [m for m in methods if m not in RERANKERS]
    if unknown:
        raise C4CError(f"unknown --rerank {unknown[0]!r}", hint=f"choose from {', '.join(RERANKERS)}")
    if "qbnorm" in methods and cfg.bank is None:
        raise C4CError("--rerank qbnorm needs --bank EMB_TRAIN.h5 (training captions encoded by the same run)")
    check_config(cfg)
    emb = Embeddings(cfg.emb)
    groups = emb.video_index
    if not len(groups):
        raise C4CError("the embedding file holds no captions: nothing to evaluate", path=cfg.emb,
                       hint="encode with --dataset/--ann for metrics; for your own videos use `c4c index` and `c4c search`")
    text = emb.text_emb()
    nt, nv = len(emb.captions), len(emb.video_ids)
    emit({"event": "start", "texts": nt, "videos": nv, "sim": emb.sim})
    sim = None
    if emb.loose:
        scores = LooseScores(text, emb.video_emb(), emb.logit_scale)
        raw = blockwise_metrics(scores.t2v, scores.v2t, groups, nv, chunk=cfg.chunk, ties=cfg.ties)
        if methods:
            sim = scores.full(cfg.chunk)
    else:
        from c4c.model.load import load_run, resolve_device

        device = resolve_device(cfg.device)
        run_dir = cfg.run or Path(str(emb.attrs.get("run", "")))
        loaded = load_run(run_dir, device=device, which=str(emb.attrs.get("checkpoint") or "best"))
        frames, mask = emb.video_frames()
        emit({"event": "pairs", "total": nt * nv})
        sim = tight_matrix(loaded.model, text, frames, mask, device=device, pair_chunk=cfg.pair_chunk,
                           on_block=lambda n: emit({"event": "pairs_done", "n": n}))
        raw = matrix_metrics(sim, groups, chunk=cfg.chunk, ties=cfg.ties)
    metrics: dict = {"format": METRICS_FORMAT, "format_version": 1, "t2v": raw["t2v"], "v2t": raw["v2t"], "protocol": raw["protocol"], "ties": cfg.ties,
                     "texts": nt, "videos": nv, "sim": emb.sim, "emb": str(Path(cfg.emb).resolve()),
                     "run": emb.attrs.get("run"), "dataset": emb.attrs.get("dataset"),
                     "split": emb.attrs.get("split"), "rerank": {}}
    if methods:
        if "qbnorm" in methods and not emb.loose:
            raise C4CError("qbnorm needs bank-vs-gallery scores, which a tightTransf cross encoder does not give "
                           "cheaply; use a loose-head run")
        bank = _bank_scores(cfg.bank, emb, text, emb.video_emb(), cfg.force) if "qbnorm" in methods else None
        for method in methods:
            metrics["rerank"][method] = _rerank_metrics(method, sim, groups, cfg, bank, emb.logit_scale)
            emit({"event": "rerank", "method": method})
    metrics["seconds"] = round(time.perf_counter() - t0, 3)
    out = metrics_path(cfg)
    write_json(out, metrics)
    return EvaluateResult(metrics=metrics, out=out, seconds=metrics["seconds"])

