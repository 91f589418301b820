"""Softmax or sigmoid? Fine-tune a CLIP that has a logit bias (the SigLIP-like small configuration of
tests/configs/clip-siglip.json: no causal mask, last-token pooling, logit bias -10, random init) on
`c4c synth` data with each loss and measure text-to-video R@1 on the test split.

``--loss softmax`` is the paper's symmetric cross entropy over the batch; ``--loss sigmoid`` is
SigLIP's pairwise loss (each pair a binary decision, with the model's logit bias). Everything else is
the same: data, seed, steps, learning rate, meanP head. The last epoch is evaluated (no selection).

Usage: python bench/bench_loss.py [--videos 96] [--epochs 15] [--seeds 2]
Prints a table and writes bench/results/loss.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path

from bench_heads import WORK, evaluate_test, order_queries, prepare

from c4c import synth
from c4c.stages.finetune import FinetuneConfig, run

CONFIG = Path(__file__).resolve().parent.parent / "tests" / "configs" / "clip-siglip.json"
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    ann, frames, meta = prepare(args.videos, seed=0, fps=4.0, shapes=synth.SHAPES, colours=tuple(synth.COLOURS))
    twins = order_queries(meta)
    rows = []
    for loss in ("softmax", "sigmoid"):
        runs = []
        for seed in range(args.seeds):
            out = WORK / f"loss-{loss}-{args.videos}-{args.epochs}-{args.lr:g}-{seed}"
            shutil.rmtree(out, ignore_errors=True)
            cfg = FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=out, sim="meanP", clip=str(CONFIG),
                                 pretrained="none", loss=loss, epochs=args.epochs, batch_size=32, lr=args.lr,
                                 coef_lr=1.0, warmup=0.05, workers=0, max_frames=12, max_words=16, seed=seed,
                                 select_on="last", log_every=50, keep_checkpoints=1)
            t0 = time.perf_counter()
            run(cfg)
            result = evaluate_test(out, cfg, twins)
            result["train_seconds"] = round(time.perf_counter() - t0, 1)
            runs.append(result)
        r1 = [r["all"]["R@1"] for r in runs]
        rows.append({"loss": loss, "R@1": r1, "mean_R@1": statistics.mean(r1), "runs": runs})
        print(f"{loss:<8} test R@1 {statistics.mean(r1):5.1f} (seeds: {', '.join(f'{x:.1f}' for x in r1)}; "
              f"chance {100.0 / runs[0]['test_videos']:.1f}; {runs[0]['test_videos']} test videos)", flush=True)
    out = RESULTS / "loss.json"
    out.write_text(json.dumps({"videos": args.videos, "epochs": args.epochs, "seeds": args.seeds, "lr": args.lr,
                               "config": CONFIG.name, "rows": rows}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
