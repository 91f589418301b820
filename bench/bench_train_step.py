"""Seconds per training step of CLIP4Clip with a ViT-B/32 backbone (random init), per head, c4c
against a reference-style step measured side by side on the same machine.

The setting is the reference's measured run (spec section 10.3): batch 4 (text, video) pairs,
12 frames of 224x224, 32 words, one video half padded, 2-D patch, freeze_layers 0, fp32 CLIP with
QuickGELU (OpenAI's activation), one full optimiser step. Both arms start from the same weights and
inputs, and their first losses must agree (they compute the same function).

* ``reference``: bench/reference_style.py: the reference's layout and loop (sequence-first towers,
  every frame and word position computed, BertAdam one tensor at a time, glibc's allocator as is).
* ``c4c``: ``CLIP4Clip`` and the training loop's own step function (``contrastive_step``), global
  clipping and the optimiser from ``make_optimizer`` (AdamW, fused), with the host-memory setting
  the trainer applies.

Each (arm, head) runs in a fresh process (the allocator setting is per process), arms alternate
within each round, and every round measures ``--steps`` (4) steps after ``--warmup`` (4) steps. Reported is
the median over all rounds. The spec's figures for the paper's code on a 2-core VM of this kind
(meanP 7.99, seqLSTM 7.17, seqTransf 7.74, tightTransf 7.83 s) are printed beside, for context:
they came from another machine of the same size, so only the side-by-side ratio is a measurement.

With --device cuda (when a GPU is present): c4c only, batch 128, bf16 autocast, clips/s and model
FLOP utilisation against the GPU's dense bf16 peak (--peak-tflops, default 989 for an H100 SXM).

``--ablate`` adds c4c arms with one saving switched off each (host-memory, last-block,
fused-adamw), and a reference-style arm with c4c's allocator setting, to show what each is worth.

Usage: python bench/bench_train_step.py [--heads meanP,seqTransf] [--rounds 2] [--steps 3]
           [--padding half|none] [--ablate] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from c4c.atomic import write_json
from c4c.choices import HEADS

RESULTS = Path(__file__).resolve().parent / "results"
SPEC_REFERENCE = {"meanP": 7.99, "seqLSTM": 7.17, "seqTransf": 7.74, "tightTransf": 7.83}
ARMS = ("reference", "c4c")
ABLATIONS = ("host-memory", "last-block", "fused-adamw")


def make_inputs(batch: int, frames: int, words: int, size: int, padding: str, device: str):
    """Seeded inputs: uint8 video ``[B, T, S, S, 3]``, mask ``[B, T]``, ids ``[B, W]`` with EOTs spread out."""
    import torch

    g = torch.Generator().manual_seed(1)
    video = torch.randint(0, 256, (batch, frames, size, size, 3), dtype=torch.uint8, generator=g)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    if padding == "half" and batch > 1:
        mask[1, frames // 2:] = False
        video[1, frames // 2:] = 0
    ids = torch.zeros(batch, words, dtype=torch.long)
    for i in range(batch):
        length = 8 + (i * 7) % (words - 9)   # EOT somewhere in the middle
        ids[i, 0] = 49406
        ids[i, 1:length] = torch.randint(300, 40000, (length - 1,), generator=g)
        ids[i, length] = 49407
    return video.to(device), mask.to(device), ids.to(device)


def train_flops_per_clip(clip, frames: int, words: int) -> float:
    """Approximate training FLOPs of one (text, video) pair: 6 x parameters x tokens for each tower."""
    visual = sum(p.numel() for p in clip.visual.parameters())
    text = sum(p.numel() for n, p in clip.named_parameters() if not n.startswith("visual.")
               and not n.startswith("token_embedding"))
    grid = clip.visual.grid_size
    return 6.0 * (visual * (grid[0] * grid[1] + 1) * frames + text * words)


def worker(arm: str, head: str, *, steps: int, warmup: int, padding: str, device: str, batch: int,
           without: str = "", host_memory: bool = False) -> dict:
    """One arm, one head, in this process: the step times and the first loss. ``without`` (c4c arm
    only) switches one of c4c's savings off: host-memory, last-block or fused-adamw. ``host_memory``
    (reference arm only) gives the reference-style step c4c's allocator setting."""
    import open_clip
    import torch

    from c4c.model.clip4clip import CLIP4Clip
    from c4c.model.heads import make_head
    from c4c.train.optim import BertAdam, freeze_clip_layers, make_optimizer, param_groups

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).to(device)
    video, mask, ids = make_inputs(batch, 12, 32, 224, padding, device)
    gpu = device.startswith("cuda")
    if arm == "c4c":
        from c4c.train.distributed import DistInfo
        from c4c.train.host_memory import keep_freed_memory
        from c4c.train.loop import autocast_context, contrastive_step

        if without == "last-block":
            import c4c.model.towers as towers

            towers.prunable = lambda transformer: False  # every token through every block (text still cut)
        if without != "host-memory":
            keep_freed_memory()
        model = CLIP4Clip(clip, sim=head).to(device)
        freeze_clip_layers(model, 0)
        optimizer, scheduler = make_optimizer(model, lr=1e-4, coef_lr=1e-3, total_steps=1000)
        if without == "fused-adamw":
            optimizer = torch.optim.AdamW(param_groups(model, 1e-4, 1e-3), lr=1e-4, betas=(0.9, 0.98), eps=1e-6,
                                          weight_decay=0.2)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
        amp_ctx = autocast_context("bf16" if gpu else "none", device)
        info = DistInfo(rank=0, local_rank=0, world_size=1, device=device)
        batch_dict = {"text_ids": ids, "video": video, "video_mask": mask}

        def step() -> float:
            optimizer.zero_grad(set_to_none=True)
            loss = contrastive_step(model, model, batch_dict, accum=1, amp_ctx=amp_ctx, scaler=None,
                                    dist_info=info)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            model.clamp_logit_scale()
            return loss
    else:
        from reference_style import ReferenceStyleModel  # bench/ is on sys.path: this file runs as a script

        if host_memory:
            from c4c.train.host_memory import keep_freed_memory

            keep_freed_memory()

        head_module = make_head(head, clip)
        model = ReferenceStyleModel(clip, head_module, head).to(device)
        freeze_clip_layers(model, 0)
        optimizer = BertAdam(param_groups(model, 1e-4, 1e-3), lr=1e-4, betas=(0.9, 0.98), eps=1e-6,
                             weight_decay=0.2, max_grad_norm=1.0)
        mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 1, 3, 1, 1)
        std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 1, 3, 1, 1)
        pixels = ((video.permute(0, 1, 4, 2, 3).float() / 255.0 - mean) / std) * mask[:, :, None, None, None]
        model.train()

        def step() -> float:
            optimizer.zero_grad(set_to_none=False)
            loss = model(ids, pixels, mask)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                model.clip.logit_scale.clamp_(max=4.6052)
            return float(loss.detach())

    times, losses = [], []
    for k in range(warmup + steps):
        if gpu:
            torch.cuda.synchronize()
        torch.manual_seed(100 + k)  # the same dropout masks in both arms
        t0 = time.perf_counter()
        losses.append(step())
        if gpu:
            torch.cuda.synchronize()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"arm": arm, "head": head, "times": times, "first_loss": losses[0], "trainable": trainable,
            "threads": torch.get_num_threads(), "flops_per_clip": train_flops_per_clip(clip, 12, 32)}


def run_worker(args, arm: str, head: str) -> dict:
    """``arm``: reference, c4c, or c4c-without-<saving> (an ablation)."""
    base, _, without = arm.partition("-without-")
    with_memory = base == "reference-with-host-memory"
    base = "reference" if with_memory else base
    cmd = [sys.executable, __file__, "--worker", base, "--heads", head, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--padding", args.padding, "--device", args.device,
           "--batch", str(args.batch), "--without", without] + (["--with-host-memory"] if with_memory else [])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{arm}/{head} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per arm and head, arms alternating")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=4,
                    help="untimed steps per process (the heap grows, and glibc adapts its thresholds, in the first few)")
    ap.add_argument("--padding", choices=("half", "none"), default="half",
                    help="half: one video of the batch is half padding, as in the reference's measurement")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 4 on CPU, 128 on GPU")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--ablate", action="store_true",
                    help="also run c4c without each of its savings in turn (host-memory, last-block, fused-adamw)")
    ap.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    ap.add_argument("--without", default="", help=argparse.SUPPRESS)
    ap.add_argument("--with-host-memory", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    args.batch = args.batch or (128 if gpu else 4)
    heads = args.heads.split(",")
    if args.worker:
        result = worker(args.worker, heads[0], steps=args.steps, warmup=args.warmup, padding=args.padding,
                        device=args.device, batch=args.batch, without=args.without,
                        host_memory=args.with_host_memory)
        print(json.dumps(result))
        return

    import torch

    arms = ("c4c",) if gpu else ARMS
    if args.ablate and not gpu:
        arms = ARMS + tuple(f"c4c-without-{x}" for x in ABLATIONS) + ("reference-with-host-memory",)
    print(f"device {args.device}, batch {args.batch} x 12 frames x 224 px, 32 words, padding {args.padding}, "
          f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}, {args.rounds} rounds x "
          f"{args.steps} steps per arm", flush=True)
    rows = []
    for head in heads:
        runs = {arm: [] for arm in arms}
        for _ in range(args.rounds):
            for arm in arms:
                runs[arm].append(run_worker(args, arm, head))
        row = {"head": head, "load_after": os.getloadavg()[0]}
        for arm in arms:
            times = [t for r in runs[arm] for t in r["times"]]
            row[arm] = {"seconds_per_step": statistics.median(times), "min": min(times), "times": times,
                        "first_loss": runs[arm][0]["first_loss"], "trainable": runs[arm][0]["trainable"]}
        c4c = row["c4c"]["seconds_per_step"]
        if gpu:
            row["clips_per_s"] = args.batch / c4c
            row["mfu"] = row["clips_per_s"] * runs["c4c"][0]["flops_per_clip"] / (args.peak_tflops * 1e12)
            print(f"{head:12s} {c4c:.3f} s/step  {row['clips_per_s']:.0f} clips/s  MFU {100 * row['mfu']:.1f}%",
                  flush=True)
        else:
            ref = row["reference"]["seconds_per_step"]
            row["speedup"] = ref / c4c
            row["loss_difference"] = abs(row["reference"]["first_loss"] - row["c4c"]["first_loss"])
            row["spec_reference_seconds"] = SPEC_REFERENCE[head]
            print(f"{head:12s} reference-style {ref:5.2f} s (min {row['reference']['min']:.2f})   "
                  f"c4c {c4c:5.2f} s (min {row['c4c']['min']:.2f})   speed-up {row['speedup']:.2f}x   "
                  f"first losses {row['reference']['first_loss']:.5f} / {row['c4c']['first_loss']:.5f}   "
                  f"spec's reference {SPEC_REFERENCE[head]:.2f} s", flush=True)
            for arm in arms[2:]:
                row[arm]["speedup"] = ref / row[arm]["seconds_per_step"]
                print(f"{'':12s} {arm:28s} {row[arm]['seconds_per_step']:5.2f} s (min {row[arm]['min']:.2f})   "
                      f"speed-up {row[arm]['speedup']:.2f}x", flush=True)
            if row["loss_difference"] > 1e-3:
                print(f"  WARNING: the arms' first losses differ by {row['loss_difference']:.2e}", flush=True)
        rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_step_gpu.json" if gpu else f"train_step_cpu_{args.padding}{'_ablation' if args.ablate else ''}.json"
    out = args.out or RESULTS / name
    payload = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__},
               "rows": rows}
    write_json(out, payload)
    print(f"written {out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
