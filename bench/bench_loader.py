"""Training-loader frames/s (0, 1, 2 DataLoader workers) against what a ViT-B/32 training step consumes.

The loader is finetune's: ``TrainPairs`` over a frame store (bench_decode.py's store: 224 px JPEG q95
4:4:4, 12 frames per clip, uniform sampling) and ``collate``, shuffled, with each CPU decoder. The
model's consumption is the c4c meanP step of bench_train_step.py recorded in
``bench/results/train_step_cpu_none.json`` (batch 4 x 12 frames, no padding, 2 threads), not re-measured
here; the GPU step (batch 128 x 12 on CUDA) is not measured without a GPU and its command is printed.

Decoder ``after-batch`` is ``--frame-decoder cuda``'s path: the workers hand out JPEG bytes and each batch
is decoded in the main process on ``--device`` (nvJPEG on cuda; torchvision's CPU decoder on cpu), as the
trainer does.

Usage: OMP_NUM_THREADS=1 python bench/bench_loader.py [--workers 0,1,2] [--decoders pillow,simplejpeg,after-batch]
       [--device cpu|cuda] [--batch 32] [--epochs 4]
Prints a table with the ratio loader / step and writes bench/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import WORK  # noqa: E402  the store bench_decode.py builds

RESULTS = Path(__file__).resolve().parent / "results"
GPU_STEP_COMMAND = "python bench/bench_train_step.py --device cuda --batch 128 --heads meanP --padding none"
GPU_FRAMES_PER_S = 1e4  # the estimate of what one GPU consumes at batch 128 x 12 (not measured here)


def cpu_step_frames_per_s() -> tuple[float, dict]:
    """Frames/s the c4c meanP step consumes on the CPU, from bench_train_step.py's recorded figure."""
    rec = json.loads((RESULTS / "train_step_cpu_none.json").read_text())
    row = next(r for r in rec["rows"] if r["head"] == "meanP")
    frames = rec["args"]["batch"] * 12  # --padding none: every frame of the batch is real
    sec = row["c4c"]["seconds_per_step"]
    return frames / sec, {"source": "bench/results/train_step_cpu_none.json", "head": "meanP",
                          "batch": rec["args"]["batch"], "frames_per_step": frames, "seconds_per_step": sec,
                          "machine": rec["machine"]}


def loader_rate(workers: int, decoder: str, batch: int, epochs: int, device: str = "cpu") -> dict:
    """Real frames/s of finetune's training DataLoader: the fastest of ``epochs`` epochs (each epoch's first
    batch not timed: it includes starting the workers)."""
    import torch

    from c4c.data.text import CaptionTokenizer
    from c4c.data.frames import ClipSpec
    from c4c.data.video_text import TrainPairs, collate
    from c4c.datasets.records import VideoRecord
    from c4c.video import jpeg
    from c4c.video.store import FrameStore

    from c4c.data.device_frames import decode_batch

    after_batch = decoder == "after-batch"
    jpeg._simplejpeg = False if decoder == "pillow" else None  # workers fork after this: they inherit it
    if not after_batch and jpeg.cpu_decoder("auto") != decoder:
        raise SystemExit(f"decoder {decoder} is not available")
    store = FrameStore(next(WORK.glob("frames_*.h5")))
    records = [VideoRecord(video_id=v, captions=[f"clip {v} caption {k}" for k in range(16)], split="train")
               for v in store.ids()]
    data = TrainPairs(records, store, CaptionTokenizer(32), ClipSpec(max_frames=12), expand_sentences=True)
    data.encoded_frames = after_batch
    rates = []  # frames/s of each epoch, its first batch (which starts the workers) not timed
    for epoch in range(epochs):
        data.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers,
                                             collate_fn=collate, drop_last=True,
                                             generator=torch.Generator().manual_seed(epoch))
        frames, t0 = 0, None
        for b in loader:
            if after_batch:
                b = decode_batch(b, store.settings.size, device)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
            if t0 is None:
                t0 = time.perf_counter()
                continue
            frames += int(b["video_mask"].sum())
        rates.append(frames / (time.perf_counter() - t0))
    jpeg._simplejpeg = None
    # the machine may be shared: the fastest epoch is the least disturbed
    return {"workers": workers, "decoder": decoder + (f" ({device})" if after_batch else ""),
            "frames_per_s": max(rates), "epoch_frames_per_s": rates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--decoders", default="pillow,simplejpeg,after-batch")
    ap.add_argument("--device", default="cpu", help="where after-batch decodes (cuda: nvJPEG)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    if not any(WORK.glob("frames_*.h5")):
        raise SystemExit("no frame store yet: run `OMP_NUM_THREADS=1 python bench/bench_decode.py` first")

    import torch

    torch.set_num_threads(1)
    step_fps, step = cpu_step_frames_per_s()
    rows = []
    for w in [int(x) for x in args.workers.split(",")]:
        for d in args.decoders.split(","):
            row = loader_rate(w, d, args.batch, args.epochs, args.device)
            row["cpu_step_frames_per_s"] = step_fps
            row["loader_over_cpu_step"] = row["frames_per_s"] / step_fps
            row["loader_over_gpu_step"] = None
            row["gpu_note"] = f"not measured (no GPU): run `{GPU_STEP_COMMAND}`"
            rows.append(row)
    print(f"model consumption, CPU: {step_fps:.1f} frames/s (recorded c4c meanP step, batch {step['batch']} x 12, "
          f"{step['seconds_per_step']:.2f} s, {step['source']})")
    print(f"model consumption, GPU (ViT-B/32, batch 128 x 12): not measured (no GPU): run `{GPU_STEP_COMMAND}`")
    print(f"{'workers':>7s} {'decoder':>18s} {'loader frames/s':>15s} {'loader / CPU step':>17s} {'loader / GPU step':>17s}")
    for r in rows:
        print(f"{r['workers']:7d} {r['decoder']:>18s} {r['frames_per_s']:15,.0f} {r['loader_over_cpu_step']:17.0f} "
              f"{'not measured':>17s}")
    best = {d: max(r["frames_per_s"] / max(r["workers"], 1) for r in rows if r["decoder"] == d)
            for d in dict.fromkeys(r["decoder"] for r in rows)}
    need = {d: int(np.ceil(GPU_FRAMES_PER_S / v)) for d, v in best.items()}
    print("workers a GPU needs at ~1e4 frames/s consumed: "
          + ", ".join(f"{d} {need[d]} ({best[d]:,.0f} frames/s per worker)" for d in need))
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    out = {"machine": machine, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": "OMP_NUM_THREADS=1 python bench/bench_loader.py", "settings": vars(args), "cpu_step": step,
           "gpu_step": {"frames_per_s": None, "note": f"not measured (no GPU): run `{GPU_STEP_COMMAND}`",
                        "assumed_frames_per_s": GPU_FRAMES_PER_S},
           "rows": rows, "per_worker_frames_per_s": best, "gpu_workers_needed": need}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loader.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'loader.json'}")


if __name__ == "__main__":
    main()
