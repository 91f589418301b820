"""What the reference frame reader costs, side by side with c4c's, in one run.

Three ways to turn a video into 224x224 RGB frames at 1 fps, each on the same files:

* ``c4c``: today's default (frames at true times, ffmpeg bicubic scaling in YUV, long side rounded up);
* ``reference``: ``reader="reference"`` (frame numbers k * int(fps), RGB at native size, PIL bicubic
  with the long side truncated, torchvision's centre crop: the reference's pixels);
* ``c4c-rgb-trunc``: the c4c path changed only in its scaling: convert to RGB first, then ffmpeg
  bicubic with the long side truncated (a candidate default; not in the library).

For each: wall and CPU seconds per video (ours + ffmpeg's; medians of ``--repeats``; ffmpeg with one
thread, so CPU time is the fairer figure on a shared machine) and the mean
absolute difference to the reference's pixels in 8-bit levels (one level is 1/255). The
pixel difference is measured at 30 fps, where every reader takes the same frames (0, 30, 60, ...),
so it is the pixel pipeline alone; at 29.97 fps the c4c readers also take other frames (0, 30, 60
vs 0, 29, 58), which the second difference column includes.

Usage: python bench/bench_reader.py [--seconds 10] [--repeats 3]
Prints a table and writes bench/results/reader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from c4c.video import decode
from c4c.video.ffmpeg_bin import ffmpeg_exe

WORK = Path(__file__).resolve().parent / ".work" / "reader"
RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 224


def make_video(path: Path, size: str, rate: str, seconds: float, smooth: bool) -> Path:
    """A compressed test video (libx264 crf 23, yuv420p); ``smooth`` blurs the test pattern so it is
    closer to camera footage than testsrc2's hard edges."""
    if path.exists():
        return path
    vf = ["-vf", "gblur=sigma=3"] if smooth else []
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds), *vf, "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def rgb_trunc_sample(path: Path, threads: int = 1) -> np.ndarray:
    """The c4c sampling (true times) with RGB scaling and a truncated long side."""
    import ffmpeg

    f = 1.0
    select = f"if(gte(t,ld(0)),st(0,(floor(t*{f!r}+1e-6)+1)/{f!r}),0)"
    stream = (ffmpeg.input(str(path), threads=threads).video.filter("select", select)
              .filter("format", "rgb24")
              .filter("scale", w=f"if(lte(iw,ih),{SIZE},trunc({SIZE}*iw/ih))",
                      h=f"if(lte(iw,ih),trunc({SIZE}*ih/iw),{SIZE})", flags="bicubic")
              .filter("crop", SIZE, SIZE).filter("setsar", 1)
              .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough"))
    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", *ffmpeg.get_args(stream)],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, SIZE, SIZE, 3)


ARMS = {
    "c4c": lambda p: decode.sample_video(p, fps=1, size=SIZE, threads=1).frames,
    "reference": lambda p: decode.sample_video(p, fps=1, size=SIZE, threads=1, reader="reference").frames,
    "c4c-rgb-trunc": rgb_trunc_sample,
}


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, path: Path, repeats: int) -> tuple[float, float, np.ndarray]:
    """Median wall seconds and median CPU seconds (ours + ffmpeg's) of ``fn(path)``."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), _cpu()
        out = fn(path)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return float(np.median(walls)), float(np.median(cpus)), out


def mad(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.abs(a[:n].astype(np.float64) - b[:n].astype(np.float64)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in ("320x240", "640x360", "1280x720"):
        for smooth in (False, True):
            kind = "smooth" if smooth else "sharp"
            v30 = make_video(WORK / f"{size}-{kind}-30.mp4", size, "30", args.seconds, smooth)
            v2997 = make_video(WORK / f"{size}-{kind}-2997.mp4", size, "30000/1001", args.seconds, smooth)
            ref30, ref2997 = ARMS["reference"](v30), ARMS["reference"](v2997)
            for arm, fn in ARMS.items():
                seconds, cpu, frames = timed(fn, v2997, args.repeats)
                same = fn(v30)
                rows.append({"video": f"{size} {kind}", "arm": arm, "s_per_video": seconds, "cpu_s_per_video": cpu,
                             "frames": int(len(frames)), "mad_same_frames": mad(same, ref30),
                             "mad_as_sampled_2997": mad(frames, ref2997)})
    base = {r["video"]: r for r in rows if r["arm"] == "c4c"}
    print(f"{'video':<18}{'reader':<15}{'wall s':>8}{'x c4c':>7}{'CPU s':>8}{'x c4c':>7}{'MAD same frames':>17}"
          f"{'MAD 29.97':>11}   (MAD in 8-bit levels = units of 1/255)")
    for r in rows:
        r["x_c4c"] = r["s_per_video"] / base[r["video"]]["s_per_video"]
        r["cpu_x_c4c"] = r["cpu_s_per_video"] / base[r["video"]]["cpu_s_per_video"]
        print(f"{r['video']:<18}{r['arm']:<15}{r['s_per_video']:>8.3f}{r['x_c4c']:>7.2f}{r['cpu_s_per_video']:>8.3f}"
              f"{r['cpu_x_c4c']:>7.2f}{r['mad_same_frames']:>17.3f}{r['mad_as_sampled_2997']:>11.2f}")
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
               "ffmpeg": subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout.split("\n")[0]}
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": machine, "seconds_per_clip": args.seconds, "repeats": args.repeats, "rows": rows,
           "note": "MAD in 8-bit levels; one level = 1/255. ffmpeg threads=1. 'same frames' at 30 fps."}
    (RESULTS / "reader.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
