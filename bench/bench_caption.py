"""Does the captioner learn to describe videos? On `c4c synth` data (240 videos, 6 colours x 3 shapes x
one or two motions), on CPU, in a few minutes:

1. a tiny CLIP (random init) is trained for retrieval with `c4c finetune` (seqTransf head): the
   analogue of the pretrained CLIP the paper starts from (as `bench_heads.py --init` does);
2. a caption decoder is trained on top with `c4c caption train --init` that run, with the joint loss
   (caption + 1.0 x retrieval; `--weights 1,0` adds the paper's ablation without the retrieval loss;
   `--from-scratch` skips step 1);
3. the test split is captioned with greedy and beam-5 decoding (`c4c caption generate`) and scored
   against all references of each video, next to a baseline that always outputs the most frequent
   training caption.

Printed (and written to bench/results/caption.json):

- BLEU-4, ROUGE-L and CIDEr (c4c.metrics.captions.score_captions; pycocoevalcap's Bleu/Cider directly
  if that module is missing);
- attribute accuracy read off the synthetic ground truth: the caption names the right colour, the right
  shape, and the right sequence of motions (in order: "left then up" is wrong for "up then left");
- decoding speed, captions/s of `c4c caption generate` (video encoding + decoding, 32 videos per batch).

Torch runs on one thread by default (--threads): on a shared, oversubscribed 2-core machine two
threads made a training step 7x slower (5.6 s vs 0.77 s), as each waits for the other's core.

Usage: python bench/bench_caption.py [--videos 240] [--epochs 40] [--weights 1.0] [--from-scratch]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import platform
import re
import shutil
import time
from pathlib import Path

from c4c import synth
from c4c.stages import caption, extract

WORK = Path(__file__).resolve().parent / ".work" / "caption"
RESULTS = Path(__file__).resolve().parent / "results"
MOTION_WORDS = ("left", "right", "up", "down")


def prepare(videos: int, seed: int, fps: float) -> tuple[Path, Path, Path]:
    data = WORK / f"synth-{videos}-{seed}"
    synth.run(synth.SynthConfig(out_dir=data, videos=videos, seed=seed, duration=4.0, width=64, height=48))
    frames = data / f"frames-{fps:g}fps.h5"
    if not frames.exists():
        extract.run(extract.ExtractConfig(source=data / "annotations.jsonl", dataset="jsonl",
                                          videos_dir=data / "videos", out=frames, size=32, fps=fps, codec="raw"))
    return data / "annotations.jsonl", frames, data / "synth.json"


def references(ann: Path, split: str) -> dict[str, list[str]]:
    refs: dict[str, list[str]] = collections.defaultdict(list)
    for line in ann.read_text().splitlines():
        item = json.loads(line)
        if item["split"] == split:
            refs[item["video_id"]].append(item["caption"])
    return dict(refs)


def score(hyps: dict[str, str], refs: dict[str, list[str]]) -> dict:
    try:
        from c4c.metrics.captions import score_captions
    except ImportError:  # the scoring module is not there: pycocoevalcap directly, whitespace tokens
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider

        def norm(text: str) -> str:
            return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())

        gts = {k: [norm(r) for r in refs[k]] for k in hyps}
        res = {k: [norm(hyps[k])] for k in hyps}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        return {"BLEU-4": bleu[3], "CIDEr": Cider().compute_score(gts, res)[0], "scorer": "pycocoevalcap"}
    out = score_captions(hyps, {k: refs[k] for k in hyps}, metrics=["BLEU", "ROUGE-L", "CIDEr"])
    return {k: out[k] for k in ("BLEU-4", "ROUGE-L", "CIDEr")} | {"scorer": f"score_captions ({out['tokenizer']})"}


def attributes(hyps: dict[str, str], synth_json: Path) -> dict:
    """Share of captions naming the right colour, shape and motion sequence (percent)."""
    meta = {v["video_id"]: v for v in synth.load_metadata(synth_json)["videos"]}
    colour = shape = motion = 0
    for vid, text in hyps.items():
        words = re.findall(r"[a-z]+", text.lower())
        v = meta[vid]
        colour += v["colour"] in words
        shape += v["shape"] in words
        motion += [w for w in words if w in MOTION_WORDS] == list(v["motions"])
    n = max(len(hyps), 1)
    return {"colour": 100.0 * colour / n, "shape": 100.0 * shape / n, "motions": 100.0 * motion / n}


def pretrain_retrieval(ann: Path, frames: Path, epochs: int, lr: float, batch: int) -> tuple[Path, float]:
    """Step 1: a retrieval run of the tiny CLIP (seqTransf), reused when it exists."""
    from c4c.stages.finetune import FinetuneConfig, run

    out = WORK / f"retrieval-{epochs}-{lr:g}-{batch}"
    t0 = time.perf_counter()
    if not (out / "results.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        run(FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none",
                           sim="seqTransf", temporal_layers=2, epochs=epochs, batch_size=batch, lr=lr, coef_lr=1.0,
                           warmup=0.05, max_words=24, max_frames=8, workers=0, log_every=50, keep_checkpoints=1))
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=40, help="caption training epochs")
    ap.add_argument("--retrieval-epochs", type=int, default=40, help="step 1 epochs")
    ap.add_argument("--from-scratch", action="store_true", help="no step 1: the captioner's CLIP starts random")
    ap.add_argument("--fps", type=float, default=2.0, help="frames sampled per second of the 4 s videos")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--weights", default="1.0", help="comma-separated retrieval loss weights to train")
    ap.add_argument("--alpha", type=float, default=0.6, help="length penalty of beam search")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--fresh", action="store_true", help="retrain even if finished runs exist")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    if args.fresh:
        for old in WORK.glob("retrieval-*"):
            shutil.rmtree(old)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    ann, frames, synth_json = prepare(args.videos, seed=0, fps=args.fps)
    refs = references(ann, "test")
    train_caps = [c for caps in references(ann, "train").values() for c in caps]
    top, top_count = collections.Counter(train_caps).most_common(1)[0]
    baseline_hyps = {vid: top for vid in refs}
    rows = [{"system": f"baseline: most frequent training caption ({top_count} of {len(train_caps)})",
             "caption": top, **score(baseline_hyps, refs), "attributes": attributes(baseline_hyps, synth_json)}]
    print(f"{len(refs)} test videos; most frequent training caption: {top!r} ({top_count} of {len(train_caps)})")
    init, init_seconds = None, 0.0
    if not args.from_scratch:
        init, init_seconds = pretrain_retrieval(ann, frames, args.retrieval_epochs, 1e-3, args.batch_size)
        r = json.loads((init / "results.json").read_text())
        print(f"step 1: retrieval run {init.name} in {init_seconds:.0f} s (val t2v R@1 "
              f"{r['metrics']['t2v']['R@1']:.1f})", flush=True)
    tag = "scratch" if args.from_scratch else f"init{args.retrieval_epochs}"
    for weight in [float(w) for w in args.weights.split(",")]:
        out = WORK / f"caption-{args.videos}-{args.epochs}-{args.lr:g}-{args.fps:g}-{tag}-w{weight:g}"
        cfg = caption.CaptionTrainConfig(
            dataset="jsonl", ann=ann, frames=frames, out=out, init=init, retrieval_loss_weight=weight,
            clip="tiny", pretrained="none", sim="seqTransf", temporal_layers=2, decoder_layers=2,
            freeze_layers=-1 if args.from_scratch else 0, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, coef_lr=1.0, warmup=0.05, max_words=24, max_frames=8, workers=0, log_every=50,
            keep_checkpoints=1, eval_batch_size=64)
        t0 = time.perf_counter()
        if args.fresh or not (out / "results.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            trained = caption.run(cfg)
            steps, best_epoch, val = trained.steps, trained.best_epoch, trained.best_metrics
        else:
            done = json.loads((out / "results.json").read_text())
            steps, best_epoch, val = done["steps"], done["best_epoch"], done["metrics"]
        train_seconds = time.perf_counter() - t0
        print(f"step 2: W={weight:g} trained {steps} steps in {train_seconds:.0f} s (best epoch {best_epoch}, "
              f"val token loss {val['caption_loss']:.3f})", flush=True)
        for name, beam in (("greedy", 1), ("beam 5", 5)):
            gen = caption.run(caption.GenerateConfig(run=out, frames=frames, out=out / f"test-beam{beam}.json",
                                                     dataset="jsonl", ann=ann, split="test", beam=beam, max_len=20,
                                                     alpha=args.alpha, batch_size=32, workers=0))
            rows.append({"system": f"captioner W={weight:g}, {name}", "retrieval_loss_weight": weight, "beam": beam,
                         **score(gen.captions, refs), "attributes": attributes(gen.captions, synth_json),
                         "captions_per_s": gen.captions_per_s, "train_seconds": train_seconds, "steps": steps,
                         "val_token_loss": val["caption_loss"],
                         "examples": {vid: {"generated": gen.captions[vid], "references": refs[vid]}
                                      for vid in list(gen.captions)[:4]}})
    total = time.perf_counter() - started
    print()
    print(f"{'system':52s} {'BLEU-4':>7s} {'ROUGE-L':>7s} {'CIDEr':>7s} {'colour':>7s} {'shape':>7s} "
          f"{'motions':>8s} {'capt/s':>7s}")
    for r in rows:
        a = r["attributes"]
        speed = f"{r['captions_per_s']:7.1f}" if "captions_per_s" in r else "      -"
        print(f"{r['system'][:52]:52s} {r['BLEU-4']:7.3f} {r.get('ROUGE-L', float('nan')):7.3f} {r['CIDEr']:7.3f} "
              f"{a['colour']:6.1f}% {a['shape']:6.1f}% {a['motions']:7.1f}% {speed}")
    print(f"(scores: {rows[0]['scorer']}; chance: colour 16.7%, shape 33.3%; {len(refs)} test videos; "
          f"CPU, {args.threads} torch thread(s) on a shared {os.cpu_count()}-core machine, 1-min load average "
          f"{load if load is None else round(load, 1)} at the start; whole bench {total:.0f} s)")
    for vid, e in rows[-1]["examples"].items():
        print(f"  {vid}: {e['generated']!r}   (a reference: {e['references'][0]!r})")
    (RESULTS / "caption.json").write_text(json.dumps(
        {"args": vars(args), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                         "python": platform.python_version(), "torch": torch.__version__,
                                         "threads": args.threads, "load_average_at_start": load},
         "test_videos": len(refs), "retrieval_run": None if init is None else str(init),
         "retrieval_seconds": init_seconds, "bench_seconds": total, "rows": rows}, indent=2, default=str) + "\n")
    print(f"written {RESULTS / 'caption.json'}")


if __name__ == "__main__":
    main()
