"""Seconds per training step of CLIP4Clip with a ViT-B/32 backbone (random init), per head.

The setting matches the reference's measured run (spec section 10.3): batch 4 (text, video) pairs,
12 frames of 224x224, 32 words, 2-D patch, freeze_layers 0, fp32, one full optimiser step
(forward, symmetric loss, backward, global clipping, AdamW), 1 warm-up step then the median of 5.
The reference code took 7.2-8.0 s per step on this kind of 2-core CPU with fp32 CLIP
(meanP 7.99, seqLSTM 7.17, seqTransf 7.74, tightTransf 7.83).

With --device cuda (when a GPU is present): batch 128, bf16 autocast, clips/s and model FLOP
utilisation against the GPU's dense bf16 peak (--peak-tflops, default 989 for an H100 SXM).

Usage: python bench/bench_train_step.py [--heads meanP,seqTransf] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from c4c.model.backbone import build_clip
from c4c.model.clip4clip import CLIP4Clip
from c4c.train.optim import freeze_clip_layers, make_optimizer

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = {"meanP": 7.99, "seqLSTM": 7.17, "seqTransf": 7.74, "tightTransf": 7.83}


def train_flops_per_clip(model: CLIP4Clip, frames: int, words: int) -> float:
    """Approximate training FLOPs of one (text, video) pair: 6 x parameters x tokens for each tower."""
    visual = sum(p.numel() for p in model.clip.visual.parameters())
    text = sum(p.numel() for n, p in model.clip.named_parameters() if not n.startswith("visual.")
               and not n.startswith("token_embedding"))
    grid = model.clip.visual.grid_size
    tokens = grid[0] * grid[1] + 1
    return 6.0 * (visual * tokens * frames + text * words)


def time_head(head: str, *, batch: int, frames: int, words: int, steps: int, device: str, amp: str) -> dict:
    torch.manual_seed(0)
    clip, _ = build_clip("ViT-B-32", "none", device=device)
    model = CLIP4Clip(clip, sim=head).to(device)
    freeze_clip_layers(model, 0)
    optimizer, scheduler = make_optimizer(model, lr=1e-4, coef_lr=1e-3, total_steps=100)
    video = torch.randint(0, 256, (batch, frames, 224, 224, 3), dtype=torch.uint8, device=device)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    ids = torch.zeros(batch, words, dtype=torch.long, device=device)
    ids[:, 0] = 49406
    ids[:, 1:20] = torch.randint(300, 40000, (batch, 19), device=device)
    ids[:, 20] = 49407
    ctx = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if amp == "bf16"
           else torch.autocast(device_type="cpu", enabled=False))
    times = []
    for step in range(steps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with ctx:
            loss = model(ids, video, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        model.clamp_logit_scale()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step > 0:
            times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"head": head, "seconds_per_step": seconds, "min": min(times), "clips_per_s": batch / seconds,
            "flops_per_clip": train_flops_per_clip(model, frames, words),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default="meanP,seqLSTM,seqTransf,tightTransf")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 4 on CPU, 128 on GPU")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    batch = args.batch or (128 if gpu else 4)
    amp = "bf16" if gpu else "none"
    print(f"device {args.device}, batch {batch} x 12 frames x 224 px, 32 words, amp {amp}, "
          f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    rows = []
    for head in args.heads.split(","):
        r = time_head(head, batch=batch, frames=12, words=32, steps=args.steps, device=args.device, amp=amp)
        if gpu:
            r["mfu"] = r["clips_per_s"] * r["flops_per_clip"] / (args.peak_tflops * 1e12)
            print(f"{head:12s} {r['seconds_per_step']:.3f} s/step  {r['clips_per_s']:.0f} clips/s  MFU {100 * r['mfu']:.1f}%")
        else:
            r["reference_seconds"] = REFERENCE[head]
            print(f"{head:12s} {r['seconds_per_step']:.2f} s/step (min {r['min']:.2f})   reference {REFERENCE[head]:.2f} s/step"
                  f"   ratio {REFERENCE[head] / r['seconds_per_step']:.2f}x", flush=True)
        rows.append(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_step_gpu.json" if gpu else "train_step_cpu.json"
    (RESULTS / name).write_text(json.dumps({"args": vars(args), "batch": batch, "rows": rows}, indent=2) + "\n")
    print(f"written {RESULTS / name}")


if __name__ == "__main__":
    main()
