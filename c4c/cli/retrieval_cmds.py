"""`c4c encode`, `c4c evaluate`, `c4c index`, `c4c search` and `c4c caption generate`: use a trained run."""

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from c4c import choices, option_rules
from c4c.stages.caption import GenerateConfig
from c4c.stages.encode import EncodeConfig
from c4c.cli import options as opt
from c4c.cli import ui

METRIC_COLUMNS = ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR")


@opt.with_settings(EncodeConfig, ("device", "amp", "workers", "skip_missing", "overwrite"))
def encode_cmd(
    frames: opt.Frames,
    out: Annotated[Path, typer.Option("--out", "-o", help="Embedding file to write (EMB.h5).")],
    run: opt.RunOpt = None,
    clip: opt.ZeroShotClip = None,
    pretrained: opt.ZeroShotPretrained = None,
    activation: opt.ZeroShotActivation = "auto",
    window: opt.Window = None,
    stride: opt.Stride = None,
    dataset: opt.DatasetOpt = None,
    ann: opt.Ann = None,
    split: opt.SplitOpt = "test",
    msrvtt_train: opt.MsrvttTrain = None,
    activitynet_val2: opt.ActivityNetVal2 = False,
    checkpoint: opt.Checkpoint = "best",
    max_words: Annotated[Optional[int], typer.Option(help="CLIP tokens per caption [default: as the run was trained].")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Frames per clip [default: as the run was trained].")] = None,
    sampling: Annotated[Optional[choices.Sampling], typer.Option(
        help="Which frames a longer video keeps [default: as the run was trained].")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Thin stored frames to this rate [default: as the run].")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts or videos per batch.")] = 64,
    quiet: opt.Quiet = False,
    **settings,
) -> None:
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
    from c4c.stages.pairs import dataset_options

    ui.setup_logging(quiet)
    cfg = encode.EncodeConfig(run=run, clip=clip, pretrained=pretrained, activation=activation, window=window,
                              stride=stride, frames=frames, out=out, dataset=dataset, ann=ann, split=split,
                              dataset_options=dataset_options(dataset, msrvtt_train, activitynet_val2=activitynet_val2),
                              checkpoint=checkpoint,
                              max_words=max_words, max_frames=max_frames, sampling=sampling, fps=fps,
                              batch_size=batch_size, **settings)
    option_rules.check_all(cfg, encode.RULES)  # before the progress bar and the model
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
    if window is not None:
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


def evaluate_cmd(
    path: Annotated[Path, typer.Argument(help="EMB.h5 from `c4c encode`, or captions.json from `c4c caption generate`.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Metrics JSON [default: next to PATH].")] = None,
    rerank: Annotated[List[str], typer.Option(
        help="Also report re-ranked metrics: dsl, qbnorm or sinkhorn (repeatable); raw metrics are always "
             "reported.", callback=opt.choice_list(choices.RERANKERS))] = [],
    bank: Annotated[Optional[Path], typer.Option(help="EMB.h5 of the training split (same model), for --rerank qbnorm.")] = None,
    force: opt.Force = False,
    rerank_param: Annotated[List[str], typer.Option(
        help="Re-ranking parameter METHOD.NAME=VALUE, e.g. dsl.temperature=1 (repeatable).")] = [],
    run: Annotated[Optional[Path], typer.Option(help="tightTransf: the run folder [default: the one EMB.h5 names].")] = None,
    device: opt.Device = "auto",
    chunk: Annotated[int, typer.Option(help="Rows scored at once; memory is about chunk x N x 4 bytes.")] = 2048,
    ties: Annotated[choices.Ties, typer.Option(help="Tie policy of the ranks.")] = "reference",
    dataset: opt.DatasetOpt = None,
    ann: opt.Ann = None,
    split: opt.SplitOpt = "test",
    msrvtt_train: opt.MsrvttTrain = None,
    tokenize: Annotated[choices.CaptionTokenize, typer.Option(
        help="Captions: ptb (Stanford PTB, Java), simple (pure Python) or none (white space, as UniVL).")] = "ptb",
    allow_missing: Annotated[bool, typer.Option(help="Captions: score only the videos that have a caption.")] = False,
    quiet: opt.Quiet = False,
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
    from c4c import option_rules
    from c4c.stages.evaluate import RULES

    option_rules.check_all({"chunk": chunk}, RULES)
    rerank_params = opt.parse_params(rerank_param, "--rerank-param", nested=True)
    ui.setup_logging(quiet)
    if path.suffix.lower() == ".json":
        from c4c.stages import score_captions
        from c4c.stages.pairs import dataset_options

        result = score_captions.run(score_captions.ScoreConfig(
            captions=path, dataset=dataset, ann=ann, split=split, tokenize=tokenize, allow_missing=allow_missing,
            dataset_options=dataset_options(dataset, msrvtt_train, task="caption"), out=out))
        scores = result.scores
        ui.console().print(_caption_metrics_table(scores, f"captions: {result.videos} videos ({split}), "
                                                          f"{scores.get('tokenizer')} tokens, pycocoevalcap scale 0-1"))
        for warning in scores.get("warnings") or []:
            ui.warn(warning)
        ui.console().print(f"metrics written to {result.out}")
        return
    from c4c.stages import evaluate

    cfg = evaluate.EvaluateConfig(emb=path, out=out, rerank=list(rerank), bank=bank,
                                  rerank_params=rerank_params,
                                  run=run, device=device, chunk=chunk, ties=ties, force=force)
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


def index_cmd(
    source: Annotated[Path, typer.Argument(
        help="EMB.h5 from `c4c encode`, or a folder of videos (made searchable, then kept up to date).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder to write (for a folder of videos: the "
                                                           "library folder, updated in place).")],
    kind: Annotated[Optional[choices.IndexKind], typer.Option(
        help="flat (exact inner product), or an approximate kind for large collections (see data/README.md) "
             "[default: flat; a library: as before].")] = None,
    param: Annotated[List[str], typer.Option(
        help="Index parameter NAME=VALUE, e.g. nprobe=32 or ef_search=128 (repeatable).")] = [],
    run: opt.RunOpt = None,
    checkpoint: opt.Checkpoint = None,  # type: ignore[assignment]  (None: best, or as the library)
    clip: opt.ZeroShotClip = None,
    pretrained: opt.ZeroShotPretrained = None,
    activation: Annotated[Optional[choices.Activation], typer.Option(
        help="With --clip: CLIP's activation: auto (QuickGELU for OpenAI weights), quickgelu or gelu.")] = None,
    window: opt.Window = None,
    stride: opt.Stride = None,
    fps: Annotated[Optional[float], typer.Option(help="Folder of videos: frames stored per second [default: 1].")] = None,
    size: Annotated[Optional[int], typer.Option(
        help="Folder of videos: stored frame size in pixels [default: the model's image size].")] = None,
    max_frames: Annotated[Optional[int], typer.Option(
        help="Folder of videos: frames per video or window [default: the run's; zero-shot 12].")] = None,
    batch_size: Annotated[int, typer.Option(help="Folder of videos: clips per batch when encoding.")] = 64,
    device: opt.Device = "auto",
    amp: opt.Amp = "auto",
    workers: opt.Workers = 2,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
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
    from c4c import option_rules
    from c4c.stages.library import RULES

    option_rules.check_all({"window": window, "stride": stride, "fps": fps, "size": size, "max_frames": max_frames,
                            "batch_size": batch_size, "workers": workers}, RULES)
    ui.setup_logging(quiet)
    params = opt.parse_params(param, "--param", whole=True)
    if source.is_dir():
        _index_folder(source, out, kind=kind, params=params if param else None, run=run, checkpoint=checkpoint,
                      clip=clip, pretrained=pretrained, activation=activation, window=window, stride=stride, fps=fps,
                      size=size, max_frames=max_frames, batch_size=batch_size, device=device, amp=amp,
                      workers=workers, quiet=quiet)
        return
    from c4c.errors import C4CError
    from c4c.stages import search

    folder_only = {"--run": run, "--checkpoint": checkpoint, "--clip": clip, "--pretrained": pretrained,
                   "--activation": activation, "--window": window, "--stride": stride, "--fps": fps, "--size": size,
                   "--max-frames": max_frames}
    given = [name for name, value in folder_only.items() if value is not None]
    if given:
        raise C4CError(f"{', '.join(given)}: options for a folder of videos; an embedding file was encoded already",
                       path=source, hint="`c4c encode` takes the model and window options")
    result = search.build(search.IndexConfig(emb=source, out=out, kind=kind or "flat", params=params,
                                             overwrite=overwrite))
    rows = [("index", str(result.out)), ("kind", result.kind), ("videos", result.videos)]
    if result.count != result.videos:
        rows.append(("moments", result.count))
    ui.print_table("c4c index", rows + [("dimension", result.dim), ("seconds", f"{result.seconds:.2f}")])


def _index_folder(videos: Path, out: Path, *, quiet: bool, **options) -> None:
    from c4c.stages import library

    cfg = library.LibraryConfig(videos=videos, out=out, **options)
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


def search_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder from `c4c index` (or a library folder).")],
    queries: Annotated[List[str], typer.Argument(help="One or more text queries.")],
    k: Annotated[int, typer.Option("-k", "--top", help="Results returned per query.")] = 10,
    group: Annotated[choices.Group, typer.Option(
        help="moment: overlapping windows of a video merge into one result (the best window's score and span); "
             "video: one result per video.")] = "moment",
    run: Annotated[Optional[Path], typer.Option(
        help="Run whose text tower encodes the query [default: the model the index names]; must be the same model.")] = None,
    force: opt.Force = False,
    precision: Annotated[choices.TextPrecision, typer.Option(
        help="Text tower weights: fp32, or bf16 (faster on a CPU; query embeddings within about 1e-4 in cosine).")] = "fp32",
    device: opt.Device = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    quiet: opt.Quiet = False,
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
    searcher = search.Searcher(index, run=run, device=device, force=force, precision=precision)
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


@opt.with_settings(GenerateConfig, ("amp", "device", "workers", "skip_missing"))
def caption_generate_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run folder of `c4c caption train`.")],
    frames: opt.Frames,
    out: Annotated[Path, typer.Option("--out", "-o", help="captions.json to write.")],
    dataset: opt.DatasetOpt = None,
    ann: Annotated[Optional[Path], typer.Option(
        help="Annotation file or folder (leave out to caption every video in the frame store).")] = None,
    split: opt.SplitOpt = "test",
    msrvtt_train: opt.MsrvttTrain = None,
    beam: Annotated[int, typer.Option(help="Beam size (1: greedy).")] = 5,
    max_len: Annotated[int, typer.Option(help="Tokens generated at most (EOT included).")] = 20,
    alpha: Annotated[float, typer.Option(
        help="Length penalty exponent: score = log p / ((5 + len) / 6)^alpha (0: none).")] = choices.DEFAULT_ALPHA,
    batch_size: Annotated[int, typer.Option(help="Videos decoded together (each with --beam rows).")] = 32,
    checkpoint: opt.Checkpoint = "best",
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Caption videos with a trained caption run: beam search (or greedy with --beam 1), batched.

    Writes OUT (a JSON object mapping each video_id to its caption) and OUT's .meta.json (run,
    checkpoint, frames, beam, max_len, alpha, seconds). Without --dataset/--ann every video in
    FRAMES.h5 is captioned, e.g. your own videos after `c4c extract my_videos/ --out my_frames.h5`.

    Examples:

        c4c caption generate --run runs/caption-msrvtt --frames data/msrvtt/frames.h5 --dataset msrvtt --ann data/msrvtt/msrvtt_data --split test --out captions.json

        c4c caption generate --run runs/caption-msrvtt --frames my_frames.h5 --out my_captions.json

        c4c caption generate --run runs/caption-synth --frames demo-out/frames.h5 --beam 1 --out greedy.json
    """
    from c4c.stages import caption
    from c4c.stages.pairs import dataset_options

    ui.setup_logging(quiet)
    cfg = caption.GenerateConfig(run=run, frames=frames, out=out, dataset=dataset, ann=ann, split=split,
                                 dataset_options=dataset_options(dataset, msrvtt_train, task="caption"), beam=beam,
                                 max_len=max_len, alpha=alpha, batch_size=batch_size, checkpoint=checkpoint,
                                 **settings)
    caption.check_generate(cfg)  # before torch is imported
    with ui.progress(quiet, "videos") as bar:
        state = {"task": None}

        def on_event(event: dict) -> None:
            if event["event"] == "start":
                state["task"] = bar.add_task("caption", total=event["videos"])
            elif event["event"] == "batch" and state["task"] is not None:
                bar.update(state["task"], completed=event["done"])

        result = caption.run(cfg, on_event=on_event)
    if not quiet and result.captions:
        from rich.table import Table

        sample = Table(title=f"first captions (of {result.videos})")
        sample.add_column("video_id")
        sample.add_column("caption")
        for vid, text in list(result.captions.items())[:5]:
            sample.add_row(vid, text)
        ui.console().print(sample)
    ui.print_table("c4c caption generate", [
        ("videos", result.videos), ("beam", beam), ("max len", max_len), ("alpha", alpha if beam > 1 else 0.0),
        ("seconds", f"{result.seconds:.1f}"), ("captions/s", f"{result.captions_per_s:.2f}"),
        ("checkpoint", str(result.checkpoint)), ("captions", str(result.out)), ("meta", str(result.meta))])


def register(app: typer.Typer, caption_app: typer.Typer) -> None:
    app.command("encode")(encode_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("index")(index_cmd)
    app.command("search")(search_cmd)
    caption_app.command("generate")(caption_generate_cmd)

