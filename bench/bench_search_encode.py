"""Moment encoding speed: image-tower frames/s of `c4c encode --window 10 --stride 5` against a bare batched
forward of the same frames, ViT-B/32 towers (open_clip ``ViT-B-32``, random weights: the cost is the same).

Data: ``--videos`` synthetic videos of ``--seconds`` seconds, 224 x 224, stored at 1 fps as JPEG (what
`c4c extract` writes by default). `c4c encode` (``encode.run``, zero-shot, ``--workers``) reads and decodes
the stored frames, puts each video's frames through the image tower once (the windows overlap two-fold),
runs the head per window and writes EMB.h5; its time runs from its ``start`` event (model built, windows
planned) to its return. The bare forward is ``CLIP4Clip.encode_frames`` on the same frames, already
decoded into memory, in the same per-video batches, right after. A round is one of each; the ratio is
the median over ``--rounds`` rounds of encode / bare frames/s (the load of a shared machine changes
within seconds: a median of back-to-back pairs is what it does not move), and the frames/s are summed
over the rounds.

Target (the issue): encode / bare >= 0.85.

Usage: python bench/bench_search_encode.py [--videos 2] [--seconds 60] [--rounds 5] [--workers 2]
Writes bench/results/search_encode.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.85


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clip", default="ViT-B-32", help="open_clip model of the towers (or tiny)")
    parser.add_argument("--out", type=Path, default=RESULTS / "search_encode.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from c4c import synth
    from c4c.atomic import write_json
    from c4c.search.source import build_zero_shot, zero_shot_spec
    from c4c.stages import encode, extract
    from c4c.video.store import FrameStore

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        synth.run(synth.SynthConfig(out_dir=d / "synth", videos=args.videos, seed=0, duration=args.seconds,
                                    width=224, height=224))
        frames = d / "frames.h5"
        assert extract.run(extract.ExtractConfig(source=d / "synth" / "videos", out=frames, size=224, fps=1.0)).ok
        model, _ = build_zero_shot(zero_shot_spec(args.clip, "none"))
        with FrameStore(frames) as store:
            decoded = [torch.from_numpy(store.read(v)) for v in store.ids()]  # uint8 [T, 224, 224, 3] each
        total = sum(len(x) for x in decoded)
        timing = {"encode": 0.0, "bare": 0.0}
        encoded_frames = 0
        ratios = []
        for r in range(args.rounds):
            mark = {}
            t_end = None
            result = encode.run(encode.EncodeConfig(frames=frames, out=d / f"emb{r}.h5", clip=args.clip,
                                                    pretrained="none", window=10.0, stride=5.0, device="cpu",
                                                    workers=args.workers, overwrite=True),
                                on_event=lambda e: mark.setdefault(e["event"], time.perf_counter()))
            t_end = time.perf_counter()
            timing["encode"] += t_end - mark["start"]
            encoded_frames += result.frames
            t0 = time.perf_counter()
            with torch.inference_mode():
                for x in decoded:
                    model.encode_frames(x[None], torch.ones(1, len(x), dtype=torch.bool))
            bare_s = time.perf_counter() - t0
            timing["bare"] += bare_s
            ratios.append((result.frames / (t_end - mark["start"])) / (total / bare_s))
            print(f"round {r + 1}: encode {result.frames / (t_end - mark['start']):.2f} frames/s, "
                  f"bare {total / bare_s:.2f} frames/s, ratio {ratios[-1]:.3f}", flush=True)
    enc = encoded_frames / timing["encode"]
    bare = total * args.rounds / timing["bare"]
    ratio = float(sorted(ratios)[len(ratios) // 2]) if len(ratios) % 2 else float(
        sum(sorted(ratios)[len(ratios) // 2 - 1:len(ratios) // 2 + 1]) / 2)
    out = {"clip": args.clip, "videos": args.videos, "seconds_per_video": args.seconds, "frames": total,
           "windows": "10 s, stride 5 s", "moments": result.rows, "workers": args.workers,
           "encode_frames_per_s": round(enc, 2), "bare_frames_per_s": round(bare, 2), "ratio": round(ratio, 3),
           "ratio_of_sums": round(enc / bare, 3), "round_ratios": [round(x, 3) for x in ratios],
           "target": TARGET, "torch_threads": torch.get_num_threads(), "rounds": args.rounds,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
                      f"{os.getloadavg()[0]:.1f}", "date": datetime.date.today().isoformat()}
    write_json(args.out, out)
    print(f"{args.clip} image tower, {total} frames ({args.videos} x {args.seconds:g} s at 1 fps), windows 10 s / 5 s "
          f"({result.rows} moments): encode {enc:.2f} frames/s vs bare forward {bare:.2f} frames/s; median ratio "
          f"{ratio:.3f} (target >= {TARGET}) {'met' if ratio >= TARGET else 'NOT met'}  -> {args.out}")


if __name__ == "__main__":
    main()
