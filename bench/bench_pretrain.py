"""Post-pretraining benchmarks (`c4c pretrain`), measured side by side in one run.

(1) compare: does post-pretraining help fine-tuning? On synthetic data (tiny CLIP, random init):
    A. fine-tune meanP on `c4c synth` retrieval data from the random init;
    B. post-pretrain the SAME init on a `c4c synth --kind howto` corpus (long videos, ASR-like timed
       captions, the same shapes, colours and motions), then fine-tune from it (`--init`) with the
       same fine-tuning budget, seed and data order.
    Prints the test-split text-to-video R@1 (best epoch on val) of both, per seed and averaged, and the
    zero-shot R@1 of the post-pretrained model.
(2) throughput: training clips/s of `c4c pretrain` with the tiny config on the CPU, and the time to
    read and decode one batch's frames next to the time of one training step (target: frames < 0.1 x
    step). The same split for ViT-B/32 on 224 px frames (CPU: batch 4; with --device cuda: batch 128
    in bf16).

Usage: python bench/bench_pretrain.py [--part compare|throughput|all] [--seeds 3] [--quick]
Writes bench/results/pretrain_compare.json and bench/results/pretrain_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from c4c import synth
from c4c.stages import extract, finetune, pretrain

WORK = Path(__file__).resolve().parent / ".work" / "pretrain"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_1min": os.getloadavg()[0],
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d")}


# --- data -------------------------------------------------------------------------------------------

def retrieval_data(videos: int) -> tuple[Path, Path]:
    data = WORK / f"retrieval-{videos}"
    synth.run(synth.SynthConfig(out_dir=data, videos=videos, seed=0, duration=4.0, width=64, height=48))
    frames = data / "frames.h5"
    if not frames.exists():
        extract.run(extract.ExtractConfig(source=data / "annotations.jsonl", dataset="jsonl",
                                          videos_dir=data / "videos", out=frames, size=32, fps=4.0, codec="raw"))
    return data / "annotations.jsonl", frames


def howto_data(videos: int, duration: float, codec: str = "jpeg") -> tuple[Path, Path]:
    data = WORK / f"howto-{videos}-{duration:g}"
    synth.run_howto(synth.HowToConfig(out_dir=data, videos=videos, seed=1, duration=duration, fps=4, width=64,
                                      height=48))
    frames = data / ("frames" if codec == "jpeg" else f"frames-{codec}")
    if not (frames / "manifest.json").exists():  # the paper's 1 fps, as a shard set
        extract.run(extract.ExtractConfig(source=data, dataset="howto100m", videos_dir=data / "videos", out=frames,
                                          size=32, fps=1.0, shards=2, codec=codec))
    return data, frames


# --- (1) with vs without post-pretraining ------------------------------------------------------------

def test_metrics(run_dir: Path, ann: Path, frames: Path, checkpoint_name: str = "best") -> dict:
    """t2v/v2t metrics on the test split of the weights in ``run_dir``."""
    from c4c.data.text import CaptionTokenizer
    from c4c.data.frames import ClipSpec
    from c4c.data.video_text import EvalSet
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.evaluation import evaluate_retrieval
    from c4c.model.load import load_run
    from c4c.video.store import FrameStore

    loaded = load_run(run_dir, which=checkpoint_name)
    records = split_records(read_annotations("jsonl", ann), "test")
    evalset = EvalSet(records, FrameStore(frames), CaptionTokenizer(32), ClipSpec(max_frames=12))
    with torch.no_grad():
        return evaluate_retrieval(loaded.model, evalset, batch_size=64)


def compare(args) -> dict:
    ann, frames = retrieval_data(args.videos)
    howto, howto_frames = howto_data(args.howto_videos, args.howto_duration)
    budgets = [int(e) for e in str(args.epochs).split(",")]
    runs = []
    for seed in range(args.seeds):
        tag = f"{args.videos}-{args.howto_videos}-{args.pretrain_steps}-{seed}"
        pre_dir = WORK / f"pre-{tag}"
        t0 = time.perf_counter()
        if not (pre_dir / "results.json").exists():
            shutil.rmtree(pre_dir, ignore_errors=True)
            pretrain.run(pretrain.PretrainConfig(
                ann=howto, frames=howto_frames, out=pre_dir, clip="tiny", pretrained="none", sim="meanP",
                steps=args.pretrain_steps, batch_size=args.batch, lr=args.lr, coef_lr=1.0, warmup=0.05, seed=seed,
                workers=0, save_every=0, log_every=50, keep_checkpoints=1))
        row = {"seed": seed, "pretrain_seconds": time.perf_counter() - t0,
               "zero_shot": test_metrics(pre_dir, ann, frames, checkpoint_name="latest"), "budgets": {}}
        for epochs in budgets:
            cell = {}
            for arm, init in (("without", None), ("with", pre_dir)):
                out = WORK / f"ft-{arm}-{tag}-{epochs}"
                cfg = finetune.FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=out, sim="meanP",
                                              clip="tiny", pretrained="none", init=init, epochs=epochs,
                                              batch_size=args.batch, lr=args.lr, coef_lr=1.0, warmup=0.05, seed=seed,
                                              workers=0, log_every=50, keep_checkpoints=1)
                t0 = time.perf_counter()
                if not (out / "results.json").exists():
                    shutil.rmtree(out, ignore_errors=True)
                    finetune.run(cfg)
                cell[arm] = test_metrics(out, ann, frames)
                cell[f"{arm}_seconds"] = time.perf_counter() - t0
            row["budgets"][epochs] = cell
            print(f"seed {seed}, {epochs:3d} fine-tuning epochs: test t2v R@1 without post-pretraining "
                  f"{cell['without']['t2v']['R@1']:5.1f}   with {cell['with']['t2v']['R@1']:5.1f}", flush=True)
        print(f"seed {seed}: zero-shot test t2v R@1 after post-pretraining {row['zero_shot']['t2v']['R@1']:.1f} "
              f"(post-pretraining took {row['pretrain_seconds']:.0f} s)", flush=True)
        runs.append(row)

    def stats(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    metrics = ("R@1", "R@5", "R@10", "MnR")
    summary: dict = {"zero_shot": {m: stats([r["zero_shot"]["t2v"][m] for r in runs]) for m in metrics}}
    for epochs in budgets:
        summary[epochs] = {arm: {m: stats([r["budgets"][epochs][arm]["t2v"][m] for r in runs]) for m in metrics}
                           for arm in ("without", "with")}
        a, b = summary[epochs]["without"], summary[epochs]["with"]
        wins = sum(r["budgets"][epochs]["with"]["t2v"]["R@1"] > r["budgets"][epochs]["without"]["t2v"]["R@1"]
                   for r in runs)
        print(f"{epochs:3d} epochs, mean of {len(runs)} seed(s): R@1 without {a['R@1']['mean']:5.1f} "
              f"± {a['R@1']['std']:.1f}  with {b['R@1']['mean']:5.1f} ± {b['R@1']['std']:.1f}   R@5 {a['R@5']['mean']:.1f} vs "
              f"{b['R@5']['mean']:.1f}   MnR {a['MnR']['mean']:.2f} vs {b['MnR']['mean']:.2f}   "
              f"(with > without in {wins} of {len(runs)} seeds)")
    print(f"zero-shot after post-pretraining: R@1 {summary['zero_shot']['R@1']['mean']:.1f} "
          f"± {summary['zero_shot']['R@1']['std']:.1f}")
    from c4c.datasets.registry import read_annotations, split_records

    test_videos = len({r.video_id for r in split_records(read_annotations("jsonl", ann), "test")})
    return {"runs": runs, "summary": summary, "test_videos": test_videos, "chance_R@1": 100.0 / test_videos}


# --- (2) throughput -----------------------------------------------------------------------------------

def _batch_times(dataset, batch: int, batches: int) -> dict:
    """Seconds per batch: reading + decoding the frames alone, and whole items (+ tokenising, collating)."""
    from c4c.data.video_text import collate

    order = np.random.default_rng(0).permutation(len(dataset))
    frames_s, items_s = [], []
    for b in range(batches):
        idx = [int(i) for i in np.resize(order, (b + 1) * batch)[b * batch:(b + 1) * batch]]
        t0 = time.perf_counter()
        for i in idx:
            clip = dataset.clip(i)
            dataset.load_frames(clip.video_id, clip.start, clip.end)
        t1 = time.perf_counter()
        collate([dataset[i] for i in idx])
        t2 = time.perf_counter()
        frames_s.append(t1 - t0)
        items_s.append(t2 - t1)
    return {"frames_s": statistics.median(frames_s), "items_s": statistics.median(items_s)}


def _step_time(model, batch: dict, steps: int, device: str, amp: str) -> float:
    """Median seconds of one optimiser step (forward, loss, backward, clip, AdamW) on ``batch``."""
    from c4c.train.distributed import DistInfo
    from c4c.train.loop import autocast_context, contrastive_step
    from c4c.train.optim import make_optimizer

    optimizer, scheduler = make_optimizer(model, lr=1e-4, coef_lr=1e-3, total_steps=1000)
    batch = {k: v.to(device) for k, v in batch.items()}
    ctx = autocast_context(amp, device)
    times = []
    for step in range(steps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        contrastive_step(model, model, batch, accum=1, amp_ctx=ctx, scaler=None, dist_info=DistInfo(device=device))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _split(name: str, dataset, model_name: str, batch: int, steps: int, device: str, amp: str) -> dict:
    from c4c.data.video_text import collate
    from c4c.model.backbone import build_clip
    from c4c.model.clip4clip import CLIP4Clip
    from c4c.train.optim import freeze_clip_layers

    data = _batch_times(dataset, batch, batches=5)
    torch.manual_seed(0)
    clip, _ = build_clip(model_name, "none", device=device)
    model = CLIP4Clip(clip, sim="meanP").to(device)
    freeze_clip_layers(model, 0)
    sample = collate([dataset[i % len(dataset)] for i in range(batch)])
    step = _step_time(model, sample, steps, device, amp)
    ratio = data["frames_s"] / step
    row = {"setting": name, "batch": batch, "device": device, "amp": amp, "step_s": step,
           "frames_per_batch_s": data["frames_s"], "items_per_batch_s": data["items_s"],
           "frames_over_step": ratio, "items_over_step": data["items_s"] / step,
           "clips_per_s_model_only": batch / step,
           "loader_processes_for_ratio_0.1": int(np.ceil(10 * data["items_s"] / step))}
    print(f"{name:34s} step {step * 1000:9.1f} ms   frames of a batch {data['frames_s'] * 1000:7.1f} ms "
          f"(ratio {ratio:.3f}{' OK' if ratio < 0.1 else ' > 0.1'})   whole items {data['items_s'] * 1000:7.1f} ms "
          f"(ratio {data['items_s'] / step:.3f})", flush=True)
    return row


def _vit_frames() -> tuple[Path, list]:
    """A 224 px JPEG store of natural-looking video (test pattern + noise, 20 s, 1 fps) and HowTo-like
    captions over it (a 3-word fragment every 1.5 s): what a ViT-B/32 batch reads."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_extract import make_clips

    from c4c.datasets.records import VideoRecord

    folder = WORK / "vit-clips"
    make_clips(folder, 8, 20.0, "320x240")
    frames = WORK / "vit-frames.h5"
    if not frames.exists():
        extract.run(extract.ExtractConfig(source=folder, out=frames, size=224, fps=1.0))
    records = []
    for p in sorted(folder.glob("clip*.mp4")):
        times = [(1.5 * k, 1.5 * (k + 1)) for k in range(13)]
        records.append(VideoRecord(p.stem, ["stir the sauce"] * len(times), "train", caption_times=times))
    return frames, records


def throughput(args) -> dict:
    from c4c.data.howto import CaptionCorpus, HowToClips
    from c4c.data.text import CaptionTokenizer
    from c4c.datasets.howto100m import read_howto100m
    from c4c.video.store import FrameStore

    howto, howto_frames = howto_data(args.howto_videos, args.howto_duration)
    rows = []
    # end to end: `c4c pretrain` with the tiny config, clips/s as the loop logs it
    out = WORK / "throughput-run"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = pretrain.run(pretrain.PretrainConfig(
        ann=howto, frames=howto_frames, out=out, clip="tiny", pretrained="none", steps=args.throughput_steps,
        batch_size=args.throughput_batch, lr=1e-3, coef_lr=1.0, workers=0, save_every=0, log_every=10,
        keep_checkpoints=1))
    wall = time.perf_counter() - t0
    logged = [r["clips_per_s"] for r in pretrain.history(out)][1:]  # the first window includes start-up
    tb = args.throughput_batch
    e2e = {"setting": f"c4c pretrain, tiny, batch {tb}, CPU, 0 loader processes", "steps": result.steps,
           "clips_per_s": statistics.median(logged) if logged else None, "wall_s": wall}
    print(f"c4c pretrain (tiny, batch {tb}, CPU, data in the training process): "
          f"{e2e['clips_per_s']:.1f} training clips/s (median of the logged windows; {result.steps} steps, "
          f"{wall:.0f} s with start-up)", flush=True)
    corpus = CaptionCorpus(read_howto100m(howto))
    rows.append(_split(f"tiny, 32 px JPEG, batch {tb}, CPU",
                       HowToClips(corpus, FrameStore(howto_frames), CaptionTokenizer(32)), "tiny", tb, 10, "cpu", "none"))
    _, raw_frames = howto_data(args.howto_videos, args.howto_duration, codec="raw")
    rows.append(_split(f"tiny, 32 px raw, batch {tb}, CPU",
                       HowToClips(corpus, FrameStore(raw_frames), CaptionTokenizer(32)), "tiny", tb, 10, "cpu", "none"))
    if not args.no_vit:
        frames, records = _vit_frames()
        dataset = HowToClips(CaptionCorpus(records), FrameStore(frames), CaptionTokenizer(32))
        if torch.cuda.is_available() and args.device.startswith("cuda"):
            rows.append(_split("ViT-B/32, 224 px, batch 128, GPU bf16", dataset, "ViT-B-32", 128, 5, args.device,
                               "bf16"))
        rows.append(_split("ViT-B/32, 224 px, batch 4, CPU", dataset, "ViT-B-32", 4, 2, "cpu", "none"))
    return {"end_to_end": e2e, "split": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", choices=("compare", "throughput", "all"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--videos", type=int, default=120, help="retrieval synth videos (train/val/test)")
    ap.add_argument("--howto-videos", type=int, default=80)
    ap.add_argument("--howto-duration", type=float, default=40.0, help="longest howto video (s)")
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--epochs", default="3,15", help="fine-tuning budgets in epochs (the same for both arms)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--throughput-steps", type=int, default=60)
    ap.add_argument("--throughput-batch", type=int, default=32)
    ap.add_argument("--no-vit", action="store_true", help="skip the ViT-B/32 measurement")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the script")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.videos, args.howto_videos, args.howto_duration = 1, 24, 12, 20.0
        args.pretrain_steps, args.epochs, args.throughput_steps, args.no_vit, args.batch = 20, "2", 12, True, 8
        args.throughput_batch = 8
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info['cpus']} CPUs (shared with other jobs; 1-min load {info['load_1min']:.1f}), torch "
          f"{info['torch']} with {info['torch_threads']} thread(s), GPU: {info['gpu'] or 'none'}")
    suffix = "_quick" if args.quick else ""
    if args.part in ("compare", "all"):
        out = {"args": vars(args), "machine": info, **compare(args)}
        (RESULTS / f"pretrain_compare{suffix}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"written {RESULTS / f'pretrain_compare{suffix}.json'}")
    if args.part in ("throughput", "all"):
        out = {"args": vars(args), "machine": machine(), **throughput(args)}
        (RESULTS / f"pretrain_throughput{suffix}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"written {RESULTS / f'pretrain_throughput{suffix}.json'}")


if __name__ == "__main__":
    main()
