"""Decoding the stored JPEG frames of a frame store: Pillow vs simplejpeg (vs torchvision) side by side.

The frames are those `c4c extract` stores (224 px, JPEG q95 4:4:4) from 320x240 test-pattern clips with
temporal noise (bench_extract.py's clips). Every decoder decodes the same frames, in alternating rounds,
on one thread; the table gives frames/s and the largest pixel difference from Pillow.
``--device cuda`` adds torchvision's batched nvJPEG decode on the GPU (``not measured`` without CUDA).

Usage: OMP_NUM_THREADS=1 python bench/bench_decode.py [--device cuda] [--seconds 2] [--rounds 5]
Prints a table and writes bench/results/decode.json.
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
from bench_extract import make_clips  # noqa: E402  the same clips as section (c)

from c4c.video import jpeg  # noqa: E402
from c4c.video.store import FrameStore  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "decode"
RESULTS = Path(__file__).resolve().parent / "results"
CUDA_COMMAND = "OMP_NUM_THREADS=1 python bench/bench_decode.py --device cuda"


def stored_rows(clips: int, seconds: float, fps: float) -> list[np.ndarray]:
    """The stored JPEG bytes of every frame of a fresh store (1-D uint8 arrays)."""
    videos = WORK / "videos"
    make_clips(videos, clips, seconds, "320x240")
    store = WORK / f"frames_{clips}x{seconds:g}s_{fps:g}fps.h5"
    if not store.exists():
        from c4c.stages import extract

        extract.run(extract.ExtractConfig(source=videos, out=store, fps=fps, workers=2, codec="jpeg",
                                          jpeg_quality=95))
    rows = []
    with FrameStore(store) as fs:
        if fs.settings.codec != "jpeg" or fs.settings.size != 224:
            raise SystemExit(f"{store}: expected 224 px JPEG frames, found {fs.settings.describe()}")
        for vid in fs.ids():
            ds = fs._datasets(vid)[0]
            rows.extend(ds[i] for i in range(ds.shape[0]))
    return rows


def rate(decode, rows, seconds: float) -> float:
    """Frames per second of ``decode(rows)``, repeated for at least ``seconds``."""
    n, t0 = 0, time.perf_counter()
    while True:
        decode(rows)
        n += len(rows)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: add the nvJPEG row")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--clip-seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=4.0, help="frames stored per second of video")
    ap.add_argument("--seconds", type=float, default=0.5, help="timing per decoder per round")
    ap.add_argument("--rounds", type=int, default=30, help="alternating rounds (see the table's note)")
    ap.add_argument("--batch", type=int, default=128, help="frames per decode call (one GPU batch)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    rows = stored_rows(args.clips, args.clip_seconds, args.fps)
    batches = [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)]
    ref = jpeg.decode_jpegs(rows, "pillow")

    def over_batches(fn):
        return lambda _: [fn(b) for b in batches]

    decoders = {"pillow": over_batches(lambda b: jpeg.decode_jpegs(b, "pillow"))}
    pixels = {"pillow": ref}
    skipped = {}
    if jpeg.cpu_decoder("auto") == "simplejpeg":
        decoders["simplejpeg"] = over_batches(lambda b: jpeg.decode_jpegs(b, "simplejpeg"))
        pixels["simplejpeg"] = jpeg.decode_jpegs(rows, "simplejpeg")
    else:
        skipped["simplejpeg"] = "not installed (pip install simplejpeg)"
    if jpeg.torchvision_decoder_available():
        decoders["torchvision cpu"] = over_batches(lambda b: jpeg.decode_jpegs_torch(b, "cpu"))
        pixels["torchvision cpu"] = jpeg.decode_jpegs_torch(rows, "cpu").numpy()
    else:
        skipped["torchvision cpu"] = "torchvision.io.decode_jpeg unavailable"
    cuda = args.device == "cuda" and torch.cuda.is_available() and jpeg.torchvision_decoder_available()
    if cuda:
        def gpu(_):
            for b in batches:
                jpeg.decode_jpegs_torch(b, "cuda")
            torch.cuda.synchronize()
        gpu(None)  # warm-up: nvJPEG handles and memory pools
        decoders["torchvision cuda (nvJPEG)"] = gpu
        pixels["torchvision cuda (nvJPEG)"] = jpeg.decode_jpegs_torch(rows, "cuda").cpu().numpy()
    else:
        skipped["torchvision cuda (nvJPEG)"] = f"not measured (no GPU): run `{CUDA_COMMAND}`"

    samples: dict[str, list[float]] = {k: [] for k in decoders}
    for _ in range(args.rounds):
        for name, fn in decoders.items():
            samples[name].append(rate(fn, rows, args.seconds))
    # A shared machine only ever slows a round down: the fastest round is the one-core figure, and the
    # ratio to Pillow is the median over rounds of the two measured back to back.
    table = []
    for name in decoders:
        fps = float(np.max(samples[name]))
        ratio = float(np.median(np.array(samples[name]) / np.array(samples["pillow"])))
        diff = int(np.abs(pixels[name].astype(np.int16) - ref.astype(np.int16)).max())
        table.append({"decoder": name, "frames_per_s": fps, "median_frames_per_s": float(np.median(samples[name])),
                      "vs_pillow": ratio, "max_abs_diff": diff, "samples": samples[name]})
    for name, why in skipped.items():
        table.append({"decoder": name, "frames_per_s": None, "vs_pillow": None, "max_abs_diff": None,
                      "note": why})

    print(f"{len(rows)} stored frames, 224 px JPEG q95 4:4:4, mean {np.mean([r.size for r in rows]):,.0f} bytes; "
          f"one thread, {args.rounds} alternating rounds of {args.seconds:g} s")
    print("frames/s: the fastest round (least disturbed by other work); x Pillow: median ratio of rounds back to back")
    print(f"{'decoder':28s} {'frames/s':>10s} {'median':>8s} {'x Pillow':>9s} {'max |diff|':>10s}")
    for row in table:
        if row["frames_per_s"] is None:
            print(f"{row['decoder']:28s} {row['note']}")
        else:
            print(f"{row['decoder']:28s} {row['frames_per_s']:10,.0f} {row['median_frames_per_s']:8,.0f} "
                  f"{row['vs_pillow']:9.2f} {row['max_abs_diff']:10d}")

    import PIL
    import torchvision

    versions = {"pillow": PIL.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__}
    if jpeg.cpu_decoder("auto") == "simplejpeg":
        import simplejpeg
        versions["simplejpeg"] = simplejpeg.__version__
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine(),
               "gpu": torch.cuda.get_device_name(0) if cuda else None,
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    result = {"machine": machine, "versions": versions, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "OMP_NUM_THREADS=1 python bench/bench_decode.py" + (" --device cuda" if args.device == "cuda" else ""),
              "frames": len(rows), "mean_bytes_per_frame": float(np.mean([r.size for r in rows])),
              "settings": vars(args), "decoders": table}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decode.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'decode.json'}")


if __name__ == "__main__":
    main()
