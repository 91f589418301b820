"""Warm query latency of `c4c search`: one query at a time against 100,000 moments, ViT-B/32-sized towers.

The searcher (:class:`c4c.stages.search.Searcher`) is opened once, as `c4c serve` would; each query then
costs only tokenising, the text tower and faiss (plus grouping overlapping windows into moments). The
index is ``--n`` random unit vectors of dimension 512 laid out as moments (10 overlapping windows per
video), recorded as made by zero-shot ``ViT-B-32`` with ``pretrained none`` (random weights drawn from
c4c's fixed seed, so no download; a trained ViT-B/32 costs the same). Each of ``--queries`` captions is
searched alone (k=10, group=moment) after ``--warmup`` queries, under each setting of :data:`CONFIGS`
in turn (text tower fp32 or bf16, flat or ivfflat index, 1 or 2 torch/faiss threads), so that every
setting sees the same load of a shared machine; p50/p99 are of those single-query wall times,
queries/s is their count over their total time. After each timed query its parts (tokeniser, text
tower, faiss, grouping) are timed once more. The ivfflat row shows what the index costs when it is not
a scan of all vectors (nlist 1024, nprobe 16; on random vectors its recall says nothing, see
bench_index.py for recall on clustered data).

Targets (the issue): p50 <= 40 ms, p99 <= 150 ms, >= 25 queries/s on the project's 2-core CPU.

Usage: python bench/bench_search_latency.py [--n 100000] [--queries 200] [--warmup 10]
Writes bench/results/search_latency.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"p50_ms": 40.0, "p99_ms": 150.0, "queries_per_s": 25.0}
WORDS = ("a man", "a woman", "two dogs", "a red car", "children", "a chef", "the crowd", "a cat", "a band",
         "a cyclist")
ACTIONS = ("is cooking pasta", "runs across a field", "plays the guitar on stage", "drives along a coast road",
           "jumps into a pool", "explains how to fix a bike", "scores a goal", "dances in the rain")


def queries(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{WORDS[rng.integers(len(WORDS))]} {ACTIONS[rng.integers(len(ACTIONS))]}"
            + (" at night" if rng.random() < 0.3 else "") for _ in range(n)]


def build(folder: Path, n: int, dim: int = 512) -> None:
    """An INDEX_DIR of ``n`` random unit moments (10 windows of 10 s, stride 5 s, per video) whose model
    is zero-shot ViT-B-32 / none."""
    from c4c.search.index import VectorIndex
    from c4c.search.settings import IndexSettings
    from c4c.search.moments import RowTable
    from c4c.run.source import ZERO_SHOT, ModelSource

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    per = 10
    vids = [f"video{i // per:05d}" for i in range(n)]
    start = np.array([5.0 * (i % per) for i in range(n)])
    rows = RowTable.from_rows(vids, start, start + 10.0, [f"/videos/{v}.mp4" for v in vids])
    source = ModelSource(kind=ZERO_SHOT, spec={"clip": "ViT-B-32", "pretrained": "none", "activation": "gelu",
                                               "clip_fp16": False, "sim": "meanP", "patch": "2d",
                                               "temporal_layers": 4})
    meta = {"model": source.as_dict(), "model_fingerprint": source.fingerprint, "max_words": 32, "sim": "meanP"}
    VectorIndex.from_vectors(x, rows.row_keys(), IndexSettings(kind="flat"), meta=meta, rows=rows).save(folder)


def percentile(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q))


CONFIGS = (  # (name, text precision, index kind, threads)
    ("fp32, flat, 1 thread (defaults)", "fp32", "flat", 1),
    ("fp32, flat, 2 threads", "fp32", "flat", 2),
    ("bf16 text, flat, 1 thread", "bf16", "flat", 1),
    ("bf16 text, flat, 2 threads", "bf16", "flat", 2),
    ("bf16 text, ivfflat, 1 thread", "bf16", "ivfflat", 1),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "search_latency.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import faiss
    import torch

    from c4c.atomic import write_json
    from c4c.search.index import VectorIndex
    from c4c.search.settings import IndexSettings
    from c4c.search.moments import group_hits
    from c4c.stages.search import Searcher

    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "flat"
        t0 = time.perf_counter()
        build(flat, args.n)
        built = time.perf_counter() - t0
        ivf = Path(tmp) / "ivfflat"
        base = VectorIndex.open(flat, device="cpu")
        x = base._cpu_index.reconstruct_n(0, base.count)
        VectorIndex.from_vectors(x, base.ids, IndexSettings(kind="ivfflat"), meta=base.meta, rows=base.rows).save(ivf)
        del base, x
        t0 = time.perf_counter()
        searchers = {}
        for _, precision, kind, _ in CONFIGS:
            if (precision, kind) not in searchers:
                searchers[precision, kind] = Searcher(flat if kind == "flat" else ivf, device="cpu",
                                                      precision=precision, threads=None)
        opened = (time.perf_counter() - t0) / len(searchers)
        qs = queries(args.warmup + args.queries)
        times: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
        parts: dict[str, dict[str, list[float]]] = {}
        for i, q in enumerate(qs):
            for name, precision, kind, threads in CONFIGS:  # round robin: every setting sees the same load
                searcher = searchers[precision, kind]
                searcher.threads = threads
                t = time.perf_counter()
                hits = searcher.search([q], 10)
                dt = time.perf_counter() - t
                assert len(hits[0]) == 10
                if i < args.warmup:
                    continue
                times[name].append(dt)
                # the parts of the same query, once more
                torch.set_num_threads(threads)
                faiss.omp_set_num_threads(threads)
                t = time.perf_counter()
                ids, _ = searcher.tokenizer([q])
                t1 = time.perf_counter()
                with torch.inference_mode():
                    emb = torch.nn.functional.normalize(searcher.model.encode_text(ids).float(), dim=-1).numpy()
                t2 = time.perf_counter()
                scores, rows = searcher.index.search_rows(emb, 40)  # what search() fetches for k=10
                t3 = time.perf_counter()
                group_hits(searcher.index.rows, scores[0], rows[0], 10)
                t4 = time.perf_counter()
                mine = parts.setdefault(name, {"tokenise": [], "text tower": [], "faiss": [], "grouping": []})
                for key, value in zip(mine, (t1 - t, t2 - t1, t3 - t2, t4 - t3)):
                    mine[key].append(value * 1000)
    rows_out = []
    for name, precision, kind, threads in CONFIGS:
        ms = [t * 1000 for t in times[name]]
        rows_out.append({"setting": name, "precision": precision, "kind": kind, "threads": threads,
                         "p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
                         "mean_ms": round(float(np.mean(ms)), 1), "queries_per_s": round(len(ms) / sum(times[name]), 1),
                         "parts_p50_ms": {k: round(percentile(v, 50), 2) for k, v in parts[name].items()}})
    result = {"moments": args.n, "dim": 512, "model": "zero-shot ViT-B-32 (open_clip, pretrained none)", "k": 10,
              "queries": args.queries, "settings": rows_out, "index_build_s": round(built, 1),
              "searcher_open_s": round(opened, 1), "targets": TARGETS,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
                         f"{os.getloadavg()[0]:.1f} at the end", "date": datetime.date.today().isoformat()}
    write_json(args.out, result)
    print(f"warm query latency over {args.n:,} moments, ViT-B/32 text tower, k=10, one query at a time, "
          f"settings interleaved query by query (targets: p50 <= {TARGETS['p50_ms']:g} ms, p99 <= "
          f"{TARGETS['p99_ms']:g} ms, >= {TARGETS['queries_per_s']:g} queries/s):")
    for row in rows_out:
        met = (row["p50_ms"] <= TARGETS["p50_ms"] and row["p99_ms"] <= TARGETS["p99_ms"]
               and row["queries_per_s"] >= TARGETS["queries_per_s"])
        print(f"  {row['setting']:32s} p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
              f"{row['queries_per_s']:5.1f} q/s  {'met' if met else 'not met'}   parts p50: "
              + ", ".join(f"{k} {v}" for k, v in row["parts_p50_ms"].items()))
    print(f"  (each searcher opened once, {opened:.1f} s; flat index built in {built:.1f} s)  -> {args.out}")


if __name__ == "__main__":
    main()
