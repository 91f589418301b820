"""How fast and how exact is each kind of `c4c index`? Build time, queries/s and recall@10 against
exact search, on N random unit vectors of DIM dimensions (default 1M x 512, CLIP ViT-B's size).

Two collections, both L2-normalised float32:

- ``iid``: directions drawn uniformly on the sphere. The hardest case for approximate search: in
  512 dimensions every vector is almost equally far from every other (the 10th neighbour of a query
  scores about 0.19, a random vector about 0), so no cell or graph structure points to the
  neighbours.
- ``clustered``: a mixture of Gaussians on the sphere, the shape of real embedding collections
  (videos of the same kind of scene sit together). ``--centres`` centres drawn uniformly on the
  sphere, cluster sizes from a Dirichlet(2) draw (uneven), and each vector is its centre plus
  isotropic noise of per-cluster length 0.8 to 1.4 times the centre's, normalised: its cosine to
  its centre is 0.58 to 0.78 and to other members 0.34 to 0.61. Within a cluster the neighbours
  are still as hard to tell apart as in the iid case.

Queries are fresh draws from the same distribution (not members of the collection). The ground
truth is :func:`c4c.search.exact.exact_topk` (NumPy brute force, independent of faiss).

Queries/s: ``VectorIndex.search`` on the whole query batch in one call (k=10), faiss on
``--threads`` threads. Each kind is timed in ``--repeats`` rounds of one flat batch followed by
the kind's batches for as long as the flat batch took, so both see the same wall-clock span of a
shared machine (a best-of-N would favour the fast kinds, whose short runs can fall in quiet
moments); queries/s = queries / seconds summed over the rounds, and the speed-up is the ratio of
the two. The target is recall@10 >= 0.95 at >= 10x the flat queries/s. Each approximate kind is
measured at its defaults (IndexSettings) and, with ``--sweep``, over its main search parameter
(``--sweep-seconds`` of searching per value, speed-up against the flat of that kind's rounds).

Run time on a 2-core machine at the default size: data and exact top-10 about 1 minute, each IVF
build 2 to 4 minutes, the timings a few minutes more: about 12 minutes for the default run (iid,
flat/ivfflat/ivfpq). An HNSW build of 1M x 512 takes 10 to 20 minutes on its own, so hnsw is
measured only when asked for (``--kinds flat,ivfflat,ivfpq,hnsw``). ``--data iid`` (the default,
the issue's benchmark) writes bench/results/index.json, ``--data clustered`` index-clustered.json
(``--out`` to change).

Usage: python bench/bench_index.py [--n 1000000] [--dim 512] [--queries 1000]
           [--kinds flat,ivfflat,ivfpq[,hnsw]] [--data iid|clustered|iid,clustered] [--threads 2]
           [--repeats 3] [--no-sweep]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from c4c.atomic import write_json
from c4c.search.exact import exact_topk, recall_at_k
from c4c.search.index import VectorIndex
from c4c.search.settings import INDEX_KINDS, IndexSettings

RESULTS = Path(__file__).resolve().parent / "results"
K = 10
TARGET_RECALL, TARGET_SPEEDUP = 0.95, 10.0
# a kind is swept over its main search parameter (the first it reads when searched), at these values
SWEEPS = {"nprobe": (4, 8, 16, 32, 64, 128), "ef_search": (16, 32, 64, 128, 256, 512)}


def unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_iid(n: int, nq: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (unit_rows(rng.standard_normal((n, dim), dtype=np.float32)),
            unit_rows(rng.standard_normal((nq, dim), dtype=np.float32)))


def make_clustered(n: int, nq: int, dim: int, seed: int, centres: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centre = unit_rows(rng.standard_normal((centres, dim), dtype=np.float32))
    weight = rng.dirichlet(np.full(centres, 2.0))
    spread = rng.uniform(0.8, 1.4, centres).astype(np.float32)  # noise length relative to the centre
    label = rng.choice(centres, size=n + nq, p=weight)
    x = np.empty((n + nq, dim), dtype=np.float32)
    for start in range(0, n + nq, 100_000):
        lab = label[start:start + 100_000]
        noise = rng.standard_normal((len(lab), dim), dtype=np.float32)
        x[start:start + len(lab)] = centre[lab] + noise * (spread[lab] / np.sqrt(dim))[:, None]
    unit_rows(x)
    return x[:n], x[n:]


def rows_of(ids: list[list[str]]) -> np.ndarray:
    return np.array([[int(v) for v in row] + [-1] * (K - len(row)) for row in ids], dtype=np.int64)


def timed_search(index: VectorIndex, q: np.ndarray) -> tuple[float, list[list[str]]]:
    t0 = time.perf_counter()
    _, ids = index.search(q, K)
    return time.perf_counter() - t0, ids


def throughput(index: VectorIndex, q: np.ndarray, min_seconds: float) -> tuple[int, float, list[list[str]]]:
    """Search the whole batch again and again for at least ``min_seconds`` (once at least):
    (queries searched, seconds spent, ids of the last batch)."""
    done, spent, ids = 0, 0.0, []
    while done == 0 or spent < min_seconds:
        seconds, ids = timed_search(index, q)
        done, spent = done + len(q), spent + seconds
    return done, spent, ids


def machine() -> dict:
    import faiss

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": mem, "python": platform.python_version(),
            "numpy": np.__version__, "faiss": faiss.__version__, "faiss_compile": faiss.get_compile_options(),
            "faiss_gpus": faiss.get_num_gpus(), "platform": platform.platform()}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def measure(name: str, x: np.ndarray, q: np.ndarray, exact: np.ndarray, kinds: list[str], args) -> dict:
    """Build each kind over ``x`` and measure it against the flat index, side by side."""
    ids = [str(i) for i in range(len(x))]
    print(f"\n[{name}] {len(x):,} x {x.shape[1]}, {len(q)} queries, k={K}; load {load()}", flush=True)
    flat = VectorIndex.from_vectors(x, ids, IndexSettings(kind="flat"))
    flat.search(q[:20], K)  # warm up
    rows = []
    sweeps = []
    for kind in kinds:
        load_before = load()
        index = flat if kind == "flat" else VectorIndex.from_vectors(x, ids, IndexSettings(kind=kind))
        build = index.manifest["build_seconds"]
        index.search(q[:20], K)
        # rounds alternate flat and this kind, and this kind searches for as long as flat took (the same
        # wall-clock span, so both see the same share of other jobs); queries/s = all queries / all seconds
        flat_done = flat_spent = done = spent = 0.0
        for _ in range(args.repeats):
            fd, fs, _ = throughput(flat, q, 0.0)
            d, sp, found = (fd, fs, _) if index is flat else throughput(index, q, fs)
            flat_done, flat_spent, done, spent = flat_done + fd, flat_spent + fs, done + d, spent + sp
        if index is flat:
            found = flat.search(q, K)[1]
        best, best_flat = spent / done * len(q), flat_spent / flat_done * len(q)  # seconds per batch
        recall = recall_at_k(rows_of(found), exact, K)
        row = {"data": name, "kind": index.kind, "settings": index.settings.describe(), "build_s": round(build, 2),
               "train_s": index.manifest["train_seconds"], "qps": round(len(q) / best, 1),
               "flat_qps": round(len(q) / best_flat, 1), "speedup": round(best_flat / best, 2),
               "recall@10": round(recall, 4), "load_before": load_before, "load_after": load()}
        row["meets_target"] = bool(row["recall@10"] >= TARGET_RECALL and row["speedup"] >= TARGET_SPEEDUP)
        rows.append(row)
        print(f"  {row['settings']:58s} build {build:7.1f} s  {row['qps']:8.1f} q/s  x{row['speedup']:5.1f} "
              f"(flat {row['flat_qps']:.1f} q/s)  recall@10 {recall:.3f}  load {load_before}->{row['load_after']}",
              flush=True)
        param = next(iter(INDEX_KINDS[kind].search), None)
        if args.sweep and param in SWEEPS:
            values = SWEEPS[param]
            default = getattr(index.settings, param)
            for value in values:
                index.set_search_params(**{param: value})
                d, sp, found = throughput(index, q, args.sweep_seconds)
                seconds = sp / d * len(q)
                point = {"data": name, "kind": kind, param: value, "qps": round(len(q) / seconds, 1),
                         "speedup": round(best_flat / seconds, 2),  # against the flat timed with this kind
                         "recall@10": round(recall_at_k(rows_of(found), exact, K), 4)}
                sweeps.append(point)
                print(f"    {param}={value:<4d} {point['qps']:8.1f} q/s  x{point['speedup']:5.1f}  "
                      f"recall@10 {point['recall@10']:.3f}", flush=True)
            index.set_search_params(**{param: default})
        if index is not flat:
            del index
            gc.collect()
    return {"rows": rows, "sweeps": sweeps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the collection")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000, help="queries, searched as one batch")
    ap.add_argument("--kinds", default="flat,ivfflat,ivfpq",
                    help=f"kinds to measure, from {','.join(INDEX_KINDS)} (flat always runs: it is the reference)")
    ap.add_argument("--data", default="iid", help="collections, comma-separated: iid, clustered")
    ap.add_argument("--centres", type=int, default=1000, help="clusters of the clustered collection")
    ap.add_argument("--threads", type=int, default=2, help="faiss (OpenMP) threads for building and searching")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per kind (flat, then the kind)")
    ap.add_argument("--sweep-seconds", type=float, default=2.0, help="seconds of searching per sweep point")
    ap.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True,
                    help="also time each approximate kind over its main search parameter")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/index.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import faiss

    kinds = args.kinds.split(",")
    if "flat" in kinds:
        kinds.remove("flat")
    kinds = ["flat"] + kinds  # flat first: the reference everything is compared with
    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    info = machine()
    print(f"faiss {info['faiss']} ({info['faiss_compile']}), {args.threads} threads; {info['cpus']} CPUs "
          f"({info['cpu']}); 1-min load average {load()}")
    if (info["cpus"] or 0) <= 2:
        print("note: shared 2-core machine; other jobs may run at the same time (the load average is "
              "printed with each row), so absolute figures are noisy; the speed-ups are measured side by side")
    results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "machine": info, "threads": args.threads, "k": K, "target": {"recall@10": TARGET_RECALL,
               "speedup": TARGET_SPEEDUP}, "query_batch": args.queries,
               "timing": "VectorIndex.search over the whole query batch in one call (k=10); --repeats rounds of "
                         "one flat batch then the kind's batches for as long as the flat batch took; "
                         "qps = queries / seconds summed over the rounds", "rows": [], "sweeps": []}
    for name in args.data.split(","):
        t0 = time.perf_counter()
        if name == "iid":
            x, q = make_iid(args.n, args.queries, args.dim, args.seed)
        elif name == "clustered":
            x, q = make_clustered(args.n, args.queries, args.dim, args.seed, args.centres)
        else:
            raise SystemExit(f"unknown --data {name!r} (clustered, iid)")
        _, exact = exact_topk(x, q, K)
        print(f"[{name}] data and exact top-{K} in {time.perf_counter() - t0:.1f} s", flush=True)
        out = measure(name, x, q, exact, kinds, args)
        results["rows"] += out["rows"]
        results["sweeps"] += out["sweeps"]
        del x, q
        gc.collect()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["load_end"] = load()

    print(f"\n{'data':10s} {'kind':8s} {'build s':>8s} {'q/s':>9s} {'x flat':>7s} {'recall@10':>9s}  target  settings")
    for r in results["rows"]:
        mark = "-" if r["kind"] == "flat" else ("yes" if r["meets_target"] else "MISS")
        print(f"{r['data']:10s} {r['kind']:8s} {r['build_s']:8.1f} {r['qps']:9.1f} {r['speedup']:7.1f} "
              f"{r['recall@10']:9.3f}  {mark:6s}  {r['settings']}")
    print(f"total {results['total_seconds']:.0f} s; target: recall@10 >= {TARGET_RECALL} at >= {TARGET_SPEEDUP:g}x "
          f"flat queries/s (batch of {args.queries} queries, {args.threads} threads)")
    default_name = "index.json" if args.data == "iid" else f"index-{args.data.replace(',', '+')}.json"
    out_path = args.out or RESULTS / default_name
    write_json(out_path, results)
    print(f"written {out_path}")


if __name__ == "__main__":
    main()
