"""Backbones side by side on this machine: image-tower frames/s, one text query in ms, and what that
makes of indexing one hour of video at 1 fps (3,600 frames through the image tower; decoding and
writing excluded).

Every model is built by c4c (``build_clip(name, "none")``: open_clip's architecture with random
weights, which cost the same as trained ones) and timed through c4c's own paths:
``CLIP4Clip.encode_frames`` on uint8 frames at the model's image size (normalisation included) in
batches of ``--batch``, and ``CLIP4Clip.encode_text`` on one tokenised query. Each figure is the
median over ``--repeats`` timed runs after a warm-up run.

Usage: python bench/bench_backbones.py [--models ViT-B-32,RN50,...] [--batch 16] [--repeats 5]
       [--device cpu|cuda] [--threads N]
Writes bench/results/backbones-<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("ViT-B-32", "RN50", "convnext_base", "EVA02-B-16", "MobileCLIP2-S0", "PE-Core-B-16")
QUERY = "a man is cooking pasta in a small kitchen"


def _timed(run, repeats: int) -> float:
    """Median seconds of ``run()`` over ``repeats`` calls, after one warm-up call."""
    import torch

    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, batch: int, repeats: int, device: str) -> dict:
    """The row of one backbone."""
    import torch

    from c4c.data.text import CaptionTokenizer
    from c4c.model.backbone import build_clip
    from c4c.model.clip4clip import CLIP4Clip

    t0 = time.perf_counter()
    clip, info = build_clip(name, "none", device=device)
    model = CLIP4Clip(clip).to(device).eval()
    built = time.perf_counter() - t0
    size = model.image_size
    video = torch.randint(0, 256, (1, batch, size, size, 3), dtype=torch.uint8, device=device)
    mask = torch.ones(1, batch, dtype=torch.bool, device=device)
    ids, _ = CaptionTokenizer(min(32, info.context_length))([QUERY])
    ids = ids.to(device)

    def frames() -> None:
        model.encode_frames(video, mask)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def text() -> None:
        model.encode_text(ids)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        per_batch = _timed(frames, repeats)
        per_query = _timed(text, max(repeats, 10))
    fps = batch / per_batch
    return {"model": name, "image_size": size, "embed_dim": info.embed_dim, "context_length": info.context_length,
            "parameters_m": round(info.parameters / 1e6, 1), "image_tower": type(clip.visual).__name__,
            "frames_per_s": round(fps, 1), "text_query_ms": round(per_query * 1000, 1),
            "hour_at_1fps_min": round(3600 / fps / 60, 1), "build_s": round(built, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        row = measure(name.strip(), args.batch, args.repeats, args.device)
        rows.append(row)
        print(f"{row['model']:<16} {row['image_tower']:<18} {row['image_size']:>4}px {row['parameters_m']:>7.1f}M "
              f"{row['frames_per_s']:>8.1f} frames/s {row['text_query_ms']:>7.1f} ms/query "
              f"{row['hour_at_1fps_min']:>6.1f} min/hour", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"backbones-{args.device.split(':')[0]}.json"
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": platform.machine(),
                               "threads": torch.get_num_threads(), "device": args.device, "batch": args.batch,
                               "repeats": args.repeats, "rows": rows}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
