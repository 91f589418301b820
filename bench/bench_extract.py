"""Benchmarks for `c4c extract` and the frame store, measured side by side in one run.

(a) extraction throughput vs plain ffmpeg decoding (`ffmpeg -i X -f null -`) of the same files with
    the same number of processes, on the synthetic set, 720p clips and MSR-VTT-like 320x240 clips; also
    against plain ffmpeg told c4c's decoder thread count, and where the CPU time goes (ffmpeg's and
    c4c's own, per video) and how much of the wall time cores sat idle;
(b) reading the 12 frames of a training item from FRAMES.h5 (to a normalised float tensor) vs
    producing the same item the way the reference loader does (OpenCV seek + decode one frame per
    second, PIL bicubic resize and centre crop, normalise, uniform choice of 12);
(c) raw vs JPEG storage: bytes per frame and frames/s when reading back random videos.

Usage: python bench/bench_extract.py [--workers 2] [--repeats 5] [--quick] [--only-throughput]
Prints tables and writes bench/results/extract.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from c4c import synth
from c4c.atomic import atomic_path
from c4c.choices import CLIP_MEAN, CLIP_STD
from c4c.stages import extract
from c4c.video.ffmpeg_bin import ffmpeg_exe
from c4c.video.store import FrameStore
from c4c.video.workers import usable_cpus

WORK = Path(__file__).resolve().parent / ".work"
RESULTS = Path(__file__).resolve().parent / "results"
MEAN = np.array(CLIP_MEAN, np.float32)
STD = np.array(CLIP_STD, np.float32)


def make_clips(folder: Path, n: int, seconds: float, size: str, rate: str = "30") -> list[Path]:
    """n distinct test-pattern clips (moving pattern plus temporal noise, so decoding costs what real video costs)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"clip{i:03d}.mp4"
        if not p.exists():
            with atomic_path(p) as tmp:
                subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                                f"testsrc2=size={size}:rate={rate},noise=alls=12:allf=t+u:all_seed={i}",
                                "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                                "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)], check=True)
        paths.append(p)
    return paths


def ffmpeg_null_decode(paths: list[Path], workers: int, threads: int | None = None) -> float:
    """Seconds to decode every file with plain ffmpeg, `workers` processes at once (`threads`: its
    `-threads` option; None: ffmpeg's own choice)."""
    thread_args = [] if threads is None else ["-threads", str(threads)]

    def one(p: Path) -> None:
        subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *thread_args, "-i", str(p),
                        "-f", "null", "-"], check=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, paths))
    return time.perf_counter() - t0


def c4c_extract(folder: Path, out: Path, workers: int, codec: str = "jpeg", expected: int | None = None) -> float:
    for p in out.parent.glob(out.name + "*"):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    t0 = time.perf_counter()
    result = extract.run(extract.ExtractConfig(source=folder, out=out, workers=workers, codec=codec))
    seconds = time.perf_counter() - t0
    if result.failed:
        raise SystemExit(f"extraction failed: {result.failed[:3]}")
    if expected is not None and result.done != expected:
        raise SystemExit(f"{folder} holds {result.done} videos, not the {expected} measured: remove the others")
    return seconds


THROUGHPUT_LABELS = {
    "ffmpeg_null_videos_per_s": "ffmpeg null v/s", "c4c_extract_videos_per_s": "c4c v/s",
    "ratio_same_threads": "ratio, same threads", "decoder_threads": "threads",
    "ms_cpu_per_video_plain_ffmpeg": "plain ffmpeg", "ms_cpu_per_video_same_threads": "same threads",
    "ms_cpu_per_video_c4c_ffmpeg": "c4c: ffmpeg", "ms_cpu_per_video_c4c_python": "c4c: python",
    "idle_core_share_c4c": "idle c4c", "idle_core_share_plain": "idle plain"}


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def measured(fn) -> dict:
    """Wall seconds of ``fn()`` and the CPU seconds it took in this process and in ffmpeg."""
    me0, kids0 = cpu_seconds()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    me1, kids1 = cpu_seconds()
    return {"wall": wall, "python_cpu": me1 - me0, "ffmpeg_cpu": kids1 - kids0}


def throughput(name: str, folder: Path, paths: list[Path], workers: int, repeats: int) -> dict:
    """The three runs interleaved ``repeats`` times, so load changes hit every side; the fastest of each."""
    threads = max(1, usable_cpus() // workers)  # what c4c gives each ffmpeg process while all are busy
    runs: dict[str, list[dict]] = {"plain": [], "matched": [], "c4c": []}
    n = len(paths)
    for _ in range(repeats):
        runs["plain"].append(measured(lambda: ffmpeg_null_decode(paths, workers)))
        runs["matched"].append(measured(lambda: ffmpeg_null_decode(paths, workers, threads)))
        runs["c4c"].append(measured(lambda: c4c_extract(folder, WORK / "throughput.h5", workers, expected=n)))
    best = {k: min(v, key=lambda r: r["wall"]) for k, v in runs.items()}
    cpus = usable_cpus()
    ours = best["c4c"]
    return {"set": name, "videos": n, "workers": workers,
            "ffmpeg_null_videos_per_s": n / best["plain"]["wall"], "c4c_extract_videos_per_s": n / ours["wall"],
            "ratio": best["plain"]["wall"] / ours["wall"],
            "ratio_same_threads": best["matched"]["wall"] / ours["wall"], "decoder_threads": threads,
            "ms_cpu_per_video_plain_ffmpeg": 1000 * best["plain"]["ffmpeg_cpu"] / n,
            "ms_cpu_per_video_same_threads": 1000 * best["matched"]["ffmpeg_cpu"] / n,
            "ms_cpu_per_video_c4c_ffmpeg": 1000 * ours["ffmpeg_cpu"] / n,
            "ms_cpu_per_video_c4c_python": 1000 * ours["python_cpu"] / n,
            "idle_core_share_c4c": max(0.0, 1 - (ours["ffmpeg_cpu"] + ours["python_cpu"]) / (cpus * ours["wall"])),
            "idle_core_share_plain": max(0.0, 1 - best["plain"]["ffmpeg_cpu"] / (cpus * best["plain"]["wall"]))}


# --- (b) the reference-style loader, written from the behaviour described in the spec ---

def reference_item(path: Path, max_frames: int = 12, size: int = 224):
    """One training item as the reference loader makes it: [12, 3, 224, 224] float32 (torch)."""
    import cv2
    import torch
    from PIL import Image

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = int(cap.get(cv2.CAP_PROP_FPS))
    seconds = (n + fps - 1) // fps
    frames = []
    for k in range(0, seconds + 1):  # inclusive last second; stop at the first failed read
        cap.set(cv2.CAP_PROP_POS_FRAMES, k * fps)
        ok, bgr = cap.read()
        if not ok:
            break
        img = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, int(w * scale)), max(size, int(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        frames.append(torch.from_numpy(((arr - MEAN) / STD).transpose(2, 0, 1)))
    cap.release()
    video = torch.stack(frames)
    if len(video) > max_frames:
        video = video[np.linspace(0, len(video) - 1, num=max_frames, dtype=int)]
    return video


def store_item(fs: FrameStore, video_id: str, max_frames: int = 12):
    """The same item from FRAMES.h5: uniform choice of 12 stored frames, normalised as the model does it
    (one multiply-add per value: ``x / (255 std) - mean / std``), float32 ``[12, 3, 224, 224]``."""
    import torch

    t = fs.num_frames(video_id)
    idx = np.linspace(0, t - 1, num=min(t, max_frames), dtype=int)
    scale = torch.from_numpy(1.0 / (255.0 * STD)).view(1, 3, 1, 1)
    shift = torch.from_numpy(MEAN / STD).view(1, 3, 1, 1)
    x = torch.from_numpy(fs.read(video_id, idx)).permute(0, 3, 1, 2)
    return x.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale).sub_(shift)


def read_back(paths: list[Path], folder: Path, repeats: int) -> dict:
    ids = [p.stem for p in paths]
    ref = []
    for p in paths[: min(len(paths), 4)]:
        t0 = time.perf_counter()
        item = reference_item(p)
        ref.append(time.perf_counter() - t0)
    out = {"reference_s_per_item": float(np.median(ref)), "reference_frames": int(item.shape[0])}
    for codec in ("raw", "jpeg"):
        h5 = WORK / f"readback_{codec}.h5"
        if not h5.exists():
            c4c_extract(folder, h5, workers=2, codec=codec)
        times = []
        with FrameStore(h5) as fs:
            for _ in range(repeats):
                for vid in ids:
                    t0 = time.perf_counter()
                    store_item(fs, vid)
                    times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        out[f"{codec}_s_per_item"] = med
        out[f"{codec}_speedup"] = out["reference_s_per_item"] / med
    return out


def storage(folder: Path, workers: int, batch_videos: int = 32) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for codec in ("raw", "jpeg"):
        h5 = WORK / f"storage_{codec}.h5"
        c4c_extract(folder, h5, workers=workers, codec=codec)
        with FrameStore(h5) as fs:
            ids = fs.ids()
            frames = sum(fs.num_frames(v) for v in ids)
            size = h5.stat().st_size
            pick = rng.choice(ids, size=min(batch_videos, len(ids)), replace=False)
            t0 = time.perf_counter()
            n = sum(len(fs.read(v)) for v in pick)
            dt = time.perf_counter() - t0
        rows.append({"codec": codec, "bytes_per_frame": size / frames, "file_bytes": size,
                     "read_frames_per_s": n / dt})
    return rows


def table(title: str, rows: list[dict], labels: dict[str, str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for key in rows[0]:
        t.add_column((labels or {}).get(key, key))
    for row in rows:
        t.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()])
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer and shorter clips (a smoke run)")
    ap.add_argument("--only-throughput", action="store_true", help="only (a); writes extract_throughput.json")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": platform.python_version(),
               "machine": platform.machine()}
    print(f"machine: {machine}")

    synth_dir = WORK / ("synth_quick" if args.quick else "synth")
    n_synth = 16 if args.quick else 48
    synth.run(synth.SynthConfig(out_dir=synth_dir, videos=n_synth, seed=0))
    synth_paths = sorted((synth_dir / "videos").glob("*.mp4"))
    hd_dir = WORK / ("hd_quick" if args.quick else "hd")
    hd_paths = make_clips(hd_dir, 4 if args.quick else 8, 5 if args.quick else 20, "1280x720")
    msr_dir = WORK / ("msrvtt_like_quick" if args.quick else "msrvtt_like")
    msr_paths = make_clips(msr_dir, 4 if args.quick else 12, 20, "320x240")

    rows = [throughput("synthetic 128x96", synth_dir / "videos", synth_paths, args.workers, args.repeats),
            throughput("720p 30fps", hd_dir, hd_paths, args.workers, args.repeats),
            throughput("320x240 30fps 20s", msr_dir, msr_paths, args.workers, args.repeats)]
    table("(a) extraction throughput vs plain ffmpeg decoding (target ratio >= 0.90)",
          [{k: v for k, v in r.items() if not k.startswith(("ms_", "idle_"))} for r in rows], THROUGHPUT_LABELS)
    table("(a) where the time goes: CPU ms per video, and the share of core-seconds left idle",
          [{k: v for k, v in r.items() if k == "set" or k.startswith(("ms_", "idle_"))} for r in rows],
          THROUGHPUT_LABELS)
    if args.only_throughput:
        name = "extract_throughput_quick.json" if args.quick else "extract_throughput.json"
        write_result(name, {"machine": machine, "throughput": rows})
        return

    rb = read_back(msr_paths, msr_dir, args.repeats)
    table("(b) one training item (12 frames, 224 px, normalised) vs the reference loader (target >= 50x)", [rb])

    st = storage(msr_dir, args.workers)
    table("(c) frame storage (320x240 20 s clips at 1 fps, 224 px)", st)

    result = {"machine": machine, "throughput": rows, "read_back": rb, "storage": st,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_result("extract_quick.json" if args.quick else "extract.json", result)


def write_result(name: str, result: dict) -> None:
    result.setdefault("when", time.strftime("%Y-%m-%d %H:%M:%S"))
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS / name}")


if __name__ == "__main__":
    sys.exit(main())
