"""Which similarity head models time? Train each head from random init (tiny CLIP) on `c4c synth` data
and measure text-to-video retrieval on the test split, separately for

- order-contrast queries: captions of videos that have an exact time-reversed twin in the test set
  ("moves left then up" vs "moves down then right"); the twins have the same frames in reverse order,
  so an order-blind head (meanP) gives both the same score;
- the other queries (shape, colour and motion of videos without a twin).

The sharpest order measure is the twin accuracy: how often a query scores its own video above the
video's exact time reversal (an order-blind head ties every time: 50%). R@1 over all test videos is
bounded by captions shared by several videos (the generator has 216 shape/colour/motion combinations).

Ties are counted at their expected rank (ties="mean"): an order-blind head gets 50% of the credit
when a query's two candidates tie. Chance is 1 / number of test videos.

Usage: python bench/bench_heads.py [--videos 240] [--epochs 60] [--seeds 1]
Prints a table and writes bench/results/heads.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from c4c import synth
from c4c.choices import HEADS
from c4c.stages import extract
from c4c.stages.finetune import FinetuneConfig, run

WORK = Path(__file__).resolve().parent / ".work" / "heads"
RESULTS = Path(__file__).resolve().parent / "results"


def prepare(videos: int, seed: int, fps: float, shapes: tuple[str, ...], colours: tuple[str, ...]) -> tuple[Path, Path, Path]:
    data = WORK / f"synth-{videos}-{seed}-{len(shapes)}x{len(colours)}"
    synth.run(synth.SynthConfig(out_dir=data, videos=videos, seed=seed, duration=4.0, width=64, height=48,
                                shapes=shapes, colours=colours))
    frames = data / f"frames-{fps:g}fps.h5"
    if not frames.exists():
        extract.run(extract.ExtractConfig(source=data / "annotations.jsonl", dataset="jsonl", videos_dir=data / "videos",
                                          out=frames, size=32, fps=fps, codec="raw"))
    return data / "annotations.jsonl", frames, data / "synth.json"


def order_queries(synth_json: Path) -> dict[str, str]:
    """Test videos whose time-reversed twin is also in the test split, mapped to that twin."""
    meta = synth.load_metadata(synth_json)
    split = {v["video_id"]: v["split"] for v in meta["videos"]}
    twins: dict[str, str] = {}
    for a, b in synth.order_contrast_pairs(synth_json):
        if split[a] == split[b] == "test":
            twins[a], twins[b] = b, a
    return twins


def evaluate_test(run_dir: Path, cfg: FinetuneConfig, twins: dict[str, str]) -> dict:
    import torch

    from c4c.data.text import CaptionTokenizer
    from c4c.data.frames import ClipSpec
    from c4c.data.video_text import EvalSet
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.metrics.retrieval import metrics_from_ranks, positive_ranks
    from c4c.evaluation import encode_eval_set, similarity_matrix
    from c4c.model.load import build_model, resolve_spec
    from c4c.run import checkpoint
    from c4c.video.store import FrameStore

    model, _, _ = build_model(resolve_spec(cfg), "cpu", init=cfg.init)
    model.load_state_dict(checkpoint.load_model_state(run_dir / "best"))
    records = split_records(read_annotations("jsonl", cfg.ann), "test")
    evalset = EvalSet(records, FrameStore(cfg.frames), CaptionTokenizer(cfg.max_words),
                      ClipSpec(max_frames=cfg.max_frames))
    with torch.no_grad():
        text, video, mask = encode_eval_set(model, evalset, batch_size=64)
        sim = similarity_matrix(model, text, video, mask)
    ranks = positive_ranks(sim, evalset.video_of_caption, ties="mean")
    is_twin = np.array([evalset.video_ids[v] in twins for v in evalset.video_of_caption])
    column = {vid: j for j, vid in enumerate(evalset.video_ids)}
    wins = []
    for i, v in enumerate(evalset.video_of_caption):  # own video vs its time-reversed twin
        twin = twins.get(evalset.video_ids[v])
        if twin is not None:
            own, other = sim[i, v], sim[i, column[twin]]
            wins.append(1.0 if own > other else 0.5 if own == other else 0.0)
    out = {"order": metrics_from_ranks(ranks[is_twin]), "other": metrics_from_ranks(ranks[~is_twin]),
           "twin_accuracy": 100.0 * float(np.mean(wins)),
           "all": metrics_from_ranks(ranks), "test_videos": len(evalset.video_ids),
           "order_queries": int(is_twin.sum()), "other_queries": int((~is_twin).sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per head (mean and spread reported)")
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--fps", type=float, default=4.0, help="frames sampled per second of the 4 s videos")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init", type=Path, default=None,
                    help="start every head from this run's CLIP towers (e.g. a meanP run: the analogue of pretrained CLIP)")
    ap.add_argument("--shapes", default=",".join(synth.SHAPES))
    ap.add_argument("--colours", default=",".join(synth.COLOURS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shapes, colours = tuple(args.shapes.split(",")), tuple(args.colours.split(","))
    ann, frames, meta = prepare(args.videos, seed=0, fps=args.fps, shapes=shapes, colours=colours)
    twins = order_queries(meta)
    rows = []
    for head in args.heads.split(","):
        runs = []
        for seed in range(args.seeds):
            out = WORK / (f"run-{head}-{args.videos}-{args.epochs}-{args.fps:g}-{args.lr:g}-"
                          f"{len(shapes)}x{len(colours)}-{seed}" + ("-init" if args.init else ""))
            cfg = FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=out, sim=head, clip="tiny",
                                 pretrained="none", epochs=args.epochs, batch_size=32, lr=args.lr, coef_lr=1.0,
                                 warmup=0.05, workers=0, temporal_layers=2, max_frames=12, seed=seed,
                                 log_every=50, keep_checkpoints=1, init=args.init)
            t0 = time.perf_counter()
            if not (out / "results.json").exists():
                if out.exists():
                    import shutil

                    shutil.rmtree(out)
                run(cfg)
            result = evaluate_test(out, cfg, twins)
            result["train_seconds"] = time.perf_counter() - t0
            runs.append(result)
        rows.append({"head": head, "runs": runs})
        order = [r["order"]["R@1"] for r in runs]
        other = [r["other"]["R@1"] for r in runs]
        twin = [r["twin_accuracy"] for r in runs]
        print(f"{head:12s} own video above its reversed twin {np.mean(twin):5.1f}% ± {np.std(twin):4.1f} (chance 50)   "
              f"order-contrast R@1 {np.mean(order):5.1f} ± {np.std(order):4.1f}   "
              f"other R@1 {np.mean(other):5.1f} ± {np.std(other):4.1f}   "
              f"(chance {100 / runs[0]['test_videos']:.1f}; {runs[0]['order_queries']} order / "
              f"{runs[0]['other_queries']} other queries; {np.mean([r['train_seconds'] for r in runs]):.0f} s)",
              flush=True)
    name = f"heads-{len(shapes)}x{len(colours)}" + ("-init" if args.init else "") + ".json"
    (RESULTS / name).write_text(json.dumps({"args": vars(args), "cpus": os.cpu_count(), "rows": rows},
                                                   indent=2, default=str) + "\n")
    print(f"written {RESULTS / name}")


if __name__ == "__main__":
    main()
