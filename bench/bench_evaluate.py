"""Seconds and peak memory of `c4c evaluate` on 1k, 10k and 50k texts x videos (and tightTransf 1k x 1k).

Each size gets an EMB.h5 of random unit vectors (one caption per video, 512-d like ViT-B/32), and
each evaluation runs in a fresh process so its peak resident memory (ru_maxrss) is its own. The
full similarity matrix the scores are never held in is printed beside it (N x N x 4 bytes). The
tightTransf case uses the tiny CLIP's cross encoder (4 layers, width 32; the weights do not matter
for time or memory), with 12 frame features per video.

    python bench/bench_evaluate.py                 # 1k, 10k, 50k + tight 1k
    python bench/bench_evaluate.py --sizes 1000 --tight 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work" / "evaluate"
RESULTS = ROOT / "results" / "evaluate.json"


def write_emb(path: Path, n: int, dim: int, *, tight_frames: int = 0, run: Path | None = None, seed: int = 0) -> None:
    from c4c.data.embeddings import EmbeddingWriter, Layout

    rng = np.random.default_rng(seed)
    layout = Layout(video_ids=[f"v{i:06d}" for i in range(n)], captions=[f"caption {i}" for i in range(n)],
                    video_index=np.arange(n), dim=dim, loose=not tight_frames, max_frames=tight_frames or 1,
                    attrs={"sim": "tightTransf" if tight_frames else "meanP", "logit_scale": 100.0,
                           "run": str(run or ""), "checkpoint": str(run / "best") if run else "",
                           "dataset": "random", "split": "test"})
    path.unlink(missing_ok=True)
    writer = EmbeddingWriter(path, layout, fingerprint=f"bench-{n}-{dim}-{tight_frames}")
    block = 4096
    for a in range(0, n, block):
        b = min(a + block, n)
        t = rng.normal(size=(b - a, dim)).astype(np.float32)
        writer.write_texts(a, t / np.linalg.norm(t, axis=1, keepdims=True))
        if tight_frames:
            writer.write_videos(a, rng.normal(size=(b - a, tight_frames, dim)).astype(np.float32),
                                np.ones((b - a, tight_frames), bool))
        else:
            # each video is its caption plus noise, so the ranks are spread out like a real run's
            v = t + rng.normal(scale=5.0, size=t.shape).astype(np.float32)
            writer.write_videos(a, v / np.linalg.norm(v, axis=1, keepdims=True))
    writer.finish()


def tiny_tight_run(folder: Path) -> Path:
    """A run folder holding a randomly initialised tiny tightTransf model."""
    from c4c.model.backbone import build_clip
    from c4c.model.clip4clip import CLIP4Clip
    from c4c.run import checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    clip, _ = build_clip("tiny", "none")
    model = CLIP4Clip(clip, sim="tightTransf", temporal_layers=4)
    checkpoint.save(folder / "best", model.state_dict(), None, {"step": 0})
    (folder / "config.json").write_text(json.dumps({"sim": "tightTransf", "clip": "tiny", "temporal_layers": 4}))
    return folder


def measure(emb: Path, out: Path) -> dict:
    """Run `c4c evaluate` in a child process; its wall seconds and peak RSS."""
    code = ("import sys; from pathlib import Path; from c4c.stages import evaluate; "
            "evaluate.run(evaluate.EvaluateConfig(emb=Path(sys.argv[1]), out=Path(sys.argv[2]), device='cpu'))")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(emb), str(out)])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"evaluate failed on {emb} (status {status})")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "metrics": json.loads(out.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--tight", type=int, default=1000, help="tightTransf texts = videos (0: skip)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        emb = WORK / f"emb-{n}.h5"
        write_emb(emb, n, args.dim)
        r = measure(emb, WORK / f"metrics-{n}.json")
        rows.append({"case": f"loose {n} x {n}, {args.dim}-d", "n": n, "seconds": r["seconds"],
                     "peak_rss_mb": r["peak_rss_mb"], "full_matrix_mb": round(n * n * 4 / 2**20, 1),
                     "t2v_R@1": round(r["metrics"]["t2v"]["R@1"], 2)})
        print(rows[-1], flush=True)
    if args.tight:
        run = tiny_tight_run(WORK / "tight-run")
        emb = WORK / f"emb-tight-{args.tight}.h5"
        write_emb(emb, args.tight, 32, tight_frames=12, run=run)
        r = measure(emb, WORK / "metrics-tight.json")
        rows.append({"case": f"tightTransf {args.tight} x {args.tight} (tiny, 12 frames)", "n": args.tight,
                     "seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                     "full_matrix_mb": round(args.tight ** 2 * 4 / 2**20, 1),
                     "t2v_R@1": round(r["metrics"]["t2v"]["R@1"], 2)})
        print(rows[-1], flush=True)
    import torch

    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'case':<44}{'seconds':>10}{'peak RSS MB':>14}{'N x N x 4 MB':>14}")
    for row in rows:
        print(f"{row['case']:<44}{row['seconds']:>10.2f}{row['peak_rss_mb']:>14.1f}{row['full_matrix_mb']:>14.1f}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
