"""Moment accuracy on synthetic long videos: can `c4c search` find a clip inside a minutes-long video?

Data: ``--clips`` `c4c synth` clips (4 s each: a coloured shape making one or two moves; about half come
in order-contrast pairs, a clip and its time reversal). The first ``--in-videos`` clips whose plain
caption ("a red circle moves left then up") is unique are concatenated (ffmpeg's concat demuxer, no
re-encoding) into long videos of ``--per-video`` clips (about 2 minutes each). Models: tiny CLIP
(random init) fine-tuned briefly (``--epochs``) on the clips' annotations (their train split, all
clips), meanP and seqTransf. Each long video is
indexed as moments (`c4c index LONG_VIDEOS --run RUN --window 4 --stride 1`, 2 stored frames a second,
32 px), and every clip's plain caption is a query.

Figures: recall@1 at IoU >= 0.5 (the top moment is in the clip's long video and its span overlaps the
clip's by at least half their union), also recall@5, split into the clips the model was trained on and
the held-out ones. Chance: the share of all indexed windows that would count as a hit for the query,
averaged over queries. For scale, clip R@1: the same queries against the clips as whole videos (the
plain video-retrieval task the model was trained for).

Usage: python bench/bench_search_moments.py [--clips 240] [--in-videos 90] [--per-video 30] [--epochs 30]
Writes bench/results/search_moments.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
WINDOW, STRIDE, FPS, SIZE = 4.0, 1.0, 2.0, 32


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def concatenate(files: list[Path], out: Path) -> None:
    from c4c.video.ffmpeg_bin import ffmpeg_exe

    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{f}'\n" for f in files))
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c", "copy", str(out)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=240)
    parser.add_argument("--in-videos", type=int, default=90)
    parser.add_argument("--per-video", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "search_moments.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from c4c import synth
    from c4c.atomic import write_json
    from c4c.search.moments import window_spans
    from c4c.stages import encode, extract, library, search
    from c4c.stages.finetune import FinetuneConfig, run as finetune_run
    from c4c.synth.clips import describe, load_metadata

    t_start = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cfg = synth.SynthConfig(out_dir=d / "synth", videos=args.clips, seed=7, duration=4.0, width=64, height=48)
        synth.run(cfg)
        meta = load_metadata(d / "synth" / "synth.json")
        entries = meta["videos"]
        clip_seconds = (round(cfg.duration * cfg.fps) + 1) / cfg.fps  # 41 frames at 10 fps: 4.1 s
        seen, unique = set(), []
        for e in entries:
            if describe(e) not in seen and len(unique) < args.in_videos:
                seen.add(describe(e))
                unique.append(e)
        # long videos of --per-video clips each, and where every clip lies in its long video
        long_dir = d / "long"
        long_dir.mkdir()
        truth = []  # (query, long video id, (start, end), split)
        for n, first in enumerate(range(0, len(unique), args.per_video)):
            group = unique[first:first + args.per_video]
            vid = f"long{n:02d}"
            concatenate([d / "synth" / "videos" / f"{e['video_id']}.mp4" for e in group], long_dir / f"{vid}.mp4")
            truth += [(describe(e), vid, (k * clip_seconds, (k + 1) * clip_seconds), e["split"])
                      for k, e in enumerate(group)]
        frames = d / "clips.h5"
        assert extract.run(extract.ExtractConfig(source=d / "synth" / "videos", out=frames, size=SIZE, fps=FPS)).ok
        in_videos = d / "in_videos.h5"  # the clips of the long videos alone, for the whole-clip figure
        in_dir = d / "in_videos"
        in_dir.mkdir()
        for e in unique:
            os.symlink(d / "synth" / "videos" / f"{e['video_id']}.mp4", in_dir / f"{e['video_id']}.mp4")
        assert extract.run(extract.ExtractConfig(source=in_dir, out=in_videos, size=SIZE, fps=FPS)).ok
        queries = [q for q, _, _, _ in truth]
        for sim in ("meanP", "seqTransf"):
            run = d / f"run-{sim}"
            finetune_run(FinetuneConfig(dataset="jsonl", ann=d / "synth" / "annotations.jsonl", frames=frames,
                                        out=run, clip="tiny", pretrained="none", sim=sim, epochs=args.epochs,
                                        batch_size=8, lr=2e-3, coef_lr=1.0, workers=0, select_on="last",
                                        max_frames=8, temporal_layers=2))
            lib = d / f"lib-{sim}"
            built = library.update(library.LibraryConfig(videos=long_dir, out=lib, run=run, window=WINDOW,
                                                         stride=STRIDE, fps=FPS, size=SIZE, device="cpu", workers=0))
            searcher = search.Searcher(lib, device="cpu")
            spans = {v: window_spans(float(searcher.index.rows.end[searcher.index.rows.row_video ==
                                                                  searcher.index.rows.videos.index(v)].max()),
                                     WINDOW, STRIDE) for v in searcher.index.rows.videos}
            total_windows = sum(len(s) for s in spans.values())
            hits = searcher.search(queries, 5)
            r1, r5, chance, split_of = [], [], [], []
            for (q, vid, span, split), found in zip(truth, hits):
                good = [m.video_id == vid and iou((m.start, m.end), span) >= 0.5 for m in found]
                r1.append(bool(good[:1] and good[0]))
                r5.append(any(good))
                chance.append(sum(iou(w, span) >= 0.5 for w in spans[vid]) / total_windows)
                split_of.append(split)
            # clip R@1: the same queries against the clips as whole videos
            clip_emb = encode.run(encode.EncodeConfig(frames=in_videos, out=d / f"clips-{sim}.h5", run=run,
                                                      device="cpu", workers=0))
            search.build(search.IndexConfig(emb=clip_emb.out, out=d / f"clip-index-{sim}"))
            by_caption = {describe(e): e["video_id"] for e in unique}
            clip_hits = search.Searcher(d / f"clip-index-{sim}", device="cpu").search(queries, 1)
            clip_r1 = np.mean([h[0].video_id == by_caption[q] for q, h in zip(queries, clip_hits)])
            r1a, r5a, sp = np.array(r1), np.array(r5), np.array(split_of)
            held = sp != "train"
            results[sim] = {
                "recall@1_iou0.5": round(100 * r1a.mean(), 1), "recall@5_iou0.5": round(100 * r5a.mean(), 1),
                "recall@1_trained_clips": round(100 * r1a[~held].mean(), 1),
                "recall@1_held_out_clips": round(100 * r1a[held].mean(), 1) if held.any() else None,
                "chance_recall@1": round(100 * float(np.mean(chance)), 2),
                "chance_recall@5_at_most": round(500 * float(np.mean(chance)), 2),
                "clip_r@1_whole_clips": round(100 * float(clip_r1), 1), "chance_clip_r@1": round(100 / len(unique), 2),
                "moments": built.rows, "queries": len(queries), "held_out_queries": int(held.sum()),
            }
            print(f"{sim}: recall@1 IoU>=0.5 {results[sim]['recall@1_iou0.5']:.1f}% (trained clips "
                  f"{results[sim]['recall@1_trained_clips']:.1f}%, held-out {results[sim]['recall@1_held_out_clips']}%), "
                  f"recall@5 {results[sim]['recall@5_iou0.5']:.1f}%; chance {results[sim]['chance_recall@1']:.2f}% "
                  f"(R@5 <= {results[sim]['chance_recall@5_at_most']:.2f}%); whole-clip R@1 "
                  f"{results[sim]['clip_r@1_whole_clips']:.1f}% (chance {results[sim]['chance_clip_r@1']:.2f}%)",
                  flush=True)
        long_videos = sorted({v for _, v, _, _ in truth})
    out = {"clips": args.clips, "clips_in_long_videos": len(unique), "long_videos": len(long_videos), "clips_per_long_video": args.per_video,
           "clip_seconds": clip_seconds, "window": WINDOW, "stride": STRIDE, "fps": FPS, "size": SIZE,
           "epochs": args.epochs, "models": results, "seconds": round(time.perf_counter() - t_start, 1),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "date": datetime.date.today().isoformat()}
    write_json(args.out, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
