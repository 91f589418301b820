"""`c4c encode`, `c4c evaluate`, `c4c index` and `c4c search`: use a trained run."""

import json
from pathlib import Path
from typing import Annotated, List

import typer

from c4c import choices, option_rules
from c4c.cli import options as opt
from c4c.cli import ui
from c4c.options import Hardware, QueryModel, Replaces, check_config, option_fields
from c4c.stages.encode import EncodeConfig
from c4c.stages.evaluate_config import EvaluateConfig
from c4c.stages.library import LibraryConfig
from c4c.stages.score_captions import ScoreConfig

METRIC_COLUMNS = ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR")


@opt.from_config(EncodeConfig, opt.ReaderFlags)
def encode_cmd(quiet: opt.Quiet = False, **settings) -> None:
    """Encode texts and videos with a trained run, or zero-shot CLIP, into EMB.h5 (resumes if interrupted).

    With --dataset/--ann: the captions and videos of one split, in evaluation order (`c4c evaluate`
    scores it). Without: every video of FRAMES.h5, one row per video, or with --window one row per
    window (moments), for `c4c index` and `c4c search`. --clip instead of --run: CLIP4Clip's meanP
    at initialisation, i.e. zero-shot CLIP over the video's frames (no training); zero-shot uses 12
    frames and 32 tokens unless told otherwise.

    Examples:

        c4c encode --run runs/msrvtt-meanP --frames data/msrvtt/frames.h5 --dataset msrvtt --ann data/msrvtt/msrvtt_data --out runs/msrvtt-meanP/test.emb.h5

        c4c encode --clip ViT-B-32 --pretrained openai --frames data/msrvtt/frames.h5 --dataset msrvtt --ann data/msrvtt/msrvtt_data --out zeroshot.emb.h5

        c4c encode --run runs/msrvtt-meanP --frames my_frames.h5 --window 10 --stride 5 --out my_moments.h5
    """
    from c4c.stages import encode

    ui.setup_logging(quiet)
    cfg = encode.EncodeConfig(dataset_options=opt.reader_options(settings), **settings)
    check_config(cfg)  # before the progress bar and the model
    with ui.progress(quiet, "items") as bar:
        tasks: dict[str, int] = {}

        def on_event(event: dict) -> None:
            kind = event["event"]
            if kind == "start":
                if event["texts"]:
                    tasks["texts"] = bar.add_task("texts", total=event["texts"], completed=event["texts_done"])
                tasks["videos"] = bar.add_task("videos", total=event["videos"], completed=event["videos_done"])
            elif kind in tasks:
                bar.advance(tasks[kind], event["n"])

        result = encode.run(cfg, on_event=on_event)
    rows = [("output", str(result.out)), ("model", result.model), ("head", result.sim), ("videos", result.videos)]
    if cfg.window is not None:
        rows.append(("moments", result.rows))
    rows += [("texts", result.texts), ("resumed", result.resumed), ("seconds", f"{result.seconds:.1f}")]
    ui.print_table("c4c encode", rows)


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


@opt.from_config(EvaluateConfig, ScoreConfig, opt.MsrvttFlag)
def evaluate_cmd(
    path: Annotated[Path, typer.Argument(help="EMB.h5 from `c4c encode`, or captions.json from `c4c caption generate`.")],
    rerank: Annotated[List[str], typer.Option(
        help="Also report re-ranked metrics: dsl, qbnorm or sinkhorn (repeatable); raw metrics are always "
             "reported.", callback=opt.choice_list(choices.RERANKERS))] = [],
    rerank_param: Annotated[List[str], typer.Option(
        help="Re-ranking parameter METHOD.NAME=VALUE, e.g. dsl.temperature=1 (repeatable).")] = [],
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Score retrieval (EMB.h5) or captions (captions.json); print a table, write metrics JSON.

    Retrieval: text-to-video and video-to-text R@1/5/10/50, MdR, MnR with the reference's
    definitions (multi-sentence protocol when videos have several captions). --rerank adds re-ranked
    rows: dsl and sinkhorn are transductive (they look at all test queries at once) and labelled so;
    qbnorm uses a bank of training captions and works one query at a time.

    Captions: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, PTB tokenizer) against every
    reference caption of each video (--dataset/--ann name the references; MSR-VTT uses the
    captioning split unless --msrvtt-train says otherwise).

    Examples:

        c4c evaluate runs/msrvtt-meanP/test.emb.h5

        c4c evaluate test.emb.h5 --rerank dsl --rerank qbnorm --bank train.emb.h5

        c4c evaluate runs/cap/captions.json --dataset msrvtt --ann data/msrvtt/msrvtt_data
    """
    scoring = {f.name: settings[f.name] for f in option_fields(ScoreConfig)}
    retrieval = {f.name: settings[f.name] for f in option_fields(EvaluateConfig)}
    check_config(EvaluateConfig(emb=path, **retrieval))  # before anything is read
    rerank_params = opt.parse_params(rerank_param, "--rerank-param", nested=True)
    ui.setup_logging(quiet)
    if path.suffix.lower() == ".json":
        from c4c.stages import score_captions

        result = score_captions.run(ScoreConfig(
            captions=path, dataset_options=opt.reader_options(settings, task="caption"), **scoring))
        scores = result.scores
        ui.console().print(_caption_metrics_table(scores, f"captions: {result.videos} videos ({scoring['split']}), "
                                                          f"{scores.get('tokenizer')} tokens, pycocoevalcap scale 0-1"))
        for warning in scores.get("warnings") or []:
            ui.warn(warning)
        ui.console().print(f"metrics written to {result.out}")
        return
    from c4c.stages import evaluate

    cfg = EvaluateConfig(emb=path, rerank=list(rerank), rerank_params=rerank_params, **retrieval)
    with ui.progress(quiet, "pairs") as bar:
        task = None

        def on_event(event: dict) -> None:
            nonlocal task
            if event["event"] == "pairs":
                task = bar.add_task("cross-encoder scores", total=event["total"])
            elif event["event"] == "pairs_done" and task is not None:
                bar.advance(task, event["n"])

        result = evaluate.run(cfg, on_event=on_event)
    m = result.metrics
    title = f"{m['sim']} on {m.get('dataset') or 'data'} {m.get('split') or ''}: {m['texts']} texts x " \
            f"{m['videos']} videos ({m['protocol']})"
    ui.console().print(_metrics_table(m, title))
    ui.console().print(f"metrics written to {result.out}")


@opt.from_config(LibraryConfig, Replaces)
def index_cmd(
    source: Annotated[Path, typer.Argument(
        help="EMB.h5 from `c4c encode`, or a folder of videos (made searchable, then kept up to date).")],
    param: Annotated[List[str], typer.Option(
        help="Index parameter NAME=VALUE, e.g. nprobe=32 or ef_search=128 (repeatable).")] = [],
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Build a faiss index for `c4c search`: of the video rows of EMB.h5, or of a folder of videos.

    EMB.h5: its videos or moments are indexed; the index remembers the model that encoded them, so
    `c4c search` encodes queries with the same text tower. A folder of videos: OUT becomes a library
    that extracts, encodes (--run RUN, or zero-shot --clip) and indexes every video; run the same
    command again after files are added, changed or removed and only those are done (the model and
    window settings are kept in OUT once a build with them has encoded videos; an updated library
    answers exactly as one built afresh). The model's weights are resolved before any video is
    extracted. Videos that fail (corrupt, truncated, not a video) do not stop the others: they are
    listed, the others are indexed and kept, the exit status is 1, and the next run tries them again.
    With faiss-gpu and a GPU, flat and IVF indexes are searched on the GPU.

    Examples:

        c4c index my_emb.h5 --out my_index

        c4c index my_videos/ --out my_library --clip ViT-B-32 --pretrained openai --window 10 --stride 5

        c4c index my_videos/ --out my_library

        c4c index big_emb.h5 --out big_index --kind hnsw --param ef_search=128
    """
    overwrite = settings.pop("overwrite")
    check_config(LibraryConfig(videos=source, **settings))  # the options of either source: nothing read yet
    ui.setup_logging(quiet)
    params = opt.parse_params(param, "--param", whole=True)
    if source.is_dir():
        _index_folder(source, params=params if param else None, quiet=quiet, **settings)
        return
    from c4c.errors import C4CError
    from c4c.stages import search

    folder_only = [f for f in option_fields(LibraryConfig) if f.name not in ("out", "kind")
                   and f.name not in {g.name for g in option_fields(Hardware)} and settings[f.name] != f.default]
    if folder_only:
        raise C4CError(f"{', '.join(option_rules.flag(f.name) for f in folder_only)}: options for a folder of videos; "
                       "an embedding file was encoded already", path=source,
                       hint="`c4c encode` takes the model and window options")
    result = search.build(search.IndexConfig(emb=source, out=settings["out"], kind=settings["kind"] or "flat",
                                             params=params, overwrite=overwrite))
    rows = [("index", str(result.out)), ("kind", result.kind), ("videos", result.videos)]
    if result.count != result.videos:
        rows.append(("moments", result.count))
    ui.print_table("c4c index", rows + [("dimension", result.dim), ("seconds", f"{result.seconds:.2f}")])


def _index_folder(videos: Path, *, quiet: bool, **options) -> None:
    from c4c.stages import library

    cfg = library.LibraryConfig(videos=videos, **options)
    with ui.progress(quiet, "videos") as bar:
        tasks: dict[str, int] = {}

        def on_event(event: dict) -> None:
            kind = event["event"]
            if kind in ("extract", "encode"):
                tasks[kind] = bar.add_task(kind, total=event["videos"])
            elif kind in ("extracted", "encoded"):
                task = tasks.get({"extracted": "extract", "encoded": "encode"}[kind])
                if task is not None:
                    bar.advance(task, event["n"])

        result = library.update(cfg, on_event=on_event)
    for where, reason in result.failed[:10]:
        ui.warn(f"{where}: {reason}")
    if len(result.failed) > 10:
        ui.warn(f"... and {len(result.failed) - 10} more videos that could not be indexed (library.json lists them)")
    up_to_date = not (result.added or result.changed or result.removed or result.indexed)
    ui.print_table("c4c index", [("library", str(result.out)), ("model", result.model),
                                 ("videos", result.videos), ("rows", result.rows), ("added", result.added),
                                 ("changed", result.changed), ("removed", result.removed),
                                 ("failed", len(result.failed)), ("up to date" if up_to_date else "index rebuilt",
                                                                  "yes" if up_to_date else str(result.indexed).lower()),
                                 ("seconds", f"{result.seconds:.1f}")])
    if result.failed:  # the rule of every command with many inputs: the good ones kept, exit 1
        ui.warn(f"{len(result.failed)} video(s) could not be indexed; the others are searchable, and the next "
                "`c4c index` of this folder tries the failed ones again")
        raise typer.Exit(code=1)


def _clock(seconds: float | None) -> str:
    """``75.5`` -> ``1:15.5``, ``3725.25`` -> ``1:02:05.3``; None -> ``-`` (the search page's format too)."""
    if seconds is None:
        return "-"
    tenths = int(float(seconds) * 10 + 0.5)  # rounded once, so 59.96 s is 1:00.0, never 0:60.0
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    sec = f"{rest // 10:02d}.{rest % 10}"
    return f"{minutes:d}:{sec}" if not hours else f"{hours:d}:{minutes:02d}:{sec}"


# `c4c search`'s one number: more results than this per query is a typo.
SEARCH_RULES = {"-k": option_rules.count(1, 10_000)}


@opt.from_config(QueryModel)
def search_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder from `c4c index` (or a library folder).")],
    queries: Annotated[List[str], typer.Argument(help="One or more text queries.")],
    k: Annotated[int, typer.Option("-k", "--top", help="Results returned per query.")] = 10,
    group: Annotated[choices.Group, typer.Option(
        help="moment: overlapping windows of a video merge into one result (the best window's score and span); "
             "video: one result per video.")] = "moment",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Find the moments or videos that best match a text query (cosine similarity of the model's embeddings).

    JSON results carry video_id, start and end (seconds; null for an index of whole videos made before
    moments), score and the video file's path; "warning" says when a query was longer than the text
    tower reads (its first tokens were searched, and a warning is printed).

    Examples:

        c4c search my_index "a man is cooking pasta" -k 5

        c4c search my_library "a red circle moves left" "a dog runs" --json

        c4c search my_library "a goal is scored" --group video
    """
    from c4c import option_rules

    option_rules.check_all({"-k": k}, SEARCH_RULES)
    from c4c.stages import search

    ui.setup_logging(quiet or as_json)
    searcher = search.Searcher(index, **settings)
    results = searcher.search(list(queries), k, group=group)
    warnings = searcher.query_warnings(list(queries))
    for query, warning in zip(queries, warnings):
        if warning:
            from rich.markup import escape

            ui.warn(escape(f"\"{query if len(query) <= 40 else query[:39] + '…'}\": {warning}"))
    if as_json:
        payload = [{"query": q, "warning": w, "results": [m.as_dict() for m in hits]}
                   for q, w, hits in zip(queries, warnings, results)]
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    for query, hits in zip(queries, results):
        table = Table(title=f"\"{query}\"")
        table.add_column("rank", justify="right")
        table.add_column("video_id")
        table.add_column("time", justify="right")
        table.add_column("score", justify="right")
        table.add_column("file")
        for m in hits:
            span = "whole video" if m.start is None else f"{_clock(m.start)}–{_clock(m.end)}"
            table.add_row(str(m.rank), m.video_id, span, f"{m.score:.4f}", Path(m.path).name if m.path else "")
        ui.console().print(table)


def register(app: typer.Typer) -> None:
    app.command("encode")(encode_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("index")(index_cmd)
    app.command("search")(search_cmd)

