"""`c4c encode`, `c4c evaluate`, `c4c index` and `c4c search`: use a trained run for retrieval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from c4c.errors import C4CError

METRIC_COLUMNS = ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR")


def encode_cmd(
    run: Path = typer.Option(..., "--run", help="Run folder of `c4c finetune` or `c4c pretrain`."),
    frames: Path = typer.Option(..., help="FRAMES.h5 written by `c4c extract`."),
    out: Path = typer.Option(..., "--out", "-o", help="Embedding file to write (EMB.h5)."),
    dataset: Optional[str] = typer.Option(None, help="Annotation format (msrvtt, msvd, lsmdc, activitynet, didemo, "
                                                     "jsonl). Without it: every video in FRAMES, no text."),
    ann: Optional[Path] = typer.Option(None, help="Annotation file or folder (with --dataset)."),
    split: str = typer.Option("test", help="Split to encode: train, val or test."),
    msrvtt_train: str = typer.Option("9k", help="MSR-VTT training split (for --split train): 9k, 7k or full."),
    checkpoint: str = typer.Option("best", help="best, latest, or a checkpoint folder."),
    max_words: Optional[int] = typer.Option(None, help="Default: as the run was trained."),
    max_frames: Optional[int] = typer.Option(None, help="Default: as the run was trained."),
    sampling: Optional[str] = typer.Option(None, help="head, tail or uniform. Default: as the run was trained."),
    fps: Optional[float] = typer.Option(None, help="Thin stored frames to this rate. Default: as the run."),
    batch_size: int = typer.Option(64, help="Texts or videos per batch."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    amp: str = typer.Option("auto", help="auto (bf16 on GPU, none on CPU), bf16, fp16 or none."),
    workers: int = typer.Option(2, help="Data-loader processes for the videos."),
    skip_missing: bool = typer.Option(False, help="Drop annotated videos that are not in FRAMES (counted in the log)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Encode texts and videos with a trained run into EMB.h5 (resumes if interrupted).

    With --dataset/--ann: the captions and videos of one split, in evaluation order. Without: every
    video of FRAMES.h5 (your own videos, for `c4c index` and `c4c search`).

    Examples:

        c4c encode --run runs/msrvtt-meanP --frames data/msrvtt/frames.h5 --dataset msrvtt --ann data/msrvtt/msrvtt_data --out runs/msrvtt-meanP/test.emb.h5

        c4c encode --run runs/msrvtt-meanP --frames my_frames.h5 --out my_emb.h5
    """
    from c4c.cli import _print_table, _progress, _setup_logging
    from c4c.stages import encode

    _setup_logging(quiet)
    options = {"msrvtt_train": msrvtt_train} if dataset == "msrvtt" else {}
    cfg = encode.EncodeConfig(run=run, frames=frames, out=out, dataset=dataset, ann=ann, split=split,
                              dataset_options=options, checkpoint=checkpoint, max_words=max_words,
                              max_frames=max_frames, sampling=sampling, fps=fps, batch_size=batch_size,
                              device=device, amp=amp, workers=workers, skip_missing=skip_missing,
                              overwrite=overwrite)
    with _progress(quiet, "items") as progress:
        tasks: dict[str, int] = {}

        def on_event(event: dict) -> None:
            kind = event["event"]
            if kind == "start":
                if event["texts"]:
                    tasks["texts"] = progress.add_task("texts", total=event["texts"], completed=event["texts_done"])
                tasks["videos"] = progress.add_task("videos", total=event["videos"], completed=event["videos_done"])
            elif kind in tasks:
                progress.advance(tasks[kind], event["n"])

        result = encode.run(cfg, on_event=on_event)
    _print_table("c4c encode", [("output", str(result.out)), ("head", result.sim), ("videos", result.videos),
                                ("texts", result.texts), ("resumed", result.resumed),
                                ("seconds", f"{result.seconds:.1f}")])


def _metrics_table(metrics: dict, title: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("re-ranking")
    table.add_column("direction")
    for col in METRIC_COLUMNS:
        table.add_column(col, justify="right")
    rows = [("none", metrics)] + list(metrics.get("rerank", {}).items())
    for name, result in rows:
        label = name + (" (transductive)" if result.get("transductive") else "")
        for direction in ("t2v", "v2t"):
            m = result[direction]
            table.add_row(label if direction == "t2v" else "", direction, *(f"{m[c]:.1f}" for c in METRIC_COLUMNS))
    return table


def _caption_metrics_table(scores: dict, title: str):
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in scores.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    for key, reason in (scores.get("skipped") or {}).items():
        table.add_row(key, f"skipped: {reason}")
    return table


def _parse_params(pairs: list[str]) -> dict:
    """``--rerank-param dsl.temperature=1`` -> {"dsl": {"temperature": 1.0}}."""
    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise C4CError(f"--rerank-param {pair!r}: write METHOD.NAME=VALUE, e.g. dsl.temperature=1")
        try:
            number = float(value)
        except ValueError:
            raise C4CError(f"--rerank-param {pair!r}: the value must be a number") from None
        params.setdefault(method, {})[name] = int(number) if number.is_integer() and name in ("k", "iters") else number
    return params


def evaluate_cmd(
    path: Path = typer.Argument(..., help="EMB.h5 from `c4c encode`, or captions.json from `c4c caption generate`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Metrics JSON (default: metrics.json next to PATH)."),
    rerank: List[str] = typer.Option([], help="Also report re-ranked metrics: dsl, qbnorm, sinkhorn (repeatable). "
                                              "Raw metrics are always reported."),
    bank: Optional[Path] = typer.Option(None, help="EMB.h5 of the training split (same run), for --rerank qbnorm."),
    rerank_param: List[str] = typer.Option([], help="Re-ranking parameter METHOD.NAME=VALUE, e.g. dsl.temperature=1."),
    run: Optional[Path] = typer.Option(None, help="tightTransf: the run folder (default: the one EMB.h5 names)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N (tightTransf scoring)."),
    chunk: int = typer.Option(2048, help="Rows scored at once; memory is about chunk x N x 4 bytes."),
    ties: str = typer.Option("reference", help="Tie policy: reference, optimistic, pessimistic or mean."),
    dataset: Optional[str] = typer.Option(None, help="Captions: the annotation format of the references."),
    ann: Optional[Path] = typer.Option(None, help="Captions: the annotation file or folder with the references."),
    split: str = typer.Option("test", help="Captions: the split whose captions are the references."),
    msrvtt_train: str = typer.Option("9k", help="Captions on MSR-VTT: 9k, 7k, or full (the 6,513/497/2,990 "
                                                "captioning split)."),
    tokenize: str = typer.Option("ptb", help="Captions: ptb (Stanford PTB, Java), simple (pure Python) or none "
                                             "(white space, as UniVL)."),
    allow_missing: bool = typer.Option(False, help="Captions: score only the videos that have a caption."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score retrieval (EMB.h5) or captions (captions.json); print a table, write metrics JSON.

    Retrieval: text-to-video and video-to-text R@1/5/10/50, MdR, MnR with the reference's
    definitions (multi-sentence protocol when videos have several captions). --rerank adds re-ranked
    rows: dsl and sinkhorn are transductive (they look at all test queries at once) and labelled so;
    qbnorm uses a bank of training captions and works one query at a time.

    Captions: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, PTB tokenizer) against every
    reference caption of each video.

    Examples:

        c4c evaluate runs/msrvtt-meanP/test.emb.h5

        c4c evaluate test.emb.h5 --rerank dsl --rerank qbnorm --bank train.emb.h5

        c4c evaluate runs/cap/captions.json --dataset msrvtt --ann data/msrvtt/msrvtt_data
    """
    from c4c.cli import _console, _progress, _setup_logging

    _setup_logging(quiet)
    if path.suffix.lower() == ".json":
        options = {"msrvtt_train": msrvtt_train} if dataset == "msrvtt" else {}
        _evaluate_captions(path, out, dataset, ann, split, tokenize, allow_missing, options)
        return
    from c4c.stages import evaluate

    cfg = evaluate.EvaluateConfig(emb=path, out=out, rerank=list(rerank), bank=bank,
                                  rerank_params=_parse_params(rerank_param), run=run, device=device, chunk=chunk,
                                  ties=ties)
    with _progress(quiet, "pairs") as progress:
        task = None

        def on_event(event: dict) -> None:
            nonlocal task
            if event["event"] == "pairs":
                task = progress.add_task("cross-encoder scores", total=event["total"])
            elif event["event"] == "pairs_done" and task is not None:
                progress.advance(task, event["n"])

        result = evaluate.run(cfg, on_event=on_event)
    m = result.metrics
    title = f"{m['sim']} on {m.get('dataset') or 'data'} {m.get('split') or ''}: {m['texts']} texts x " \
            f"{m['videos']} videos ({m['protocol']})"
    _console().print(_metrics_table(m, title))
    _console().print(f"metrics written to {result.out}")


def _evaluate_captions(path: Path, out: Optional[Path], dataset: Optional[str], ann: Optional[Path],
                       split: str, tokenize: str, allow_missing: bool, options: dict) -> None:
    import os

    from c4c.cli import _console
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.metrics.captions import load_captions_json, references_from_records, score_captions

    if dataset is None or ann is None:
        raise C4CError("scoring captions needs --dataset and --ann (the reference captions)")
    hypotheses = load_captions_json(path)
    references = references_from_records(split_records(read_annotations(dataset, ann, **options), split))
    scores = score_captions(hypotheses, references, tokenize=tokenize, allow_missing=allow_missing)
    result = {"format": "c4c-caption-metrics", "format_version": 1, "scores": scores, "captions": str(path.resolve()), "dataset": dataset, "ann": str(ann),
              "split": split, "videos": len(hypotheses)}
    target = out or path.with_name(path.stem + ".metrics.json")
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    _console().print(_caption_metrics_table(scores, f"captions: {len(hypotheses)} videos ({split}), "
                                                    f"{scores.get('tokenizer')} tokens, pycocoevalcap scale 0-1"))
    for warning in scores.get("warnings") or []:
        _console(stderr=True).print(f"[yellow]warning:[/] {warning}")
    _console().print(f"metrics written to {target}")


def index_cmd(
    emb: Path = typer.Argument(..., help="EMB.h5 from `c4c encode` (a meanP, seqLSTM or seqTransf run)."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to write."),
    kind: str = typer.Option("flat", help="flat (exact inner product), or an approximate kind for large "
                                          "collections: ivfpq, hnsw (see data/README.md)."),
    param: List[str] = typer.Option([], help="Index parameter NAME=VALUE, e.g. nprobe=32 or ef_search=128."),
    overwrite: bool = typer.Option(False, help="Replace an existing index folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Fewer log lines."),
) -> None:
    """Build a faiss index of the video embeddings in EMB.h5, for `c4c search`.

    The index remembers the run that encoded the videos, so `c4c search` encodes queries with the
    same text tower. With faiss-gpu and a GPU, flat and IVF indexes are searched on the GPU.

    Examples:

        c4c index my_emb.h5 --out my_index

        c4c index big_emb.h5 --out big_index --kind hnsw --param ef_search=128
    """
    from c4c.cli import _print_table, _setup_logging
    from c4c.stages import search

    _setup_logging(quiet)
    params = {}
    for pair in param:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise C4CError(f"--param {pair!r}: write NAME=VALUE, e.g. nprobe=32")
        params[name.replace("-", "_")] = _number(value, pair)
    result = search.build(search.IndexConfig(emb=emb, out=out, kind=kind, params=params, overwrite=overwrite))
    _print_table("c4c index", [("index", str(result.out)), ("kind", result.kind), ("videos", result.count),
                               ("dimension", result.dim), ("seconds", f"{result.seconds:.2f}")])


def _number(value: str, pair: str):
    try:
        number = float(value)
    except ValueError:
        raise C4CError(f"{pair!r}: the value must be a number") from None
    return int(number) if number.is_integer() else number


def search_cmd(
    index: Path = typer.Argument(..., help="Index folder from `c4c index`."),
    queries: List[str] = typer.Argument(..., help="One or more text queries."),
    k: int = typer.Option(10, "-k", "--top", help="Videos returned per query."),
    run: Optional[Path] = typer.Option(None, help="Run whose text tower encodes the query (default: the index's)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    quiet: bool = typer.Option(True, "--quiet/--verbose", "-q", help="Log lines while loading."),
) -> None:
    """Find the videos that best match a text query (cosine similarity of the run's embeddings).

    Examples:

        c4c search my_index "a man is cooking pasta" -k 5

        c4c search my_index "a red circle moves left" "a dog runs" --json
    """
    from c4c.cli import _console, _setup_logging
    from c4c.stages import search

    _setup_logging(quiet)
    searcher = search.TextSearcher(index, run=run, device=device)
    results = searcher.search(list(queries), k)
    if as_json:
        payload = [{"query": q, "results": [{"rank": h.rank, "video_id": h.video_id, "score": round(h.score, 6)}
                                            for h in hits]} for q, hits in zip(queries, results)]
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    for query, hits in zip(queries, results):
        table = Table(title=f"\"{query}\"")
        table.add_column("rank", justify="right")
        table.add_column("video_id")
        table.add_column("score", justify="right")
        for h in hits:
            table.add_row(str(h.rank), h.video_id, f"{h.score:.4f}")
        _console().print(table)


def register(app: typer.Typer) -> None:
    """Add encode, evaluate, index and search to the `c4c` app."""
    app.command("encode")(encode_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("index")(index_cmd)
    app.command("search")(search_cmd)
